#include "evoq/evo/score_labels.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <unordered_map>
#include <vector>

#include "evoq/core/error.h"
#include "evoq/eval/csv.h"
#include "evoq/evo/label_store.h"
#include "evoq/evo/pairs.h"

namespace fs = std::filesystem;

namespace evoq::evo {

// Hard preference label from two scores (VisualQuality-R1's supervised p*; EvoQuality's Eq. 1 replaced
// by the score order): 1 / 0.5 / 0.
double preference_from_scores(double score_i, double score_j, bool higher_is_better, double tie_tolerance) {
  const double margin = higher_is_better ? score_i - score_j : score_j - score_i;
  if (margin > tie_tolerance) return 1.0;
  if (margin < -tie_tolerance) return 0.0;
  return 0.5;
}

namespace {

// The file a path names (relative paths against `base`), normalised so that two spellings compare equal.
std::string file_key(const std::string& path, const fs::path& base) {
  fs::path p(path);
  if (!p.is_absolute()) p = base / p;
  std::error_code ec;
  auto canonical = fs::weakly_canonical(p, ec);
  return (ec ? p.lexically_normal() : canonical).string();
}

double parse_score(const std::string& text, const std::string& where) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno != 0 || !std::isfinite(v))
    throw Error(where + ": score '" + text + "' is not a finite number");
  return v;
}

}  // namespace

ScoreLabelSummary run_labels_from_scores(const ScoreLabelSettings& s) {
  if (s.pairs_path.empty()) throw UsageError("--pairs is required");
  if (s.scores_path.empty()) throw UsageError("--scores is required");
  if (s.out_path.empty()) throw UsageError("--out is required");
  if (!(s.tie_tolerance >= 0.0)) throw UsageError("--tie-tolerance must be >= 0");
  const PairSet pairs = read_pairs_h5(s.pairs_path);
  const auto table = eval::read_csv(s.scores_path);
  const int path_col = table.column({"path", "image", "dis_img_path", "image_path"});
  if (path_col < 0) throw Error("'" + s.scores_path + "' has no image column (path, image or dis_img_path)");
  const int score_col = s.score_column.empty() ? table.column({"score", "mos", "dmos"})
                                                : table.column({s.score_column.c_str()});
  if (score_col < 0)
    throw Error("'" + s.scores_path + "' has no score column (" +
                (s.score_column.empty() ? std::string("score, mos or dmos") : s.score_column) + ")");

  // Scores by the literal path and by the file it resolves to (relative to the CSV's folder).
  const fs::path csv_dir = fs::absolute(s.scores_path).parent_path();
  std::unordered_map<std::string, double> by_text, by_file;
  for (std::size_t r = 0; r < table.rows.size(); ++r) {
    const auto& row = table.rows[r];
    const std::string where = "'" + s.scores_path + "' line " + std::to_string(table.line_numbers[r]);
    if (std::size_t(std::max(path_col, score_col)) >= row.size()) throw Error(where + ": too few columns");
    const double v = parse_score(row[std::size_t(score_col)], where);
    const auto& path = row[std::size_t(path_col)];
    const auto key = file_key(path, csv_dir);
    auto [it, inserted] = by_file.emplace(key, v);
    if (!inserted && it->second != v) throw Error(where + ": '" + path + "' is scored twice with different scores");
    by_text[path] = v;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> image_score(pairs.image_paths.size(), nan);
  for (std::size_t i = 0; i < pairs.image_paths.size(); ++i) {
    if (auto it = by_text.find(pairs.image_paths[i]); it != by_text.end()) image_score[i] = it->second;
    else if (auto f = by_file.find(file_key(pairs.resolve(std::int64_t(i)), fs::current_path())); f != by_file.end())
      image_score[i] = f->second;
  }

  ScoreLabelSummary summary;
  std::vector<PairLabel> records;
  records.reserve(pairs.size());
  for (std::size_t p = 0; p < pairs.size(); ++p) {
    PairLabel label;
    label.pair_index = std::int64_t(p);
    const double si = image_score[std::size_t(pairs.first[p])], sj = image_score[std::size_t(pairs.second[p])];
    if (std::isnan(si) || std::isnan(sj)) {
      const auto image = std::isnan(si) ? pairs.first[p] : pairs.second[p];
      if (!s.skip_unscored)
        throw Error("'" + s.scores_path + "' has no score for '" + pairs.image_paths[std::size_t(image)] +
                    "' (pair " + std::to_string(p) + "); score it, or pass --skip-unscored");
      label.p_star = nan;  // written without a label: training skips it
      ++summary.unscored;
    } else {
      label.p_star = preference_from_scores(si, sj, s.higher_is_better, s.tie_tolerance);
      if (label.p_star == 1.0) ++summary.first_better;
      else if (label.p_star == 0.0) ++summary.second_better;
      else ++summary.ties;
    }
    records.push_back(std::move(label));
  }
  summary.pairs = records.size();
  LabelRunInfo info;
  info.pairs_file = s.pairs_path;
  info.num_pairs = pairs.size();
  info.root = pairs.root;
  info.sampling = nlohmann::json{{"label_source", "scores"},
                                 {"scores_file", s.scores_path},
                                 {"higher_is_better", s.higher_is_better},
                                 {"tie_tolerance", s.tie_tolerance}};
  write_labels_h5(s.out_path, pairs, records, info, LabelCounts{}, false,
                  {{"label_source", "scores"}, {"scores_file", s.scores_path},
                   {"score_direction", s.higher_is_better ? "higher-is-better" : "lower-is-better"}});
  return summary;
}

}  // namespace evoq::evo
