// Packed bf16 weights for CPU inference (model/packed_linear.h): the products equal an fp64 oracle within
// one bf16 rounding and torch's own linear exactly on 2-D inputs (same oneDNN kernels); a changed weight is
// packed again; dead weights' copies are dropped; nothing is packed where a gradient or another dtype is
// involved; a tiny bf16 model packs all its linear weights at load, and its logits are as close to the
// same model's in fp64 as without packing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "evoq/model/layers.h"
#include "evoq/model/packed_linear.h"
#include "evoq/model/qwen_vl.h"
#include "tiny_model_config.h"

using namespace evoq::model;

namespace {
const auto kBf16 = torch::kBFloat16;

// Packing turns itself off on a CPU where oneDNN's bf16 ops throw; the tests then have nothing to check.
bool packing_available() {
  set_packed_weights(true);
  torch::NoGradGuard g;
  auto w = torch::randn({8, 16}).to(kBf16);
  return packed_linear(torch::randn({4, 16}).to(kBf16), w).has_value() && packed_weights_enabled();
}

// |got - exact| <= one bf16 ulp of |exact| (fp32 accumulation error is far below it), elementwise.
void expect_within_one_rounding(const torch::Tensor& got, const torch::Tensor& exact) {
  auto e = exact.to(torch::kFloat64), g = got.to(torch::kFloat64);
  auto ulp = torch::exp2(torch::floor(torch::log2(e.abs().clamp_min(1e-30))) - 7);
  auto excess = ((g - e).abs() - ulp).max().item<double>();
  EXPECT_LE(excess, 0.0) << "max error beyond one bf16 ulp: " << excess;
}
}  // namespace

TEST(PackedLinear, EqualsAnFp64OracleAndTorchsLinear) {
  if (!packing_available()) GTEST_SKIP() << "oneDNN bf16 products unavailable on this CPU";
  torch::manual_seed(11);
  torch::NoGradGuard g;
  auto x = torch::randn({3, 5, 64}).to(kBf16), w = torch::randn({96, 64}).to(kBf16), b = torch::randn({96}).to(kBf16);
  const int64_t packs = packed_weight_packs();
  auto y = evoq::model::linear(x, w, b);
  EXPECT_EQ(packed_weight_packs(), packs + 1);  // it did go through a packed copy
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 5, 96}));
  ASSERT_EQ(y.scalar_type(), kBf16);
  expect_within_one_rounding(y, torch::matmul(x.to(torch::kFloat64), w.to(torch::kFloat64).t()) + b.to(torch::kFloat64));
  // 2-D input: torch's linear is one oneDNN product with the bias too, and the values are identical (a 3-D
  // input goes through matmul + add there: two roundings, where the packed product has one).
  auto x2 = x.reshape({15, 64});
  EXPECT_TRUE(torch::equal(evoq::model::linear(x2, w, b), torch::nn::functional::linear(x2, w, b)));

  // With the residual: one rounding of residual + x W^T.
  auto r = torch::randn({3, 5, 96}).to(kBf16);
  auto z = evoq::model::linear_add(x, w, r);
  EXPECT_EQ(packed_weight_packs(), packs + 1);  // the same weight, still packed
  expect_within_one_rounding(z, torch::matmul(x.to(torch::kFloat64), w.to(torch::kFloat64).t()) + r.to(torch::kFloat64));
}

TEST(PackedLinear, AChangedWeightIsPackedAgain) {
  if (!packing_available()) GTEST_SKIP() << "oneDNN bf16 products unavailable on this CPU";
  torch::manual_seed(12);
  torch::NoGradGuard g;
  auto x = torch::randn({6, 32}).to(kBf16), w = torch::randn({40, 32}).to(kBf16);
  const int64_t packs = packed_weight_packs();
  auto before = evoq::model::linear(x, w);
  w.detach().view({-1}).add_(1.0);  // an optimizer's in-place step through a view: the version counter moves
  auto after = evoq::model::linear(x, w);
  EXPECT_EQ(packed_weight_packs(), packs + 2);
  EXPECT_FALSE(torch::equal(before, after));
  EXPECT_TRUE(torch::equal(after, torch::nn::functional::linear(x, w)));
  w.copy_(torch::randn({40, 32}));
  EXPECT_TRUE(torch::equal(evoq::model::linear(x, w), torch::nn::functional::linear(x, w)));
  EXPECT_EQ(packed_weight_packs(), packs + 3);
}

