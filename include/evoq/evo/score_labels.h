#pragma once
// Labels from scores: supervised GRPO on human (MOS/DMOS) or oracle scores through exactly the path
// that trains on vote labels. Each pair's p* is the order of the two images' scores (1 / 0.5 / 0), as
// in VisualQuality-R1's supervised setting, written as an ordinary labels.h5 (docs/TRAINING.md
// "Training on scores").
#include <cstddef>
#include <string>

namespace evoq::evo {

struct ScoreLabelSettings {
  std::string pairs_path;   // pairs.h5 (evoq pairs)
  std::string scores_path;  // CSV with a header: an image column (path|image|dis_img_path) and a score column
  std::string score_column; // "" = the first of score|mos|dmos
  bool higher_is_better = true;  // false for DMOS-like scores (lower = better quality)
  double tie_tolerance = 0.0;    // |s_i - s_j| <= tolerance is a tie (p* = 0.5)
  bool skip_unscored = false;    // pairs with an unscored image: written without a label instead of refused
  std::string out_path;     // labels.h5
};

struct ScoreLabelSummary {
  std::size_t pairs = 0, first_better = 0, second_better = 0, ties = 0, unscored = 0;
};

// p* of a pair from its two scores: P(x_i better than x_j) as a hard label,
//   p* = 1 if x_i is better by more than the tolerance, 0 if x_j is, 0.5 otherwise.
double preference_from_scores(double score_i, double score_j, bool higher_is_better, double tie_tolerance);

// Reads the pairs and the scores, writes labels.h5. Images are matched by the path stored in the pairs
// file, or by the file they resolve to (CSV paths relative to the CSV's folder). An unscored image in a
// pair is an error naming it unless skip_unscored.
ScoreLabelSummary run_labels_from_scores(const ScoreLabelSettings& settings);

}  // namespace evoq::evo
