// Memory estimate (parameter counts and byte arithmetic derived by hand), trainable scopes, and the
// crash-safety rules of latest_checkpoint() (temporary folders, stale `latest`).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "evoq/core/error.h"
#include "evoq/train/memory_estimate.h"
#include "evoq/train/train_checkpoint.h"
#include "evoq/train/trainable_scope.h"
#include "evoq/model/config.h"
#include "evoq/model/qwen_vl.h"
#include "tiny_model_config.h"

using namespace evoq;
namespace fs = std::filesystem;

namespace {

// Qwen2.5-VL-7B-Instruct's config (the fields that determine the parameter count).
model::ModelConfig qwen25_7b() {
  nlohmann::json j = {
      {"model_type", "qwen2_5_vl"},
      {"tie_word_embeddings", false},
      {"hidden_size", 3584}, {"num_hidden_layers", 28}, {"num_attention_heads", 28}, {"num_key_value_heads", 4},
      {"intermediate_size", 18944}, {"vocab_size", 152064}, {"rms_norm_eps", 1e-6}, {"rope_theta", 1e6},
      {"rope_scaling", {{"type", "mrope"}, {"mrope_section", {16, 24, 24}}}},
      {"vision_config",
       {{"depth", 32}, {"hidden_size", 1280}, {"intermediate_size", 3420}, {"out_hidden_size", 3584},
        {"num_heads", 16}, {"patch_size", 14}, {"spatial_merge_size", 2}, {"temporal_patch_size", 2},
        {"window_size", 112}, {"fullatt_block_indexes", {7, 15, 23, 31}}, {"in_chans", 3}}}};
  return model::parse_config(j, "qwen2.5-vl-7b");
}

model::ModelConfig tiny(const std::string& type, bool tied) { return evoq::testing::tiny_model_config(type, tied); }

int64_t meta_numel(const model::ModelConfig& c, const std::string& prefix) {
  model::QwenVL m(c, torch::TensorOptions().dtype(torch::kFloat32).device(torch::kMeta));
  int64_t n = 0;
  for (const auto& item : m.named_parameters(true))
    if (item.key().rfind(prefix, 0) == 0) n += item.value().numel();
  return n;
}

}  // namespace

