// Model layer unit tests: config parsing (real Qwen2-VL-2B config), key coverage of the real 729-key
// weight index on the meta device, M-RoPE indices derived by hand, window layout, and shared-prefix
// cached decoding against a full recomputation.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "evoq/core/error.h"
#include "evoq/model/config.h"
#include "evoq/model/mrope.h"
#include "evoq/model/qwen_vl.h"
#include "evoq/model/weights.h"
#include "evoq/model/window_index.h"

using namespace evoq::model;
using nlohmann::json;

static const std::string kData = EVOQ_TEST_DATA;

TEST(ModelConfig, ParsesRealQwen2VL2B) {
  auto c = load_config(kData + "/qwen2-vl-2b");
  EXPECT_EQ(c.arch, Arch::Qwen2VL);
  EXPECT_EQ(c.text.hidden_size, 1536);
  EXPECT_EQ(c.text.num_hidden_layers, 28);
  EXPECT_EQ(c.text.num_attention_heads, 12);
  EXPECT_EQ(c.text.num_key_value_heads, 2);
  EXPECT_EQ(c.text.head_dim, 128);
  EXPECT_EQ(c.text.vocab_size, 151936);
  EXPECT_DOUBLE_EQ(c.text.rope_theta, 1e6);
  EXPECT_EQ(c.text.mrope_section, (std::vector<int64_t>{16, 24, 24}));
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.vision.width, 1280);
  EXPECT_EQ(c.vision.depth, 32);
  EXPECT_EQ(c.vision.intermediate_size, 5120);
  EXPECT_EQ(c.vision.out_hidden_size, 1536);
  EXPECT_EQ(c.vision.hidden_act, "quick_gelu");
  EXPECT_EQ(c.image_token_id, 151655);
}

