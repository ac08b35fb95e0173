#pragma once
// EvoEstimate, the paper's ablation (section 4.4, Table 5): instead of ranking pairs, the model
// regresses an absolute score.
//   offline stage: K c_score answers per image are averaged into a pseudo score;
//   online stage:  a sampled score is rewarded 1 when it lies within a threshold of the pseudo score
//                  (the Q-Insight score reward), 0 otherwise; then the same group advantages (Eq. 4)
//                  and GRPO loss (Eq. 5-6) as EvoQuality.
// Invalid answers get reward 0 (as in the fidelity reward) and are counted.
#include <cstdint>
#include <span>
#include <vector>

namespace evoq::evo {

// EvoEstimate offline stage: the pseudo score of an image = mean of its valid sampled scores
// (NaN when no answer is valid: the image then has no estimate and is not trained on).
double pseudo_score(std::span<const double> scores, std::span<const std::uint8_t> valid);

// EvoEstimate online reward (Q-Insight style): 1 if the answer is valid and |score - pseudo| < threshold,
// else 0. A NaN pseudo score gives 0.
double estimate_reward(double score, bool valid, double pseudo, double threshold);

struct EstimateRewards {
  std::vector<double> rewards;  // r_k(x), k = 1..K
  int invalid = 0;              // samples with an invalid answer (reward 0)
  bool has_signal = false;      // false when the image has no pseudo score
};

// estimate_reward for every sample of one image.
EstimateRewards estimate_rewards(std::span<const double> scores, std::span<const std::uint8_t> valid, double pseudo,
                                 double threshold);

}  // namespace evoq::evo
