// evoq's own CPU kernels (model/cpu_kernels.h) against torch's ops, the oracle they replace: RMSNorm as
// at::rms_norm and the attention's softmax as torch's cat, softmax and cast (within one bf16 rounding, rarely
// off by it), the top values as torch's stable descending sort; the exp of cpu_simd.h against double-precision exp.
// The AVX-512 and scalar paths give the same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "../../../src/model/cpu_simd.h"
#include "evoq/model/cpu_kernels.h"

using namespace evoq::model;

namespace {
const auto kBf16 = torch::kBFloat16;

// got and want (bf16) differ by at most one bf16 ulp of want, and in at most `fraction` of the elements.
void expect_within_one_rounding(const torch::Tensor& got, const torch::Tensor& want, double fraction) {
  ASSERT_EQ(got.sizes(), want.sizes());
  ASSERT_EQ(got.scalar_type(), want.scalar_type());
  auto g = got.to(torch::kFloat64), w = want.to(torch::kFloat64);
  auto differ = (g != w).logical_and(torch::isnan(g).logical_and(torch::isnan(w)).logical_not());
  const double off = differ.to(torch::kFloat64).mean().item().toDouble();
  EXPECT_LE(off, fraction) << "fraction of elements that differ";
  auto finite = torch::isfinite(w);
  auto err = torch::where(finite, (g - w).abs(), torch::zeros_like(g));
  auto ulp = torch::where(finite, w.abs() * std::ldexp(1.0, -7), torch::zeros_like(w)) + 1e-38;
  EXPECT_LE((err / ulp).max().item<double>(), 1.0 + 1e-9) << "more than one bf16 ulp off";
  EXPECT_TRUE(torch::equal(torch::isnan(g), torch::isnan(w))) << "NaN where torch has none, or none where it has";
}

// Runs f with the AVX-512 path and the scalar path; both results must be bit-identical.
template <typename F>
auto both_paths_equal(F f) {
  set_cpu_kernels_simd(true);
  auto fast = f();
  set_cpu_kernels_simd(false);
  auto plain = f();
  set_cpu_kernels_simd(true);
  return std::make_pair(fast, plain);
}

#if defined(EVOQ_CPU_AVX512)
EVOQ_AVX512_FN void exp16(const float* in, float* out) { _mm512_storeu_ps(out, cpu::exp_avx512(_mm512_loadu_ps(in))); }
#endif
}  // namespace

TEST(CpuKernels, RmsNormMatchesAtRmsNorm) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  for (int64_t d : {896, 100, 7}) {  // whole 16-lane blocks, a tail, only a tail
    auto x = (torch::randn({37, 3, d}) * 3).to(kBf16);
    auto w = (torch::rand({d}) + 0.5).to(kBf16);
    auto want = at::rms_norm(x, {d}, w, 1e-6);
    auto [fast, plain] = both_paths_equal([&] { return cpu_rms_norm(x, w, 1e-6).value(); });
    expect_within_one_rounding(fast, want, 0.01);
    EXPECT_TRUE(torch::equal(fast, plain)) << "d " << d;
  }
  // A non-contiguous input normalises the same values.
  auto x = torch::randn({64, 32}).to(kBf16).t();
  auto w = torch::rand({64}).to(kBf16);
  expect_within_one_rounding(cpu_rms_norm(x, w, 1e-6).value(), at::rms_norm(x, {64}, w, 1e-6), 0.01);
}

TEST(CpuKernels, RmsNormDeclinesWhatItDoesNotCompute) {
  auto x = torch::randn({4, 16}), w = torch::rand({16});
  EXPECT_FALSE(cpu_rms_norm(x, w, 1e-6).has_value());            // fp32
  EXPECT_FALSE(cpu_rms_norm(x.to(kBf16), w, 1e-6).has_value());  // mixed dtypes (autocast)
  auto wg = w.to(kBf16).requires_grad_();
  EXPECT_FALSE(cpu_rms_norm(x.to(kBf16), wg, 1e-6).has_value());  // a gradient to record
  set_cpu_kernels(false);
  EXPECT_FALSE(cpu_rms_norm(x.to(kBf16), w.to(kBf16), 1e-6).has_value());  // turned off
  set_cpu_kernels(true);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(cpu_rms_norm(x.to(kBf16), wg, 1e-6).has_value());
}

