// Eq. 2-4 on hand-derived values (the Python oracle test covers random inputs).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "evoq/core/error.h"
#include "evoq/evo/fidelity_reward.h"
#include "evoq/evo/group_advantage.h"

using namespace evoq::evo;

TEST(FidelityReward, ScoreStatsUseValidSamplesAndUnbiasedVariance) {
  std::vector<double> q{1.0, 2.0, 3.0, 100.0};
  std::vector<std::uint8_t> v{1, 1, 1, 0};
  auto s = score_stats(q, v);
  EXPECT_EQ(s.valid, 3);
  EXPECT_DOUBLE_EQ(s.mean, 2.0);
  EXPECT_DOUBLE_EQ(s.var, 1.0);  // ((1)^2 + 0 + 1) / (3 - 1)
  auto one = score_stats(std::vector<double>{4.0, 0.0}, std::vector<std::uint8_t>{1, 0});
  EXPECT_EQ(one.valid, 1);
  EXPECT_DOUBLE_EQ(one.var, 0.0);
}

TEST(FidelityReward, Eq2HandValue) {
  // q = 3, partner mean 2, variances 1 and 3, gamma 0: Phi(1 / 2) = 0.691462461274013.
  ScoreStats i{3, 0.0, 1.0}, j{3, 2.0, 3.0};
  EXPECT_NEAR(comparative_probability(3.0, i, j, 1e-300), 0.691462461274013, 1e-12);
  EXPECT_DOUBLE_EQ(normal_cdf(0.0), 0.5);
  EXPECT_THROW(comparative_probability(3.0, i, j, 0.0), evoq::Error);
}

TEST(FidelityReward, Eq3FidelityTerm) {
  EXPECT_DOUBLE_EQ(fidelity(1.0, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(fidelity(0.0, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(fidelity(1.0, 0.0), 0.0);
  EXPECT_NEAR(fidelity(0.5, 0.5), 1.0, 1e-15);
  EXPECT_NEAR(fidelity(1.0, 0.25), 0.5, 1e-15);
}

TEST(FidelityReward, InvalidGetsZeroAndPartnerPolicy) {
  std::vector<double> q{4.0, 1.0, 0.0};
  std::vector<std::uint8_t> v{1, 1, 0};
  Partner good{{5, 2.0, 0.5}, 1.0};
  Partner too_few{{1, 3.0, 0.0}, 0.0};
  auto r = fidelity_rewards(q, v, std::vector<Partner>{good, too_few});
  EXPECT_EQ(r.invalid, 1);
  EXPECT_EQ(r.partners_used, 1);
  EXPECT_EQ(r.partners_skipped, 1);
  EXPECT_TRUE(r.has_signal);
  EXPECT_EQ(r.rewards[2], 0.0);
  const auto si = score_stats(q, v);  // mean 2.5, var 4.5
  const double p0 = normal_cdf((4.0 - 2.0) / std::sqrt(si.var + 0.5 + 1e-6));
  EXPECT_NEAR(r.rewards[0], std::sqrt(p0), 1e-12);
  // No usable partner: no signal, all rewards 0.
  auto none = fidelity_rewards(q, v, std::vector<Partner>{too_few});
  EXPECT_FALSE(none.has_signal);
  EXPECT_EQ(none.rewards, std::vector<double>(3, 0.0));
  EXPECT_THROW(fidelity_rewards(q, v, std::vector<Partner>{{{5, 2.0, 0.5}, 0.3}}), evoq::Error);
}

TEST(GroupAdvantage, Eq4HandValues) {
  auto a = group_advantages(std::vector<double>{1.0, 2.0, 3.0}, {0.0, true});
  ASSERT_FALSE(a.zero_variance);
  EXPECT_DOUBLE_EQ(a.advantages[0], -1.0);  // std (unbiased) = 1
  EXPECT_DOUBLE_EQ(a.advantages[2], 1.0);
  auto b = group_advantages(std::vector<double>{1.0, 2.0, 3.0}, {1e-6, false});
  EXPECT_DOUBLE_EQ(b.advantages[0], -1.0);
  auto z = group_advantages(std::vector<double>{0.7, 0.7, 0.7});
  EXPECT_TRUE(z.zero_variance);
  EXPECT_EQ(z.advantages, std::vector<double>(3, 0.0));
  EXPECT_TRUE(group_advantages(std::vector<double>{0.3}).zero_variance);
}