TEST(ModelConfig, ParsesNestedQwen25VL) {
  json j = {{"model_type", "qwen2_5_vl"},
            {"tie_word_embeddings", false},
            {"text_config",
             {{"hidden_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
              {"intermediate_size", 128}, {"vocab_size", 1000}, {"rms_norm_eps", 1e-6},
              {"rope_parameters", {{"mrope_section", {2, 3, 3}}, {"rope_theta", 1e6}, {"rope_type", "default"}}}}},
            {"vision_config",
             {{"depth", 3}, {"hidden_size", 32}, {"num_heads", 2}, {"intermediate_size", 48}, {"out_hidden_size", 64},
              {"fullatt_block_indexes", {1}}, {"window_size", 112}}}};
  auto c = parse_config(j, "cfg");
  EXPECT_EQ(c.arch, Arch::Qwen25VL);
  EXPECT_EQ(c.vision.width, 32);
  EXPECT_EQ(c.vision.out_hidden_size, 64);
  EXPECT_EQ(c.vision.fullatt_block_indexes, (std::vector<int64_t>{1}));
  EXPECT_EQ(c.vision.hidden_act, "silu");
  EXPECT_EQ(c.text.mrope_section, (std::vector<int64_t>{2, 3, 3}));
  EXPECT_FALSE(c.tie_word_embeddings);
}

TEST(ModelConfig, RejectsUnknownModelType) {
  json j = {{"model_type", "llava"}};
  try {
    parse_config(j, "x/config.json");
    FAIL() << "no error";
  } catch (const evoq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported model_type 'llava'"), std::string::npos) << e.what();
  }
}

TEST(ModelWeights, Every2BKeyMapsOntoOurParameters) {
  auto c = load_config(kData + "/qwen2-vl-2b");
  QwenVL model(c, torch::TensorOptions().device(torch::kMeta).dtype(torch::kBFloat16));  // allocates nothing
  std::set<std::string> ours;
  for (const auto& p : model.named_parameters(true)) ours.insert(p.key());
  json index = json::parse(std::ifstream(kData + "/qwen2-vl-2b/model.safetensors.index.json"));
  std::set<std::string> mapped;
  for (auto& [key, file] : index["weight_map"].items()) mapped.insert(canonical_weight_name(key));
  EXPECT_EQ(index["weight_map"].size(), 729u);
  for (const auto& k : mapped) EXPECT_TRUE(ours.count(k)) << "unexpected checkpoint key " << k;
  for (const auto& k : ours) EXPECT_TRUE(mapped.count(k)) << "missing checkpoint key " << k;
  EXPECT_EQ(ours.size(), 729u);
}

TEST(MRope, HandDerivedPositionsForTwoImages) {
  // text(2) | image grid (1,4,6) -> merged 2x3 | text(1) | image (1,2,2) -> 1x1 | text(2)
  const int64_t I = 7;
  std::vector<int64_t> ids = {1, 2, I, I, I, I, I, I, 3, I, 4, 5};
  auto r = rope_index(torch::tensor(ids).view({1, -1}), {}, torch::tensor({1, 4, 6, 1, 2, 2}).view({2, 3}), I, 2);
  auto p = r.positions;
  std::vector<int64_t> t = {0, 1, 2, 2, 2, 2, 2, 2, 5, 6, 7, 8};
  std::vector<int64_t> h = {0, 1, 2, 2, 2, 3, 3, 3, 5, 6, 7, 8};
  std::vector<int64_t> w = {0, 1, 2, 3, 4, 2, 3, 4, 5, 6, 7, 8};
  for (size_t j = 0; j < ids.size(); ++j) {
    EXPECT_EQ(p[0][0][j].item<int64_t>(), t[j]) << j;
    EXPECT_EQ(p[1][0][j].item<int64_t>(), h[j]) << j;
    EXPECT_EQ(p[2][0][j].item<int64_t>(), w[j]) << j;
  }
  EXPECT_EQ(r.deltas[0], 9 - 12);
  EXPECT_THROW(rope_index(torch::tensor(ids).view({1, -1}), {}, torch::tensor({1, 4, 6}).view({1, 3}), I, 2),
               evoq::Error);
}

TEST(WindowIndex, PartialWindowsInRowMajorWindowOrder) {
  // grid 1x10x6 patches -> merged 5x3, windows of 2x2 merged tokens (window 56 px, patch 14, merge 2)
  auto l = window_layout(torch::tensor({1, 10, 6}).view({1, 3}), 2, 56, 14);
  std::vector<int64_t> want = {0, 1, 3, 4, 2, 5, 6, 7, 9, 10, 8, 11, 12, 13, 14};
  auto got = l.index;
  ASSERT_EQ(got.numel(), 15);
  for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(got[i].item<int64_t>(), want[i]) << i;
  EXPECT_EQ(l.window_tokens, (std::vector<int64_t>{16, 8, 16, 8, 8, 4}));
}

namespace {
ModelConfig tiny_config(const std::string& type) {
  json j = {{"model_type", type},
            {"image_token_id", 95},
            {"text_config",
             {{"hidden_size", 32}, {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
              {"intermediate_size", 48}, {"vocab_size", 100}, {"rms_norm_eps", 1e-6},
              {"rope_parameters", {{"mrope_section", {1, 1, 2}}, {"rope_theta", 10000.0}}}}},
            {"vision_config",
             {{"depth", 2}, {"hidden_size", 32}, {"embed_dim", 16}, {"num_heads", 2}, {"mlp_ratio", 2},
              {"intermediate_size", 24}, {"out_hidden_size", 32}, {"fullatt_block_indexes", {1}}}}};
  if (type == "qwen2_5_vl") j["vision_config"]["hidden_size"] = 16;
  return parse_config(j, "tiny");
}
}  // namespace

class SharedPrefixDecode : public ::testing::TestWithParam<std::string> {};

TEST_P(SharedPrefixDecode, EqualsFullRecomputation) {
  torch::manual_seed(0);
  auto c = tiny_config(GetParam());
  QwenVL model(c, torch::TensorOptions().dtype(torch::kFloat64));
  {
    torch::NoGradGuard g;
    for (auto& p : model.parameters()) p.normal_(0, 0.2);
  }
  // Two prompts with different images and lengths; 3 and 2 continuations with their own tokens.
  auto prompt = [&](std::vector<int64_t> ids, std::vector<int64_t> grid) {
    Inputs in;
    in.input_ids = torch::tensor(ids).view({1, -1});
    in.image_grid_thw = torch::tensor(grid).view({1, 3});
    in.pixel_values = torch::randn({grid[0] * grid[1] * grid[2], c.vision.patch_dim()}, torch::kFloat64);
    return in;
  };
  std::vector<Inputs> prompts = {prompt({1, 2, 95, 95, 95, 95, 3}, {1, 4, 4}),
                                 prompt({4, 95, 95, 95, 95, 95, 95, 5, 6, 7}, {1, 2, 12})};
  std::vector<std::vector<std::vector<int64_t>>> conts = {{{10, 11, 12, 13}, {20, 21, 22, 23}, {30, 31, 32, 33}},
                                                          {{40, 41, 42, 43}, {50, 51, 52, 53}}};
  std::vector<PrefixGroup> groups;
  for (size_t g = 0; g < prompts.size(); ++g)
    groups.push_back({model.prefill(prompts[g]).cache, (int64_t)conts[g].size()});
  DecodeBatch batch(groups, 2);  // small reserve: capacity must grow
  std::vector<std::pair<int, int>> rows = {{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}};
  for (int step = 0; step < 4; ++step) {
    std::vector<int64_t> tokens;
    for (auto [g, s] : rows) tokens.push_back(conts[g][s][step]);
    auto logits = model.decode_step(batch, torch::tensor(tokens));
    for (size_t r = 0; r < rows.size(); ++r) {
      auto [g, s] = rows[r];
      Inputs full = prompts[g];
      std::vector<int64_t> ext(conts[g][s].begin(), conts[g][s].begin() + step + 1);
      full.input_ids = torch::cat({prompts[g].input_ids, torch::tensor(ext).view({1, -1})}, 1);
      auto want = model.forward(full, LogitsOf::Last)[0].to(torch::kFloat32);
      EXPECT_LT((logits[r] - want).abs().max().item<double>(), 1e-4) << "step " << step << " row " << r;
    }
    if (step == 1) {  // drop rows 1 and 3 (one from each group)
      batch.keep({0, 2, 4});
      rows = {{0, 0}, {0, 2}, {1, 1}};
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Arch, SharedPrefixDecode, ::testing::Values("qwen2_vl", "qwen2_5_vl"));
