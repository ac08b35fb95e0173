// EvoEstimate (the paper's ablation): pseudo score and Q-Insight-style reward on hand-derived values.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "evoq/core/error.h"
#include "evoq/evo/estimate_reward.h"
#include "evoq/evo/group_advantage.h"

using namespace evoq::evo;

TEST(EstimateReward, PseudoScoreIsTheMeanOfValidSamples) {
  EXPECT_DOUBLE_EQ(pseudo_score(std::vector<double>{2.0, 4.0, 0.0, 3.5}, std::vector<std::uint8_t>{1, 1, 0, 1}),
                   9.5 / 3.0);
  EXPECT_TRUE(std::isnan(pseudo_score(std::vector<double>{0.0, 0.0}, std::vector<std::uint8_t>{0, 0})));
  EXPECT_THROW(pseudo_score(std::vector<double>{1.0}, std::vector<std::uint8_t>{1, 1}), evoq::Error);
}

TEST(EstimateReward, OneWithinTheThresholdZeroOutsideOrInvalid) {
  EXPECT_EQ(estimate_reward(3.0, true, 3.2, 0.35), 1.0);   // |3 - 3.2| = 0.2 < 0.35
  EXPECT_EQ(estimate_reward(3.5, true, 3.0, 0.35), 0.0);   // 0.5 >= 0.35
  EXPECT_EQ(estimate_reward(3.25, true, 3.0, 0.25), 0.0);  // strict: |d| = threshold is 0
  EXPECT_EQ(estimate_reward(3.0, false, 3.0, 0.35), 0.0);  // invalid answer
  EXPECT_EQ(estimate_reward(3.0, true, NAN, 0.35), 0.0);   // no pseudo score
  EXPECT_THROW(estimate_reward(3.0, true, 3.0, 0.0), evoq::Error);
}

TEST(EstimateReward, GroupOfSamplesAndItsAdvantages) {
  // Pseudo 3.0, threshold 0.35: scores 3, 4, (invalid), 2.75 -> rewards 1, 0, 0, 1.
  const std::vector<double> q{3.0, 4.0, 0.0, 2.75};
  const std::vector<std::uint8_t> v{1, 1, 0, 1};
  const auto r = estimate_rewards(q, v, 3.0, 0.35);
  EXPECT_EQ(r.rewards, (std::vector<double>{1, 0, 0, 1}));
  EXPECT_EQ(r.invalid, 1);
  EXPECT_TRUE(r.has_signal);
  // Eq. 4 on them: mean 0.5, unbiased std sqrt(1/3) -> +-0.5 * sqrt(3).
  const auto a = group_advantages(r.rewards, {0.0, true});
  EXPECT_NEAR(a.advantages[0], 0.5 * std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(a.advantages[1], -0.5 * std::sqrt(3.0), 1e-12);
  const auto none = estimate_rewards(q, v, NAN, 0.35);
  EXPECT_FALSE(none.has_signal);
  EXPECT_EQ(none.rewards, (std::vector<double>(4, 0.0)));
}
