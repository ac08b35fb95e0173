// Philox4x32-10 against the Random123 known-answer vectors (kat_vectors, "philox4x32 10" lines).
#include <gtest/gtest.h>

#include <set>

#include "evoq/gen/rng.h"

using evoq::gen::philox4x32_10;
using evoq::gen::PhiloxCounter;

TEST(Philox, Random123KnownAnswers) {
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}), (PhiloxCounter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
            (PhiloxCounter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
            (PhiloxCounter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Philox, StreamUsesEveryCoordinate) {
  evoq::gen::SampleStream base{42, 7, 3};
  std::set<double> seen;
  seen.insert(base.uniform(5));
  seen.insert(evoq::gen::SampleStream{43, 7, 3}.uniform(5));
  seen.insert(evoq::gen::SampleStream{42, 7ull | (1ull << 40), 3}.uniform(5));
  seen.insert(evoq::gen::SampleStream{42, 8, 3}.uniform(5));
  seen.insert(evoq::gen::SampleStream{42, 7, 4}.uniform(5));
  seen.insert(base.uniform(6));
  seen.insert(evoq::gen::SampleStream{42ull | (1ull << 33), 7, 3}.uniform(5));
  EXPECT_EQ(seen.size(), 7u);
  EXPECT_EQ(base.uniform(5), (evoq::gen::SampleStream{42, 7, 3}.uniform(5)));  // pure function
}

TEST(Philox, UniformIsInUnitIntervalAndRoughlyUniform) {
  evoq::gen::SampleStream s{1, 2, 0};
  const int n = 20000;
  int bins[10] = {};
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    double u = s.uniform(uint32_t(i));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    bins[int(u * 10)]++;
    sum += u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.01);  // 5 sigma is about 0.01
  for (int b : bins) EXPECT_NEAR(b, n / 10, 200);
}

#include "evoq/gen/compare_order.h"

TEST(CompareOrder, SwapBitsAreBalancedAndVotesMapBack) {
  int swapped = 0;
  for (int k = 0; k < 4000; ++k) swapped += evoq::gen::compare_sample_swapped(17, 3, k);
  EXPECT_NEAR(swapped, 2000, 150);  // 4.7 sigma
  evoq::gen::CompareAnswer second{evoq::gen::AnswerStatus::kValid, 1};
  EXPECT_EQ(evoq::gen::original_order_vote(second, false), 1);
  EXPECT_EQ(evoq::gen::original_order_vote(second, true), 0);  // shown (B, A): "second" is A
  evoq::gen::CompareAnswer bad{evoq::gen::AnswerStatus::kNotBinary, -1};
  EXPECT_EQ(evoq::gen::original_order_vote(bad, true), -1);
}
