// DistributedAdamW and training checkpoints on 2 ranks (mpirun -np 2):
//  - each rank holding half of the batch gives the weights of one process on the union batch
//    (computed on every rank with a one-rank communicator), unsharded and sharded;
//  - sharded == unsharded with bf16 parameters (fp32 masters) and buckets that split parameters;
//  - optimizer state and whole checkpoints round-trip: N steps straight == k steps, save, new objects,
//    load, N - k steps (bit for bit).
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>
#include <unistd.h>

#include "evoq/core/error.h"
#include "evoq/dist/communicator.h"
#include "evoq/train/optimizer.h"
#include "evoq/dist/stop_signal.h"
#include "evoq/train/train_checkpoint.h"
#include "evoq/model/config.h"
#include "evoq/model/qwen_vl.h"

using namespace evoq;
namespace fs = std::filesystem;

namespace {

// The reference run: a communicator of one rank whose collectives are identities.
class SelfCommunicator : public dist::Communicator {
 public:
  std::string backend() const override { return "self"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  void all_reduce(torch::Tensor&, dist::ReduceOp) override {}
  void broadcast(torch::Tensor&, int) override {}
  void reduce_scatter(const torch::Tensor& in, torch::Tensor& out, dist::ReduceOp) override { out.copy_(in); }
  void all_gather(const torch::Tensor& shard, torch::Tensor& out) override { out.copy_(shard); }
  void barrier() override {}
  std::vector<std::vector<std::uint8_t>> all_gather_bytes(const std::vector<std::uint8_t>& mine) override {
    return {mine};
  }
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

// Toy model: y = s * tanh(x W + b); 5x3 + 3 + 1 = 19 elements (odd: shards of unequal length).
struct Toy {
  torch::Tensor W, b, s;
  explicit Toy(torch::Dtype dtype) {
    torch::manual_seed(42);
    W = torch::randn({5, 3}).to(dtype).set_requires_grad(true);
    b = torch::randn({3}).to(dtype).set_requires_grad(true);
    s = torch::ones({1}).to(dtype).set_requires_grad(true);
  }
  std::vector<std::pair<std::string, torch::Tensor>> params() { return {{"W", W}, {"b", b}, {"s", s}}; }
  // Sum of squared errors over rows [lo, hi) of the step's batch, divided by the global batch size.
  void backward(int step, int64_t lo, int64_t hi) {
    torch::manual_seed(1000 + step);
    auto x = torch::randn({8, 5}) * 2, y = torch::randn({8, 3});
    auto xs = x.slice(0, lo, hi).to(W.scalar_type()), ys = y.slice(0, lo, hi).to(W.scalar_type());
    auto pred = s * torch::tanh(xs.matmul(W) + b);
    ((pred - ys).pow(2).sum() / 8.0).backward();
  }
};

train::OptimizerConfig config(bool shard) {
  train::OptimizerConfig c;
  c.lr = 0.05;
  c.weight_decay = 0.1;
  c.max_grad_norm = 0.5;
  c.warmup_steps = 1;
  c.total_steps = 8;
  c.shard_state = shard;
  c.bucket_mb = 7 * 4 / (1024.0 * 1024.0);  // 7-element buckets: parameters span buckets
  return c;
}

// A folder name every rank agrees on (rank 0's pid).
std::string shared_temp_dir(dist::Communicator& comm, const std::string& tag) {
  auto blobs = comm.all_gather_bytes(dist::to_bytes(std::to_string(::getpid())));
  auto dir = fs::path(::testing::TempDir()) / ("evoq-opt-" + tag + "-" + dist::to_string(blobs[0]));
  comm.barrier();
  if (comm.is_root()) fs::create_directories(dir);
  comm.barrier();
  return dir.string();
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double rtol, double atol, const std::string& what) {
  EXPECT_TRUE(torch::allclose(a.to(torch::kFloat64), b.to(torch::kFloat64), rtol, atol))
      << what << ": max diff " << (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace

// CPU tensors over MPI (summation order fixed by MPI); over NCCL the order depends on the rank count
// and topology, which the tolerance of 1e-5 also covers (docs/TRAINING.md "Determinism: CPU and CUDA").
TEST(EvoOptimizer, TwoRanksEqualOneRankOnTheUnionBatch) {
  auto comm = dist::mpi_world();
  ASSERT_EQ(comm->size(), 2);
  for (bool shard : {false, true}) {
    Toy dist_model(torch::kFloat32), ref_model(torch::kFloat32);
    train::DistributedAdamW dist_opt(dist_model.params(), config(shard), comm);
    train::DistributedAdamW ref_opt(ref_model.params(), config(false), std::make_shared<SelfCommunicator>());
    // Buckets of 7, 7, 5 elements padded to 8, 8, 6: rank 0 owns 4 + 4 + 3, rank 1 3 + 3 + 2.
    if (shard) EXPECT_EQ(dist_opt.owned_numel(), comm->rank() == 0 ? 11 : 8);
    const auto before = dist_model.W.detach().clone();
    for (int step = 0; step < 6; ++step) {
      dist_model.backward(step, 4 * comm->rank(), 4 * comm->rank() + 4);
      ref_model.backward(step, 0, 8);
      const auto a = dist_opt.step(), b = ref_opt.step();
      EXPECT_TRUE(a.applied);
      EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-6 * b.grad_norm);
      EXPECT_DOUBLE_EQ(a.lr, b.lr);
    }
    EXPECT_FALSE(torch::allclose(before, dist_model.W));
    expect_close(dist_model.W, ref_model.W, 1e-5, 1e-6, "W");
    expect_close(dist_model.b, ref_model.b, 1e-5, 1e-6, "b");
    expect_close(dist_model.s, ref_model.s, 1e-5, 1e-6, "s");
  }
}

TEST(EvoOptimizer, NonFiniteGradientOnOneRankSkipsTheStepEverywhere) {
  auto comm = dist::mpi_world();
  for (bool shard : {false, true}) {
    Toy m(torch::kFloat32);
    train::DistributedAdamW opt(m.params(), config(shard), comm);
    m.backward(0, 4 * comm->rank(), 4 * comm->rank() + 4);
    const auto before = m.W.detach().clone();
    if (comm->rank() == 1) m.s.mutable_grad()[0] = std::numeric_limits<float>::quiet_NaN();
    const auto r = opt.step();
    EXPECT_FALSE(r.applied);
    EXPECT_TRUE(r.nonfinite);
    EXPECT_TRUE(torch::equal(before, m.W));
    EXPECT_EQ(opt.steps_taken(), 1);
    EXPECT_EQ(opt.adam_steps(), 0);
    EXPECT_FALSE(m.W.grad().defined());
  }
}

TEST(EvoOptimizer, ShardedEqualsUnshardedWithBf16Masters) {
  auto comm = dist::mpi_world();
  Toy a(torch::kBFloat16), b(torch::kBFloat16);
  train::DistributedAdamW sharded(a.params(), config(true), comm);
  train::DistributedAdamW replicated(b.params(), config(false), comm);
  EXPECT_EQ(replicated.state_bytes(), std::size_t(19 * 3 * 4));  // moments + masters of everything
  EXPECT_LT(sharded.state_bytes(), replicated.state_bytes());
  for (int step = 0; step < 6; ++step) {
    a.backward(step, 4 * comm->rank(), 4 * comm->rank() + 4);
    b.backward(step, 4 * comm->rank(), 4 * comm->rank() + 4);
    sharded.step();
    replicated.step();
  }
  for (auto [x, y] : {std::pair{a.W, b.W}, {a.b, b.b}, {a.s, b.s}}) {
    EXPECT_EQ(x.scalar_type(), torch::kBFloat16);
    expect_close(x, y, 8e-3, 1e-3, "bf16 parameter");  // at most one bf16 step apart
  }
  // Both ranks hold the same parameters.
  auto w = a.W.detach().to(torch::kFloat32).contiguous().view({-1});
  auto gathered = torch::empty({2 * w.numel()});
  comm->all_gather(w, gathered);
  EXPECT_TRUE(torch::equal(gathered.slice(0, 0, w.numel()), gathered.slice(0, w.numel())));
}

TEST(EvoOptimizer, SaveAndLoadStateContinuesIdentically) {
  auto comm = dist::mpi_world();
  const auto dir = shared_temp_dir(*comm, "state");
  for (bool shard : {false, true}) {
    for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      Toy straight(dtype), resumed(dtype);
      train::DistributedAdamW opt(straight.params(), config(shard), comm);
      const std::string path = dir + "/state-r" + std::to_string(comm->rank()) + ".h5";
      for (int step = 0; step < 6; ++step) {
        straight.backward(step, 4 * comm->rank(), 4 * comm->rank() + 4);
        opt.step();
        if (step == 2) {
          opt.save_state(path);
          torch::NoGradGuard g;
          resumed.W.copy_(straight.W);
          resumed.b.copy_(straight.b);
          resumed.s.copy_(straight.s);
        }
      }
      train::DistributedAdamW opt2(resumed.params(), config(shard), comm);
      opt2.load_state(path);
      EXPECT_EQ(opt2.steps_taken(), 3);
      for (int step = 3; step < 6; ++step) {
        resumed.backward(step, 4 * comm->rank(), 4 * comm->rank() + 4);
        opt2.step();
      }
      EXPECT_TRUE(torch::equal(straight.W, resumed.W)) << "shard " << shard;
      EXPECT_TRUE(torch::equal(straight.b, resumed.b));
      EXPECT_TRUE(torch::equal(straight.s, resumed.s));

      // Mismatches are refused with the file named.
      Toy other(dtype);
      train::DistributedAdamW wrong_layout(other.params(), config(!shard), comm);
      try {
        wrong_layout.load_state(path);
        ADD_FAILURE() << "loading a state of the other layout must fail";
      } catch (const evoq::Error& e) {
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      }
      std::vector<std::pair<std::string, torch::Tensor>> renamed = {{"W", other.W}, {"bias", other.b}, {"s", other.s}};
      train::DistributedAdamW wrong_names(renamed, config(shard), comm);
      EXPECT_THROW(wrong_names.load_state(path), evoq::Error);
      const std::string other_rank = dir + "/state-r" + std::to_string(1 - comm->rank()) + ".h5";
      comm->barrier();
      if (shard) EXPECT_THROW(wrong_layout.load_state(other_rank), evoq::Error);
      comm->barrier();
    }
  }
  comm->barrier();
  if (comm->is_root()) fs::remove_all(dir);
}

namespace {

model::ModelConfig tiny_config() {
  nlohmann::json j = {
      {"model_type", "qwen2_vl"},
      {"image_token_id", 95},
      {"tie_word_embeddings", false},
      {"text_config",
       {{"hidden_size", 16}, {"num_hidden_layers", 1}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
        {"intermediate_size", 24}, {"vocab_size", 100}, {"rms_norm_eps", 1e-6},
        {"rope_parameters", {{"mrope_section", {1, 1, 2}}, {"rope_theta", 10000.0}}}}},
      {"vision_config",
       {{"depth", 1}, {"hidden_size", 16}, {"embed_dim", 8}, {"num_heads", 2}, {"mlp_ratio", 2}}}};
  return model::parse_config(j, "tiny");
}

std::shared_ptr<model::QwenVL> tiny_model(int seed) {
  auto m = std::make_shared<model::QwenVL>(tiny_config(), torch::TensorOptions().dtype(torch::kFloat32));
  torch::manual_seed(seed);
  torch::NoGradGuard g;
  for (auto& p : m->parameters()) p.normal_(0, 0.2);
  return m;
}

// One training step on this rank's two sequences of the global batch of four.
void lm_step(model::QwenVL& m, train::DistributedAdamW& opt, int step, int rank) {
  torch::manual_seed(500 + step);
  auto ids = torch::randint(0, 90, {4, 6});
  model::Inputs in;
  in.input_ids = ids.slice(0, 2 * rank, 2 * rank + 2);
  auto logits = m.forward(in);
  auto logp = torch::log_softmax(logits.slice(1, 0, 5), -1).gather(-1, in.input_ids.slice(1, 1).unsqueeze(-1));
  (-logp.sum() / 20.0).backward();
  opt.step();
}

}  // namespace

TEST(EvoTrainCheckpoint, SaveLatestLoadContinuesIdentically) {
  auto comm = dist::mpi_world();
  const auto run_dir = shared_temp_dir(*comm, "ckpt");
  // A source model folder with the side files a checkpoint must carry (tokenizer, processor, generation).
  const std::string source = run_dir + "/source";
  if (comm->is_root()) {
    fs::create_directories(source);
    for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "generation_config.json",
                          "preprocessor_config.json"})
      std::ofstream(fs::path(source) / f) << "{}\n";
  }
  comm->barrier();
  for (bool shard : {false, true}) {
    auto straight = tiny_model(1);
    train::OptimizerConfig c = config(shard);
    c.lr = 0.01;
    train::DistributedAdamW opt(train::trainable_parameters(*straight, "lm+merger"), c, comm);
    const int total = 5, k = 3;
    train::TrainProgress progress;
    progress.seed = 0xfeedfacecafebeefULL;
    progress.extra = {{"rng", {1, 2, 3}}};
    for (int step = 0; step < total; ++step) {
      lm_step(*straight, opt, step, comm->rank());
      progress.step = step + 1;
      progress.position = 2 * (step + 1);
      if (progress.step <= k) train::save_checkpoint(run_dir, *straight, source, opt, progress, *comm, /*keep_last=*/2);
    }
    const auto latest = train::latest_checkpoint(run_dir);
    ASSERT_TRUE(latest.has_value());
    EXPECT_EQ(fs::path(*latest).filename(), "step-00000003");
    EXPECT_FALSE(fs::exists(fs::path(run_dir) / "checkpoints" / "step-00000001"));  // pruned (keep 2)
    EXPECT_TRUE(fs::exists(fs::path(run_dir) / "checkpoints" / "step-00000002"));
    for (const char* f : {"model/config.json", "model/model.safetensors", "model/vocab.json", "model/merges.txt",
                          "model/tokenizer_config.json", "model/generation_config.json",
                          "model/preprocessor_config.json", "optimizer-r0.h5", "optimizer-r1.h5", "trainer_state.h5"})
      EXPECT_TRUE(fs::exists(fs::path(*latest) / f)) << f;

    auto resumed = tiny_model(2);  // different weights until loaded
    train::DistributedAdamW opt2(train::trainable_parameters(*resumed, "lm+merger"), c, comm);
    const auto p = train::load_checkpoint(*latest, *resumed, opt2, *comm);
    EXPECT_EQ(p.step, k);
    EXPECT_EQ(p.position, 2 * k);
    EXPECT_EQ(p.seed, 0xfeedfacecafebeefULL);
    EXPECT_EQ(p.extra, (nlohmann::json{{"rng", {1, 2, 3}}}));
    EXPECT_EQ(opt2.steps_taken(), k);
    for (int step = k; step < total; ++step) lm_step(*resumed, opt2, step, comm->rank());
    auto a = straight->named_parameters(), b = resumed->named_parameters();
    for (auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key() << " shard " << shard;
    comm->barrier();
    if (comm->is_root()) fs::remove_all(fs::path(run_dir) / "checkpoints");
    comm->barrier();
  }
  // A failure on rank 0 (checkpoints/ is a file) makes every rank throw instead of hanging.
  auto m = tiny_model(1);
  train::DistributedAdamW opt(train::trainable_parameters(*m, "lm"), config(true), comm);
  const auto bad_run = fs::path(run_dir) / "bad";
  if (comm->is_root()) {
    fs::create_directories(bad_run);
    std::ofstream(bad_run / "checkpoints") << "not a folder";
  }
  comm->barrier();
  try {
    train::save_checkpoint(bad_run.string(), *m, "", opt, train::TrainProgress{}, *comm);
    ADD_FAILURE() << "save_checkpoint must fail on every rank";
  } catch (const evoq::Error& e) {
    if (comm->rank() == 1) EXPECT_NE(std::string(e.what()).find("failed on rank 0"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(train::latest_checkpoint(bad_run.string()).has_value());
  // A checkpoint missing rank 1's optimizer state: every rank refuses to resume.
  const auto half_run = fs::path(run_dir) / "half";
  train::save_checkpoint(half_run.string(), *m, "", opt, train::TrainProgress{}, *comm);
  const auto half = train::latest_checkpoint(half_run.string());
  ASSERT_TRUE(half.has_value());
  comm->barrier();
  if (comm->is_root()) fs::remove(fs::path(*half) / "optimizer-r1.h5");
  comm->barrier();
  try {
    train::load_checkpoint(*half, *m, opt, *comm);
    ADD_FAILURE() << "load_checkpoint must fail on every rank";
  } catch (const evoq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer-r1.h5"), std::string::npos) << e.what();
  }
  comm->barrier();
  if (comm->is_root()) fs::remove_all(run_dir);
}

TEST(EvoStopSignal, AnyRankStopsEveryRank) {
  auto comm = dist::mpi_world();
  dist::install_stop_handlers();
  dist::clear_stop_request();
  EXPECT_FALSE(dist::stop_requested_anywhere(*comm));
  if (comm->rank() == 1) std::raise(SIGUSR1);
  EXPECT_TRUE(dist::stop_requested_anywhere(*comm));
  dist::clear_stop_request();
  if (comm->rank() == 0) std::raise(SIGTERM);
  EXPECT_TRUE(dist::stop_requested_anywhere(*comm));
  dist::clear_stop_request();
  EXPECT_EQ(dist::kExitStoppedBySignal, 75);
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto comm = dist::mpi_world();
  // Only rank 0 prints gtest output; every rank's result decides the exit status.
  if (comm->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  auto flag = torch::full({1}, int64_t(failed != 0), torch::kInt64);
  comm->all_reduce(flag, dist::ReduceOp::max);
  return flag.item<int64_t>() != 0 ? 1 : 0;
}
