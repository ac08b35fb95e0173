// Model layer unit tests: config parsing (real Qwen2-VL-2B config), key coverage of the real 729-key
// weight index on the meta device, M-RoPE indices derived by hand, window layout, fused projections
// (views of one storage; fused and separate paths agree), and shared-prefix cached decoding against a
// full recomputation (fp64), with sequences joining and leaving a running batch.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "evoq/core/error.h"
#include "evoq/model/config.h"
#include "evoq/model/mrope.h"
#include "evoq/model/qwen_vl.h"
#include "evoq/model/weights.h"
#include "evoq/model/window_index.h"
#include "tiny_model_config.h"

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
ModelConfig tiny_config(const std::string& type) { return evoq::testing::tiny_model_config(type); }
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

namespace {
// Random fp64 parameters (norm weights around 1) through the named parameters, as an optimizer or a
// checkpoint writes them: into the fused storage behind the q/k/v and gate/up views.
void randomise(QwenVL& model, double std = 0.2) {
  torch::NoGradGuard g;
  for (auto& p : model.parameters()) p.normal_(0, std);
}

Inputs image_prompt(const ModelConfig& c, std::vector<int64_t> ids, std::vector<int64_t> grid) {
  Inputs in;
  in.input_ids = torch::tensor(ids).view({1, -1});
  in.image_grid_thw = torch::tensor(grid).view({1, 3});
  in.pixel_values = torch::randn({grid[0] * grid[1] * grid[2], c.vision.patch_dim()}, torch::kFloat64);
  return in;
}

// Logits after prompt + continuation by the full forward (no cache).
torch::Tensor full_logits(QwenVL& model, const Inputs& prompt, const std::vector<int64_t>& continuation) {
  torch::NoGradGuard g;  // fused projections; the separate ones are compared with them above
  Inputs full = prompt;
  full.input_ids = torch::cat({prompt.input_ids, torch::tensor(continuation).view({1, -1})}, 1);
  return model.forward(full, LogitsOf::Last)[0].to(torch::kFloat32);
}
}  // namespace

TEST(FusedProjections, ParametersAreViewsOfOneStorageAndBothPathsAgree) {
  torch::manual_seed(1);
  auto c = tiny_config("qwen2_5_vl");
  QwenVL model(c, torch::TensorOptions().dtype(torch::kFloat64));
  randomise(model);
  auto named = model.named_parameters(true);
  const auto& layer = *model.language_model->layers[0];
  const int64_t q_rows = c.text.num_attention_heads * c.text.head_dim,
                kv_rows = c.text.num_key_value_heads * c.text.head_dim;
  const std::string pre = "model.language_model.layers.0.";
  EXPECT_TRUE(torch::equal(layer.qkv_weight().narrow(0, 0, q_rows), named[pre + "self_attn.q_proj.weight"]));
  EXPECT_TRUE(
      torch::equal(layer.qkv_weight().narrow(0, q_rows + kv_rows, kv_rows), named[pre + "self_attn.v_proj.weight"]));
  EXPECT_TRUE(torch::equal(layer.gate_up_weight().narrow(0, c.text.intermediate_size, c.text.intermediate_size),
                           named[pre + "mlp.up_proj.weight"]));
  // An in-place update of a parameter (the optimizer's) is seen by the fused storage.
  {
    torch::NoGradGuard g;
    named[pre + "self_attn.k_proj.weight"].detach().view({-1}).add_(1.0);
  }
  EXPECT_TRUE(torch::equal(layer.qkv_weight().narrow(0, q_rows, kv_rows), named[pre + "self_attn.k_proj.weight"]));
  EXPECT_TRUE(named[pre + "self_attn.k_proj.weight"].is_contiguous());

  // The no-grad forward (fused GEMMs) equals the training forward (separate views, with gradients).
  auto in = image_prompt(c, {1, 2, 95, 95, 95, 95, 3}, {1, 4, 4});
  torch::Tensor fused;
  {
    torch::NoGradGuard g;
    fused = model.forward(in, LogitsOf::All);
  }
  for (auto& p : model.parameters()) p.set_requires_grad(true);
  auto separate = model.forward(in, LogitsOf::All);
  EXPECT_TRUE(separate.requires_grad());
  EXPECT_LT((separate.detach() - fused).abs().max().item<double>(), 1e-12);
  separate.sum().backward();
  EXPECT_TRUE(named[pre + "self_attn.q_proj.weight"].grad().defined());
  EXPECT_TRUE(named[pre + "mlp.gate_proj.weight"].grad().defined());
}

