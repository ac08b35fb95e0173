// Communicator collectives across 2 MPI ranks with rank-dependent values (run under mpirun -np 2).
#include <gtest/gtest.h>

#include "evoq/core/error.h"
#include "evoq/dist/agreement.h"
#include "evoq/dist/communicator.h"

using evoq::dist::mpi_world;
using evoq::dist::ReduceOp;

TEST(Communicator, RankAndSize) {
  auto comm = mpi_world();
  EXPECT_GE(comm->size(), 1);
  EXPECT_LT(comm->rank(), comm->size());
  EXPECT_LT(comm->local_rank(), comm->local_size());
  EXPECT_EQ(comm->backend(), "mpi");
}

TEST(Communicator, AllReduceSumMaxMeanOfRankDependentTensors) {
  auto comm = mpi_world();
  const int n = comm->size(), r = comm->rank();
  // Tensor value at i on rank r: r*100 + i. Sum over ranks: 100*n(n-1)/2 + n*i.
  auto t = torch::arange(5, torch::kFloat32) + 100.0f * r;
  comm->all_reduce(t, ReduceOp::sum);
  for (int i = 0; i < 5; ++i) EXPECT_FLOAT_EQ(t[i].item<float>(), 100.0f * n * (n - 1) / 2 + n * i);

  auto m = torch::tensor({double(r), -double(r)});
  comm->all_reduce(m, ReduceOp::max);
  EXPECT_DOUBLE_EQ(m[0].item<double>(), n - 1);
  EXPECT_DOUBLE_EQ(m[1].item<double>(), 0.0);

  auto mean = torch::full({3}, float(r + 1));
  comm->all_reduce(mean, ReduceOp::mean);
  EXPECT_FLOAT_EQ(mean[0].item<float>(), (n + 1) / 2.0f);

  auto ints = torch::full({4}, int64_t(r + 1), torch::kInt64);
  comm->all_reduce(ints, ReduceOp::sum);
  EXPECT_EQ(ints[3].item<int64_t>(), int64_t(n) * (n + 1) / 2);

  // bf16 has no MPI type: reduced through float32.
  auto bf = torch::full({2}, 1.0f, torch::kBFloat16);
  comm->all_reduce(bf, ReduceOp::sum);
  EXPECT_FLOAT_EQ(bf[0].item<float>(), float(n));
}

TEST(Communicator, BroadcastFromEachRoot) {
  auto comm = mpi_world();
  for (int root = 0; root < comm->size(); ++root) {
    auto t = torch::full({7}, float(comm->rank() * 10 + 3));
    comm->broadcast(t, root);
    EXPECT_FLOAT_EQ(t[6].item<float>(), float(root * 10 + 3));
  }
}

TEST(Communicator, ReduceScatterAndAllGather) {
  auto comm = mpi_world();
  const int n = comm->size(), r = comm->rank();
  auto input = torch::arange(4 * n, torch::kFloat32) * float(r + 1);
  auto shard = torch::empty({4});
  comm->reduce_scatter(input, shard, ReduceOp::sum);
  const float factor = n * (n + 1) / 2.0f;
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(shard[i].item<float>(), (r * 4 + i) * factor);

  auto mine = torch::full({3}, float(r));
  auto all = torch::empty({3 * n});
  comm->all_gather(mine, all);
  for (int k = 0; k < n; ++k) EXPECT_FLOAT_EQ(all[k * 3 + 2].item<float>(), float(k));
}

TEST(Communicator, AllGatherBytesOfUnevenSizes) {
  auto comm = mpi_world();
  const int r = comm->rank();
  // Rank r sends r*3 bytes (rank 0 sends nothing) with values r.
  std::vector<std::uint8_t> mine(size_t(r) * 3, std::uint8_t(r));
  auto all = comm->all_gather_bytes(mine);
  ASSERT_EQ(int(all.size()), comm->size());
  for (int k = 0; k < comm->size(); ++k) {
    ASSERT_EQ(all[k].size(), size_t(k) * 3);
    for (auto b : all[k]) EXPECT_EQ(b, k);
  }
  comm->barrier();
}

TEST(Communicator, RejectsNonContiguousAndWrongSizes) {
  auto comm = mpi_world();
  auto t = torch::zeros({4, 4}).t();
  EXPECT_THROW(comm->all_reduce(t, ReduceOp::sum), evoq::Error);
  auto in = torch::zeros({3});
  auto out = torch::zeros({5});
  EXPECT_THROW(comm->reduce_scatter(in, out, ReduceOp::sum), evoq::Error);
}

// A refusal decided from state only rank 0 sees (a file it has just written) is raised on EVERY rank as a
// usage error: a rank refusing alone would leave the others waiting in their next collective (the
// 2-rank start-up hang of `evoq train`). The collective after the refusal completing is part of the check.
TEST(Agreement, RefuseAlikeRaisesRankZerosUsageErrorEverywhere) {
  auto comm = mpi_world();
  int calls = 0;
  try {
    evoq::dist::refuse_alike(*comm, "train", [&] {
      ++calls;
      return std::string("'run' already holds a training run");
    });
    ADD_FAILURE() << "no refusal on rank " << comm->rank();
  } catch (const evoq::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("already holds a training run"), std::string::npos);
  }
  EXPECT_EQ(calls, comm->rank() == 0 ? 1 : 0);  // only rank 0 looks
  evoq::dist::refuse_alike(*comm, "train", [] { return std::string(); });  // fine: nobody throws
  auto one = torch::ones({1});
  comm->all_reduce(one, ReduceOp::sum);
  EXPECT_EQ(one.item<float>(), float(comm->size()));
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto comm = mpi_world();
  // Only rank 0 prints gtest output; every rank's result decides the exit status.
  if (comm->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  auto flag = torch::full({1}, int64_t(failed != 0), torch::kInt64);
  comm->all_reduce(flag, ReduceOp::max);
  return flag.item<int64_t>() != 0 ? 1 : 0;
}
