#include "evoq/evo/estimate_reward.h"

#include <cmath>

#include "evoq/core/error.h"

namespace evoq::evo {

// EvoEstimate offline stage: average of the K sampled scores (valid ones only).
double pseudo_score(std::span<const double> scores, std::span<const std::uint8_t> valid) {
  EVOQ_CHECK(scores.size() == valid.size(), "pseudo_score: ", scores.size(), " scores but ", valid.size(),
             " validity flags");
  double sum = 0.0;
  int n = 0;
  for (std::size_t k = 0; k < scores.size(); ++k)
    if (valid[k]) {
      sum += scores[k];
      ++n;
    }
  return n > 0 ? sum / n : NAN;
}

// EvoEstimate online reward (Q-Insight's score reward): 1[|q_k(x) - pseudo(x)| < threshold].
double estimate_reward(double score, bool valid, double pseudo, double threshold) {
  EVOQ_CHECK(threshold > 0.0, "--estimate-threshold must be > 0 (got ", threshold, ")");
  if (!valid || std::isnan(pseudo)) return 0.0;
  return std::abs(score - pseudo) < threshold ? 1.0 : 0.0;
}

EstimateRewards estimate_rewards(std::span<const double> scores, std::span<const std::uint8_t> valid, double pseudo,
                                 double threshold) {
  EVOQ_CHECK(scores.size() == valid.size(), "estimate_rewards: ", scores.size(), " scores but ", valid.size(),
             " validity flags");
  EstimateRewards out;
  out.has_signal = !std::isnan(pseudo);
  for (std::size_t k = 0; k < scores.size(); ++k) {
    out.rewards.push_back(estimate_reward(scores[k], valid[k] != 0, pseudo, threshold));
    out.invalid += valid[k] ? 0 : 1;
  }
  return out;
}

}  // namespace evoq::evo
