// evoq eval: score benchmark datasets with a scorer (handcrafted baseline or a registered model) and report
// SRCC / KRCC / PLCC per dataset and their weighted average (Table 2 layout).
#include <boost/any.hpp>
#include <iostream>

#include "evoq/core/cli.h"
#include "evoq/eval/baselines.h"
#include "evoq/eval/eval_run.h"

namespace {

namespace po = boost::program_options;

void add_options(po::options_description& o, po::positional_options_description&) {
  o.add_options()
      ("model", po::value<std::string>(), "scorer: brisque | niqe (model scorers register more names)")
      ("dataset", po::value<std::vector<std::string>>()->composing(),
       "dataset to evaluate (repeatable): KonIQ-10k[:train|val|test], SPAQ, AGIQA-3K, LIVE-Challenge, KADID-10k, "
       "PIPAL, TID2013, TID2008, CSIQ, LIVE, or csv:FILE (columns path + score|mos|dmos)")
      ("root", po::value<std::vector<std::string>>()->composing(), "image root of a dataset: NAME=DIR (repeatable)")
      ("labels-dir", po::value<std::string>()->default_value(""), "label files (default: data/iqa-labels)")
      ("skip-missing", po::bool_switch(), "evaluate without the image files that are missing")
      ("out", po::value<std::string>()->default_value("eval-out"),
       "output directory: scores.h5 (resumable), scores.csv, results.json, results.csv")
      ("flush-every", po::value<std::size_t>()->default_value(50), "rewrite scores.h5 every N scored images")
      ("baseline", po::value<std::string>()->default_value(""), "results.json of a baseline for the Δ% columns")
      ("brisque-model", po::value<std::string>()->default_value(""), "BRISQUE SVR model (default data/brisque)")
      ("brisque-range", po::value<std::string>()->default_value(""), "BRISQUE feature range (default data/brisque)")
      ("niqe-params", po::value<std::string>()->default_value(""), "NIQE pristine parameters .npz (default data/niqe)");
}

int run(const po::variables_map& vm) {
  evoq::eval::register_baseline_scorers();
  evoq::eval::EvalOptions opt;
  opt.model = evoq::cli::require_string(vm, "model");
  if (vm.count("dataset")) opt.datasets = vm["dataset"].as<std::vector<std::string>>();
  if (vm.count("root"))
    for (const auto& spec : vm["root"].as<std::vector<std::string>>()) {
      auto [name, dir] = evoq::eval::parse_root(spec);
      opt.roots[name] = dir;
    }
  opt.labels_dir = vm["labels-dir"].as<std::string>();
  opt.skip_missing = vm["skip-missing"].as<bool>();
  opt.out_dir = vm["out"].as<std::string>();
  opt.flush_every = vm["flush-every"].as<std::size_t>();
  opt.baseline_json = vm["baseline"].as<std::string>();
  // Every string option reaches the scorer factory (a model scorer reads its own, e.g. its model dir).
  for (const auto& [key, value] : vm)
    if (const auto* s = boost::any_cast<std::string>(&value.value())) opt.scorer_options[key] = *s;
  evoq::eval::run_eval(opt, std::cout);
  return 0;
}

EVOQ_COMMAND("eval", "score IQA benchmarks and report SRCC/KRCC/PLCC (Table 2 layout)", add_options, run,
             "evoq eval --model niqe --dataset CSIQ --root CSIQ=/data/CSIQ [--dataset csv:FILE ...] --out DIR");

}  // namespace
