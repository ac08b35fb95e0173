#pragma once
// Online stage, paper section 3.2: group-relative advantage (Eq. 4).
#include <span>
#include <vector>

namespace evoq::evo {

struct AdvantageConfig {
  double epsilon = 1e-6;      // added to the standard deviation
  bool divide_by_std = true;  // false: a_k = r_k - mean (Dr. GRPO style)
};

struct GroupAdvantages {
  std::vector<double> advantages;
  bool zero_variance = false;  // all rewards equal (or K < 2): the group carries no signal
};

// Eq. 4: a_k = (r_k - mean(r)) / (std(r) + epsilon) over the K rewards of one image. std is the
// unbiased (n - 1) standard deviation, as torch.std in the reference GRPO implementations. A
// zero-variance group (max == min, or K < 2) gets all advantages 0 and is flagged.
GroupAdvantages group_advantages(std::span<const double> rewards, const AdvantageConfig& config = {});

}  // namespace evoq::evo
