#include <gtest/gtest.h>

#include "evoq/core/rank_partition.h"

using evoq::core::block_range;
using evoq::core::strided_indices;

// Hand-derived boundaries of the documented rule (the first n % ranks ranks get one item more).
TEST(RankPartition, BlocksGiveTheRemainderToTheFirstRanks) {
  using R = std::pair<std::size_t, std::size_t>;
  EXPECT_EQ(block_range(10, 0, 4), R(0, 3));
  EXPECT_EQ(block_range(10, 1, 4), R(3, 6));
  EXPECT_EQ(block_range(10, 2, 4), R(6, 8));
  EXPECT_EQ(block_range(10, 3, 4), R(8, 10));
  EXPECT_EQ(block_range(2, 3, 4), R(2, 2));  // more ranks than items: empty
  EXPECT_EQ(block_range(7, 0, 1), R(0, 7));
  EXPECT_THROW(block_range(7, 1, 1), std::exception);
}

TEST(RankPartition, StridedIsRoundRobin) {
  EXPECT_EQ(strided_indices(7, 1, 3), (std::vector<std::size_t>{1, 4}));
  EXPECT_EQ(strided_indices(2, 2, 3), (std::vector<std::size_t>{}));
  EXPECT_TRUE(evoq::core::strided_owner(7, 1, 3));
  EXPECT_FALSE(evoq::core::strided_owner(7, 0, 3));
}
