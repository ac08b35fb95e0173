// GRPO loss across 2 ranks and several micro-batches: with the global normaliser (all-reduced
// counts) the all-reduced gradient equals the gradient of the full-batch loss on one process.
#include <gtest/gtest.h>

#include "evoq/dist/communicator.h"
#include "evoq/evo/grpo_loss.h"

using namespace evoq;
using evo::LossAggregation;

namespace {

struct Batch {
  torch::Tensor logp, old, ref, adv, mask;
};

Batch make_batch() {  // identical on every rank (fixed seed)
  torch::manual_seed(123);
  const int64_t S = 10, T = 7;
  Batch b;
  b.logp = -torch::rand({S, T}, torch::kFloat64) * 2;
  b.old = b.logp + 0.3 * torch::randn({S, T}, torch::kFloat64);
  b.ref = b.logp + 0.4 * torch::randn({S, T}, torch::kFloat64);
  b.adv = torch::randn({S}, torch::kFloat64);
  b.mask = (torch::rand({S, T}, torch::kFloat64) > 0.3).to(torch::kFloat64);
  b.mask[4] = 0;  // an empty sequence
  return b;
}

}  // namespace

TEST(EvoGrpoLoss, RanksAndMicroBatchesGiveTheFullBatchGradient) {
  auto comm = dist::mpi_world();
  const Batch b = make_batch();
  for (auto agg :
       {LossAggregation::token_mean, LossAggregation::seq_mean_token_mean, LossAggregation::constant_divisor}) {
    evo::GrpoLossConfig config;
    config.aggregation = agg;
    config.constant_divisor = 7.0;
    // Reference: the whole batch in one process.
    auto full_leaf = b.logp.clone().requires_grad_(true);
    const double full_norm = evo::loss_normaliser(config, evo::local_counts(b.mask));
    auto full = evo::grpo_loss({full_leaf, b.old, b.ref, b.adv, b.mask}, config, full_norm);
    full.loss.backward();

    // This rank's rows (strided), in micro-batches of 2 rows.
    std::vector<std::vector<int64_t>> micro;
    for (int64_t s = comm->rank(); s < b.logp.size(0); s += comm->size()) {
      if (micro.empty() || micro.back().size() == 2) micro.emplace_back();
      micro.back().push_back(s);
    }
    evo::LossCounts local;
    for (const auto& rows : micro) {
      auto c = evo::local_counts(b.mask.index_select(0, torch::tensor(rows)));
      local.tokens += c.tokens;
      local.sequences += c.sequences;
    }
    const double norm = evo::loss_normaliser(config, evo::all_reduce_counts(local, *comm));
    EXPECT_DOUBLE_EQ(norm, full_norm);
    auto leaf = b.logp.clone().requires_grad_(true);
    double loss = 0.0;
    for (const auto& rows : micro) {
      auto idx = torch::tensor(rows);
      auto out = evo::grpo_loss({leaf.index_select(0, idx), b.old.index_select(0, idx), b.ref.index_select(0, idx),
                                 b.adv.index_select(0, idx), b.mask.index_select(0, idx)},
                                config, norm);
      out.loss.backward();
      loss += out.loss.item<double>();
    }
    auto grad = leaf.grad().clone();
    comm->all_reduce(grad, dist::ReduceOp::sum);
    auto total = torch::tensor({loss}, torch::kFloat64);
    comm->all_reduce(total, dist::ReduceOp::sum);
    EXPECT_NEAR(total.item<double>(), full.loss.item<double>(), 1e-12) << evo::to_string(agg);
    EXPECT_TRUE(torch::allclose(grad, full_leaf.grad(), 1e-12, 1e-15)) << evo::to_string(agg);
  }
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto comm = dist::mpi_world();
  if (comm->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  auto flag = torch::full({1}, int64_t(failed != 0), torch::kInt64);
  comm->all_reduce(flag, dist::ReduceOp::max);
  return flag.item<int64_t>() != 0 ? 1 : 0;
}