// Sequences join a running batch (a new prompt and more samples of a live one), leave it, reuse a
// freed slot, and outlive the initial column capacity; every step's logits equal the full forward.
// fp64 (tight) and fp32 (the score dtype is then the model's own: no widening copy anywhere).
void join_and_leave(const std::string& arch, torch::Dtype dtype, double tolerance) {
  torch::manual_seed(2);
  auto c = tiny_config(arch);
  QwenVL model(c, torch::TensorOptions().dtype(dtype));
  randomise(model);
  std::vector<Inputs> prompts = {image_prompt(c, {1, 2, 95, 95, 95, 95, 3}, {1, 4, 4}),
                                 image_prompt(c, {4, 95, 95, 95, 95, 95, 95, 5, 6, 7}, {1, 2, 12}),
                                 image_prompt(c, {8, 95, 95, 95, 95, 9}, {1, 4, 4})};
  for (auto& p : prompts) p.pixel_values = p.pixel_values.to(dtype);
  std::vector<std::shared_ptr<const PrefixCache>> caches;
  for (auto& p : prompts) caches.push_back(model.prefill(p).cache);

  struct Live {
    int64_t id;
    size_t prompt;
    std::vector<int64_t> tokens;  // fed so far
  };
  std::vector<Live> live;
  DecodeBatch batch(/*reserve=*/2);  // small: the columns must be shifted and grown
  auto join = [&](size_t prompt, int64_t n) {
    for (int64_t id : batch.add(caches[prompt], n)) live.push_back({id, prompt, {}});
  };
  auto leave = [&](size_t index) {
    batch.remove(live[index].id);
    live.erase(live.begin() + static_cast<long>(index));
  };
  join(0, 2);
  for (int step = 0; step < 9; ++step) {
    if (step == 2) {
      join(1, 2);  // a new prompt mid-flight
      join(0, 1);  // and one more sample of a running prompt
    }
    if (step == 4) leave(1);  // a slot of prompt 0 frees...
    if (step == 5) join(0, 1);  // ...and is taken again
    if (step == 6) {
      leave(0);
      join(2, 3);
    }
    // Rows in a shuffled order (the engine's order need not be the batch's).
    std::vector<int64_t> order;
    for (size_t i = live.size(); i-- > 0;) order.push_back(live[i].id);
    batch.set_order(order);
    std::vector<int64_t> tokens;
    for (size_t i = live.size(); i-- > 0;) {
      live[i].tokens.push_back(10 + 7 * static_cast<int64_t>(i) + step);
      tokens.push_back(live[i].tokens.back());
    }
    auto logits = model.decode_step(batch, torch::tensor(tokens));
    std::set<size_t> prompts_read;
    for (const auto& l : live) prompts_read.insert(l.prompt);
    EXPECT_EQ(batch.num_groups(), static_cast<int64_t>(prompts_read.size()));
    for (size_t r = 0; r < live.size(); ++r) {
      const auto& l = live[live.size() - 1 - r];
      auto want = full_logits(model, prompts[l.prompt], l.tokens);
      EXPECT_LT((logits[static_cast<int64_t>(r)] - want).abs().max().item<double>(), tolerance)
          << c10::toString(dtype) << " step " << step << " row " << r << " prompt " << l.prompt;
    }
  }
  EXPECT_THROW(batch.set_order({12345}), evoq::Error);
}

TEST_P(SharedPrefixDecode, SequencesJoinAndLeaveARunningBatch) {
  join_and_leave(GetParam(), torch::kFloat64, 1e-5);
  join_and_leave(GetParam(), torch::kFloat32, 1e-4);
}