TEST(CpuKernels, ExpWithinTwoUlpOfDoubleExp) {
  float worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.0f + 175.0f * float(i) / 200000.0f;  // exp(x) a normal float
    const double exact = std::exp(double(x));
    worst = std::max(worst, float(std::abs(cpu::exp_scalar(x) - exact) / exact));
  }
  EXPECT_LT(worst, 2.4e-7);  // two float ulps (2^-23 each)
  EXPECT_EQ(cpu::exp_scalar(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(cpu::exp_scalar(-200.0f), 0.0f);
  EXPECT_EQ(cpu::exp_scalar(0.0f), 1.0f);
  EXPECT_TRUE(std::isinf(cpu::exp_scalar(100.0f)));
#if defined(EVOQ_CPU_AVX512)
  if (!cpu::use_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  alignas(64) float in[16], out[16];
  for (int i = 0; i < 4096; ++i) {
    for (int j = 0; j < 16; ++j) in[j] = -120.0f + 0.0037f * float(i * 16 + j);
    exp16(in, out);
    for (int j = 0; j < 16; ++j) ASSERT_EQ(out[j], cpu::exp_scalar(in[j])) << in[j];
  }
#endif
}

TEST(CpuKernels, TopValuesAreTheStableDescendingSortsHead) {
  torch::manual_seed(3);
  const float inf = std::numeric_limits<float>::infinity();
  auto fp32 = torch::randn({7, 5003});
  auto coarse = (torch::randn({9, 20000}) * 6).round().to(kBf16);  // many ties
  coarse[2].fill_(-inf);
  coarse[2][17] = 1.0f;
  coarse[2][4000] = 2.0f;  // two finite values, then -inf ties in column order
  for (const auto& x : {fp32, coarse}) {
    for (int64_t n : {51, 1, 300}) {
      auto [want_values, want_columns] = x.to(torch::kFloat32).sort(/*stable=*/true, -1, /*descending=*/true);
      auto [fast, plain] = both_paths_equal([&] { return cpu_top_values(x, n).value(); });
      EXPECT_TRUE(torch::equal(fast.first, want_values.narrow(-1, 0, n))) << "n " << n;
      EXPECT_TRUE(torch::equal(fast.second, want_columns.narrow(-1, 0, n))) << "n " << n;
      EXPECT_TRUE(torch::equal(fast.first, plain.first) && torch::equal(fast.second, plain.second));
    }
  }
  auto nan = torch::randn({3, 4000});
  nan[1][2500] = std::nanf("");
  EXPECT_FALSE(cpu_top_values(nan, 10).has_value());     // torch.topk ranks NaN first: left to it
  EXPECT_FALSE(cpu_top_values(fp32, 1025).has_value());  // not small against the row
  EXPECT_FALSE(cpu_top_values(torch::randn({2, 100}), 20).has_value());
}

TEST(CpuKernels, SoftmaxOfTwoBlocksMatchesCatSoftmaxCast) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(4);
  const float inf = std::numeric_limits<float>::infinity();
  for (auto [na, nb] : {std::pair<int64_t, int64_t>{630, 40}, {17, 3}, {0, 5}, {64, 0}}) {
    auto a = torch::randn({6, 7, na}) * 4, b = torch::randn({6, 7, nb}) * 4;
    if (na > 20) a.narrow(-1, na - 20, 20).fill_(-inf);  // padding of a shorter prompt
    if (nb > 2) b.narrow(-1, 0, 2).fill_(-inf);          // columns before a sequence joined
    auto want = torch::cat({a, b}, -1).softmax(-1).to(kBf16);
    auto [fast, plain] = both_paths_equal([&] { return cpu_softmax_bf16(a, b).value(); });
    expect_within_one_rounding(fast, want, 0.01);
    EXPECT_TRUE(torch::equal(fast, plain)) << na << " + " << nb;
  }
  EXPECT_FALSE(cpu_softmax_bf16(torch::randn({2, 3}), torch::randn({3, 3})).has_value());  // rows differ
  EXPECT_FALSE(cpu_softmax_bf16(torch::randn({2, 3}).to(kBf16), torch::randn({2, 3})).has_value());
}
