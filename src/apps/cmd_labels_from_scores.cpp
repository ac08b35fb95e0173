// `evoq labels-from-scores`: labels.h5 from human or oracle scores, for supervised GRPO through the same
// `evoq train` path as vote labels (docs/TRAINING.md "Training on scores").
#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/evo/score_labels.h"

namespace {

using namespace evoq;
namespace po = boost::program_options;

void add_options(po::options_description& o, po::positional_options_description&) {
  o.add_options()
      ("pairs", po::value<std::string>(), "pairs.h5 (from `evoq pairs`)")
      ("scores", po::value<std::string>(), "CSV with a header: image column (path|image|dis_img_path; paths as in the pairs file, or relative to the CSV's folder) and a score column")
      ("score-column", po::value<std::string>()->default_value(""), "name of the score column (default: the first of score, mos, dmos)")
      ("direction", po::value<std::string>()->default_value("higher-is-better"), "higher-is-better (MOS) | lower-is-better (DMOS, distortion level)")
      ("tie-tolerance", po::value<double>()->default_value(0.0), "score differences up to this are ties (p* = 0.5)")
      ("skip-unscored", po::bool_switch(), "write pairs with an unscored image without a label (training skips them) instead of refusing")
      ("out,o", po::value<std::string>()->default_value("labels.h5"), "output labels file");
}

int run(const po::variables_map& vm) {
  evo::ScoreLabelSettings s;
  s.pairs_path = cli::require_string(vm, "pairs");
  s.scores_path = cli::require_string(vm, "scores");
  s.score_column = vm["score-column"].as<std::string>();
  const auto direction = vm["direction"].as<std::string>();
  if (direction != "higher-is-better" && direction != "lower-is-better")
    throw UsageError("--direction '" + direction + "' is not one of higher-is-better, lower-is-better");
  s.higher_is_better = direction == "higher-is-better";
  s.tie_tolerance = vm["tie-tolerance"].as<double>();
  s.skip_unscored = vm["skip-unscored"].as<bool>();
  s.out_path = cli::require_string(vm, "out");
  const auto r = evo::run_labels_from_scores(s);
  log::info("labels-from-scores: wrote ", r.pairs, " pairs to ", s.out_path, " (first better ", r.first_better,
            ", second better ", r.second_better, ", ties ", r.ties, ", unscored ", r.unscored, ")");
  return 0;
}

EVOQ_COMMAND("labels-from-scores", "labels.h5 from scores (human MOS/DMOS or an oracle) for supervised GRPO", add_options,
             run,
             "evoq labels-from-scores --pairs pairs.h5 --scores scores.csv [--direction higher-is-better|lower-is-better] "
             "[--tie-tolerance T] -o labels.h5");

}  // namespace