TEST(MemoryEstimate, Qwen25VL7BCountIsTheKnownTotal) {
  const auto n = train::count_parameters(qwen25_7b());
  EXPECT_EQ(n.total(), 8'292'166'656);  // also checked against transformers in test_train_optimizer.py
  EXPECT_EQ(n.lm_head, 152064LL * 3584);
  // Merger by hand: RMSNorm 1280 + (5120x5120 + 5120) + (5120x3584 + 3584).
  EXPECT_EQ(n.merger, 1280 + 5120LL * 5120 + 5120 + 5120LL * 3584 + 3584);
  EXPECT_EQ(train::trainable_count(n, "lm"), n.decoder + n.lm_head);
  EXPECT_EQ(train::trainable_count(n, "lm+merger"), n.decoder + n.lm_head + n.merger);
  EXPECT_THROW(train::trainable_count(n, "vision"), evoq::UsageError);
}

TEST(MemoryEstimate, CountsEqualTheModelsOwnParameters) {
  for (const std::string type : {"qwen2_vl", "qwen2_5_vl"}) {
    for (bool tied : {false, true}) {
      const auto c = tiny(type, tied);
      const auto n = train::count_parameters(c);
      EXPECT_EQ(n.total(), meta_numel(c, "")) << type << " tied " << tied;
      EXPECT_EQ(n.merger, meta_numel(c, "model.visual.merger.")) << type;
      EXPECT_EQ(n.vision + n.merger, meta_numel(c, "model.visual.")) << type;
      EXPECT_EQ(n.decoder, meta_numel(c, "model.language_model.")) << type;
      EXPECT_EQ(n.lm_head, meta_numel(c, "lm_head.")) << type;
    }
  }
}

TEST(MemoryEstimate, BytesFollowTheDocumentedFormulas) {
  const auto c = qwen25_7b();
  train::MemoryPlan plan;
  plan.ranks = 8;
  plan.bf16 = true;
  plan.zero_stage = 1;
  plan.activation_checkpointing = true;
  plan.micro_batch_sequences = 2;
  plan.sequence_length = 1000;
  plan.image_tokens = 100;
  plan.rollout_images = 1;
  plan.rollout_samples = 8;
  plan.prompt_tokens = 300;
  plan.response_tokens = 200;
  plan.bucket_mb = 25;
  const auto e = train::estimate_training_memory(c, plan);
  const double P = 8'292'166'656.0;
  EXPECT_DOUBLE_EQ(e.weights, 2 * P);
  EXPECT_DOUBLE_EQ(e.reference_weights, 2 * P);
  EXPECT_DOUBLE_EQ(e.grads, 2 * P);                    // stage 1: full bf16 .grad
  EXPECT_DOUBLE_EQ(e.optimizer_state, 12 * P / 8);     // master + m + v, 1/8 each
  EXPECT_DOUBLE_EQ(e.comm_buffers, 2 * 25.0 * 1024 * 1024 + 4 * P / 8);
  // Decoder with checkpointing: 2000 tokens x (28 layers x 2 B x 3584 + 2 B x (6x3584 + 4x512 + 4x18944)).
  const double lm = 2000.0 * (28 * 2 * 3584 + 2.0 * (6 * 3584 + 4 * 512 + 4 * 18944));
  // Vision (trained in scope "all"): 2 x 100 x 4 patches x (32 x 2 B x 1280 + 2 B x (6x1280 + 4x3420)).
  const double vision = 800.0 * (32 * 2 * 1280 + 2.0 * (6 * 1280 + 4 * 3420));
  EXPECT_DOUBLE_EQ(e.activations, lm + vision);
  EXPECT_DOUBLE_EQ(e.logits, 2000.0 * 152064 * (2 + 8));
  EXPECT_DOUBLE_EQ(e.rollout_kv, 2.0 * 28 * 512 * 2 * (300 + 8 * 200));
  EXPECT_LT(e.total(), 80e9);  // the 8-GPU configuration of docs/TRAINING.md

  plan.zero_stage = 2;
  EXPECT_DOUBLE_EQ(train::estimate_training_memory(c, plan).grads, 2 * P / 8);
  plan.zero_stage = 0;
  plan.reference_model = false;
  plan.bf16 = false;
  plan.trainable_scope = "lm";
  const auto f = train::estimate_training_memory(c, plan);
  const double T = double(f.trainable);
  EXPECT_DOUBLE_EQ(f.reference_weights, 0.0);
  EXPECT_DOUBLE_EQ(f.optimizer_state, 8 * T);  // fp32 parameters: no master
  EXPECT_DOUBLE_EQ(f.activations, 2000.0 * (28 * 4 * 3584 + 4.0 * (6 * 3584 + 4 * 512 + 4 * 18944)));
  EXPECT_GT(f.total(), 80e9);
  EXPECT_NE(train::format_memory_table(e, plan).find("total"), std::string::npos);
  plan.zero_stage = 3;
  EXPECT_THROW(train::estimate_training_memory(c, plan), evoq::UsageError);
}

TEST(TrainableScope, SelectsAndFreezes) {
  model::QwenVL m(tiny("qwen2_5_vl", false), torch::TensorOptions().dtype(torch::kFloat32).device(torch::kMeta));
  auto all = train::trainable_parameters(m, "all");
  auto lm = train::trainable_parameters(m, "lm");
  int64_t lm_numel = 0;
  for (auto& [name, t] : lm) {
    EXPECT_TRUE(name.rfind("model.language_model.", 0) == 0 || name == "lm_head.weight") << name;
    lm_numel += t.numel();
  }
  EXPECT_EQ(lm_numel, meta_numel(tiny("qwen2_5_vl", false), "model.language_model.") +
                          meta_numel(tiny("qwen2_5_vl", false), "lm_head."));
  for (auto& item : m.named_parameters(true))
    EXPECT_EQ(item.value().requires_grad(), train::in_trainable_scope(item.key(), "lm")) << item.key();
  auto merger = train::trainable_parameters(m, "lm+merger");
  EXPECT_GT(merger.size(), lm.size());
  EXPECT_LT(merger.size(), all.size());
  EXPECT_THROW(train::trainable_parameters(m, "vision"), evoq::UsageError);
}

TEST(TrainCheckpoint, LatestIgnoresTemporaryAndIncompleteFolders) {
  const fs::path run = fs::path(::testing::TempDir()) / ("evoq-latest-" + std::to_string(::getpid()));
  fs::remove_all(run);
  EXPECT_FALSE(train::latest_checkpoint(run.string()).has_value());
  const fs::path ck = run / "checkpoints";
  auto complete = [&](int64_t step) {
    fs::create_directories(ck / train::checkpoint_dir_name(step));
    std::ofstream(ck / train::checkpoint_dir_name(step) / "trainer_state.h5") << "x";
  };
  complete(3);
  complete(5);
  fs::create_directories(ck / ".tmp-step-00000009");                  // a save interrupted by kill -9
  std::ofstream(ck / ".tmp-step-00000009" / "trainer_state.h5") << "x";
  fs::create_directories(ck / "step-00000011");                        // no trainer state: not complete
  EXPECT_EQ(train::checkpoint_dir_name(42), "step-00000042");
  // No `latest`: the highest complete folder.
  EXPECT_EQ(fs::path(*train::latest_checkpoint(run.string())).filename(), "step-00000005");
  std::ofstream(ck / "latest") << "step-00000003\n";
  EXPECT_EQ(fs::path(*train::latest_checkpoint(run.string())).filename(), "step-00000003");
  std::ofstream(ck / "latest") << "step-00000007\n";                   // stale pointer (pruned by hand)
  EXPECT_EQ(fs::path(*train::latest_checkpoint(run.string())).filename(), "step-00000005");
  fs::remove_all(run);
}