TEST(PackedLinear, CopiesOfDeadWeightsAreDropped) {
  if (!packing_available()) GTEST_SKIP() << "oneDNN bf16 products unavailable on this CPU";
  torch::NoGradGuard g;
  auto x = torch::randn({4, 16}).to(kBf16);
  auto keep = torch::randn({8, 16}).to(kBf16);
  evoq::model::linear(x, keep);
  const int64_t held = packed_weight_count();
  for (int i = 0; i < 20; ++i) evoq::model::linear(x, torch::randn({8, 16}).to(kBf16));  // each weight dies at once
  EXPECT_LE(packed_weight_count(), held + 1);
}

TEST(PackedLinear, NotWhereGradientsOrOtherDtypesAreInvolved) {
  if (!packing_available()) GTEST_SKIP() << "oneDNN bf16 products unavailable on this CPU";
  auto w = torch::randn({8, 16}).to(kBf16).requires_grad_(true);
  auto x = torch::randn({4, 16}).to(kBf16);
  const int64_t packs = packed_weight_packs();
  auto y = evoq::model::linear(x, w);  // grad mode on: autograd must see the product
  EXPECT_TRUE(y.requires_grad());
  y.sum().backward();
  EXPECT_TRUE(w.grad().defined());
  torch::NoGradGuard g;
  evoq::model::linear(torch::randn({4, 16}), torch::randn({8, 16}));  // fp32
  evoq::model::linear(torch::randn({1, 16}).to(kBf16), w.detach());   // one row: torch's linear is as fast
  EXPECT_EQ(packed_weight_packs(), packs);
  set_packed_weights(false);
  evoq::model::linear(x, w.detach());
  EXPECT_EQ(packed_weight_packs(), packs);
  EXPECT_EQ(packed_weight_count(), 0);
  set_packed_weights(true);
}

TEST(PackedLinear, ATinyBf16ModelPacksAtLoadAndItsLogitsStayAsCloseToFp64) {
  if (!packing_available()) GTEST_SKIP() << "oneDNN bf16 products unavailable on this CPU";
  torch::manual_seed(13);
  auto c = evoq::testing::tiny_model_config("qwen2_5_vl", /*tied=*/false);
  QwenVL model(c, torch::TensorOptions().dtype(kBf16));
  {
    torch::NoGradGuard g;
    for (auto& p : model.parameters()) p.normal_(0, 0.2);
  }
  Inputs in;
  in.input_ids = torch::tensor(std::vector<int64_t>{1, 2, 95, 95, 95, 95, 3, 4, 5}).view({1, -1});
  in.image_grid_thw = torch::tensor(std::vector<int64_t>{1, 4, 4}).view({1, 3});
  in.pixel_values = torch::randn({16, c.vision.patch_dim()}).to(kBf16);
  torch::NoGradGuard g;
  // Oracle: the same weights in fp64.
  QwenVL exact(c, torch::TensorOptions().dtype(torch::kFloat64));
  {
    auto src = model.named_parameters(true);
    for (auto& p : exact.named_parameters(true)) p.value().copy_(src[p.key()]);
  }
  Inputs in64 = in;
  in64.pixel_values = in.pixel_values.to(torch::kFloat64);
  auto reference = exact.forward(in64, LogitsOf::All);
  set_packed_weights(false);
  auto plain = model.forward(in, LogitsOf::All);
  set_packed_weights(true);
  // Vision: per block qkv, proj, gate/up/down (5) x depth 2, merger 2; text per layer: fused qkv, o, fused
  // gate/up, down (4) x 2 layers; the lm_head (not tied): 10 + 2 + 8 + 1.
  EXPECT_EQ(model.pack_linear_weights(), 21);
  const int64_t packs = packed_weight_packs();
  auto packed = model.forward(in, LogitsOf::All);
  EXPECT_EQ(packed_weight_packs(), packs);  // all found packed
  const double err_plain = (plain.to(torch::kFloat64) - reference).abs().max().item<double>(),
               err_packed = (packed.to(torch::kFloat64) - reference).abs().max().item<double>();
  std::printf("max |logit error| vs fp64: torch's linear %.4f, packed %.4f\n", err_plain, err_packed);
  EXPECT_GT(err_packed, 0.0);  // bf16 did run
  EXPECT_LE(err_packed, 1.5 * err_plain);
}

TEST(PackedLinear, AModelsCopiesGoWithIt) {
  if (!packing_available()) GTEST_SKIP() << "oneDNN bf16 products unavailable on this CPU";
  const int64_t before = packed_weight_count();
  {
    QwenVL model(evoq::testing::tiny_model_config("qwen2_vl", /*tied=*/true), torch::TensorOptions().dtype(kBf16));
    EXPECT_EQ(model.pack_linear_weights(), static_cast<int64_t>(model.linear_weights().size()));
    EXPECT_EQ(packed_weight_count(), before + static_cast<int64_t>(model.linear_weights().size()));
  }
  EXPECT_EQ(packed_weight_count(), before);
}
