#include "evoq/evo/group_advantage.h"

#include <algorithm>
#include <cmath>

#include "evoq/core/error.h"

namespace evoq::evo {

// Eq. 4 of the paper.
GroupAdvantages group_advantages(std::span<const double> rewards, const AdvantageConfig& config) {
  GroupAdvantages out;
  out.advantages.assign(rewards.size(), 0.0);
  for (double r : rewards) EVOQ_CHECK(std::isfinite(r), "group_advantages: reward is not finite");
  if (rewards.size() < 2 || *std::max_element(rewards.begin(), rewards.end()) ==
                                *std::min_element(rewards.begin(), rewards.end())) {
    out.zero_variance = true;
    return out;
  }
  double mean = 0.0;
  for (double r : rewards) mean += r;
  mean /= double(rewards.size());
  double ss = 0.0;
  for (double r : rewards) ss += (r - mean) * (r - mean);
  const double std_dev = std::sqrt(ss / double(rewards.size() - 1));
  for (std::size_t k = 0; k < rewards.size(); ++k)
    out.advantages[k] = config.divide_by_std ? (rewards[k] - mean) / (std_dev + config.epsilon) : rewards[k] - mean;
  return out;
}

}  // namespace evoq::evo