// The decode step's attention in bf16 keeps its scores in fp32, as SDPA (prefill, training) does:
// on the same bf16 q/k/v with large scores (|s| ~ 15-50, trained LLMs have such heads), its output
// is as close to the fp64 attention as SDPA's, while rounding QK^T to bf16 first (what the decode
// did before) is several times further off (computed here too, to show the test can tell).
TEST(DecodeAttention, Bf16ScoresStayFp32AsInSdpa) {
  torch::manual_seed(4);
  const int64_t kvh = 2, rep = 2, heads = kvh * rep, d = 128;
  const std::vector<int64_t> lengths = {40, 33}, counts = {2, 1};
  auto bf16 = [](const torch::Tensor& t) { return t.to(torch::kBFloat16); };
  std::vector<PrefixGroup> groups;
  for (size_t g = 0; g < lengths.size(); ++g) {
    auto cache = std::make_shared<PrefixCache>();
    cache->layers.push_back(
        {bf16(torch::randn({1, kvh, lengths[g], d}) * 4), bf16(torch::randn({1, kvh, lengths[g], d}))});
    cache->length = lengths[g];
    groups.push_back({cache, counts[g]});
  }
  DecodeBatch batch(groups, 4);
  const int64_t b = batch.size();
  ASSERT_EQ(batch.score_dtype(), torch::kFloat32);
  auto q = bf16(torch::randn({b, heads, d}) * 4), k = bf16(torch::randn({b, kvh, d}) * 4),
       v = bf16(torch::randn({b, kvh, d}));
  batch.begin_step();
  auto out = batch.attend(0, q.to(torch::kFloat32), k.to(torch::kFloat32), v).view({b, heads, d});
  ASSERT_EQ(out.scalar_type(), torch::kBFloat16);

  double err_decode = 0, err_sdpa = 0, err_rounded = 0, max_score = 0;
  const double scale = 1.0 / std::sqrt(double(d));
  int64_t row = 0;
  for (size_t g = 0; g < groups.size(); ++g)
    for (int64_t n = 0; n < counts[g]; ++n, ++row) {
      // This row's keys: its group's prompt, then its own new token; GQA: head h reads kv head h / rep.
      const auto& kv = groups[g].prefix->layers[0];
      auto keys = torch::cat({kv.k[0], k[row].unsqueeze(1)}, 1).repeat_interleave(rep, 0);    // [heads, L+1, d]
      auto values = torch::cat({kv.v[0], v[row].unsqueeze(1)}, 1).repeat_interleave(rep, 0);
      auto qr = q[row].unsqueeze(1);                                                           // [heads, 1, d]
      auto s64 = torch::matmul(qr.to(torch::kFloat64), keys.to(torch::kFloat64).transpose(1, 2)) * scale;
      auto ref = torch::matmul(s64.softmax(-1), values.to(torch::kFloat64));
      max_score = std::max(max_score, s64.abs().max().item<double>());
      auto sdpa = at::scaled_dot_product_attention(qr.unsqueeze(0), keys.unsqueeze(0), values.unsqueeze(0))[0];
      auto rounded = torch::matmul(
          (torch::matmul(qr, keys.transpose(1, 2)).to(torch::kFloat32) * scale).softmax(-1).to(torch::kBFloat16),
          values);
      err_decode = std::max(err_decode, (out[row].unsqueeze(1).to(torch::kFloat64) - ref).abs().max().item<double>());
      err_sdpa = std::max(err_sdpa, (sdpa.to(torch::kFloat64) - ref).abs().max().item<double>());
      err_rounded = std::max(err_rounded, (rounded.to(torch::kFloat64) - ref).abs().max().item<double>());
    }
  std::printf("max |score| %.1f; max error vs fp64: decode %.4f, SDPA %.4f, bf16-rounded scores %.4f\n", max_score,
              err_decode, err_sdpa, err_rounded);
  EXPECT_GT(max_score, 30.0);
  EXPECT_LE(err_decode, 2.0 * err_sdpa + 0.005);  // bf16 output rounding: ulp 2^-6 at |out| ~ 2-4
  EXPECT_GT(err_rounded, 3.0 * err_decode);  // the test would catch rounded scores
}
