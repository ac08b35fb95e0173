// Batches of the online stage: every epoch is a permutation of the usable pairs, the steps of an
// epoch take disjoint consecutive slices of it, a step's batch depends only on (seed, B, step), and
// the rank split of a step's images is a balanced partition.
#include <gtest/gtest.h>

#include <set>

#include "evoq/core/error.h"
#include "evoq/core/rank_partition.h"
#include "evoq/train/train_batches.h"


using namespace evoq::train;

namespace {

TrainData data_with(std::size_t n_pairs) {
  TrainData d;
  for (int i = 0; i < 40; ++i) d.image_paths.push_back("img" + std::to_string(i));
  for (std::size_t p = 0; p < n_pairs; ++p)
    d.pairs.push_back({std::int64_t(p), std::int64_t(p % 40), std::int64_t((p * 7 + 1) % 40), 1.0});
  return d;
}

}  // namespace

TEST(TrainBatches, EpochsArePermutationsAndStepsPartitionThem) {
  const auto data = data_with(23);
  const TrainBatches batches(data, 5, 42);
  ASSERT_EQ(batches.steps_per_epoch(), 4);  // 23 / 5, the tail of 3 pairs is dropped
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    const auto order = batches.epoch_order(epoch);
    EXPECT_EQ(std::set<std::size_t>(order.begin(), order.end()).size(), 23u);
    std::set<std::size_t> seen;
    for (std::int64_t s = 0; s < 4; ++s) {
      const auto step = epoch * 4 + s;
      const auto loc = batches.locate(step);
      EXPECT_EQ(loc.epoch, epoch);
      EXPECT_EQ(loc.position, s * 5);
      const auto pairs = batches.step_pairs(step);
      ASSERT_EQ(pairs.size(), 5u);
      for (std::size_t k = 0; k < 5; ++k) {
        EXPECT_EQ(pairs[k], order[std::size_t(s * 5) + k]);
        EXPECT_TRUE(seen.insert(pairs[k]).second);
      }
    }
  }
  EXPECT_NE(batches.epoch_order(0), batches.epoch_order(1));  // reshuffled per epoch
}

TEST(TrainBatches, BatchDependsOnlyOnSeedAndStep) {
  const auto data = data_with(30);
  const TrainBatches a(data, 4, 7), b(data, 4, 7), c(data, 4, 8);
  for (std::int64_t step : {9, 0, 15, 3}) EXPECT_EQ(a.step_pairs(step), b.step_pairs(step));  // any order
  EXPECT_NE(a.epoch_order(0), c.epoch_order(0));
}

TEST(TrainBatches, TooLargeBatchIsRefused) {
  const auto data = data_with(3);
  EXPECT_THROW(TrainBatches(data, 4, 0), evoq::UsageError);
  EXPECT_THROW(TrainBatches(data, 0, 0), evoq::UsageError);
}

TEST(TrainBatches, StepImagesAreDistinctAndSorted) {
  TrainData d;
  d.image_paths = {"a", "b", "c", "d"};
  d.pairs = {{0, 3, 1, 1.0}, {1, 1, 2, 0.0}, {2, 0, 3, 0.5}};
  EXPECT_EQ(step_images(d, {0, 1}), (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_EQ(step_images(d, {2, 0}), (std::vector<std::int64_t>{0, 1, 3}));
}

TEST(TrainBatches, RankSliceIsABalancedPartition) {
  for (std::size_t n : {0u, 1u, 5u, 8u, 13u})
    for (int ranks : {1, 2, 3, 8}) {
      std::size_t next = 0, lo = n, hi = 0;
      for (int r = 0; r < ranks; ++r) {
        const auto [b, e] = evoq::core::block_range(n, r, ranks);
        EXPECT_EQ(b, next);
        next = e;
        lo = std::min(lo, e - b);
        hi = std::max(hi, e - b);
      }
      EXPECT_EQ(next, n);
      EXPECT_LE(hi - lo, 1u);
    }
}
