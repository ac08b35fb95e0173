// dist::single_process(): one rank, identity collectives, on values whose results are known by hand.
#include <gtest/gtest.h>

#include "evoq/core/error.h"
#include "evoq/dist/communicator.h"

using evoq::dist::ReduceOp;

TEST(SingleProcess, IsRankZeroOfOne) {
  auto comm = evoq::dist::single_process();
  EXPECT_EQ(comm->backend(), "single");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->local_rank(), 0);
  EXPECT_EQ(comm->local_size(), 1);
  EXPECT_TRUE(comm->is_root());
}

TEST(SingleProcess, CollectivesOfOneContributionAreThatContribution) {
  auto comm = evoq::dist::single_process();
  for (auto op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::mean}) {
    auto t = torch::tensor({1.5f, -2.0f, 7.0f});
    comm->all_reduce(t, op);
    EXPECT_TRUE(torch::equal(t, torch::tensor({1.5f, -2.0f, 7.0f})));
  }
  auto b = torch::full({4}, int64_t(9), torch::kInt64);
  comm->broadcast(b, 0);
  EXPECT_EQ(b[3].item<int64_t>(), 9);

  auto input = torch::arange(6, torch::kFloat32).reshape({2, 3});
  auto shard = torch::zeros({6});
  comm->reduce_scatter(input, shard, ReduceOp::sum);
  EXPECT_TRUE(torch::equal(shard, torch::tensor({0.f, 1.f, 2.f, 3.f, 4.f, 5.f})));

  auto mine = torch::tensor({3.f, 4.f});
  auto all = torch::zeros({2});
  comm->all_gather(mine, all);
  EXPECT_TRUE(torch::equal(all, mine));

  const std::vector<std::uint8_t> blob{1, 2, 3};
  const auto blobs = comm->all_gather_bytes(blob);
  ASSERT_EQ(blobs.size(), 1u);
  EXPECT_EQ(blobs[0], blob);
  comm->barrier();
}

TEST(SingleProcess, BadArgumentsAreOneLineErrors) {
  auto comm = evoq::dist::single_process();
  auto t = torch::zeros({3});
  EXPECT_THROW(comm->broadcast(t, 1), evoq::Error);
  auto out = torch::zeros({2});
  EXPECT_THROW(comm->reduce_scatter(t, out, ReduceOp::sum), evoq::Error);
  EXPECT_THROW(comm->all_gather(t, out), evoq::Error);
  auto strided = torch::zeros({4, 4}).t();
  EXPECT_THROW(comm->all_reduce(strided, ReduceOp::sum), evoq::Error);
}
