// The engine's fast token choice (sample_step) against the reference chain process_logits +
// choose_tokens and the scalar inverse-CDF draw sample_index (hand-checked in test_sampler.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "evoq/core/error.h"
#include "evoq/gen/sample_step.h"
#include "evoq/model/cpu_kernels.h"

using namespace evoq::gen;

namespace {
const float kInf = std::numeric_limits<float>::infinity();

std::vector<double> spread_uniforms(int64_t n) {
  std::vector<double> u;
  for (int64_t i = 0; i < n; ++i) u.push_back((double(i) + 0.37) / double(n));
  // Not closer to the ends than 1e-4: where the uniform lands is exact only to float rounding
  // (~1e-7 of the mass, see sample_step.h), which decides among the rarest tokens at the very end.
  u.front() = 0.0;
  u.back() = 0.9999;
  return u;
}
}  // namespace

TEST(SampleStep, FullVocabularyDrawMatchesRowDraw) {
  torch::manual_seed(11);
  const int64_t rows = 48, vocab = 5000;  // 9 whole blocks of 512 and a tail of 392
  auto logits = torch::randn({rows, vocab}) * 3;
  // zero-probability stretches across a block boundary and at the end of the vocabulary
  logits.index_put_({torch::indexing::Slice(0, rows, 2), torch::indexing::Slice(400, 1700)}, -kInf);
  logits.index_put_({torch::indexing::Slice(1, rows, 3), torch::indexing::Slice(4000, vocab)}, -kInf);
  auto u = spread_uniforms(rows);
  auto [tokens, logprobs] = draw_full_vocabulary(logits, torch::tensor(u, torch::kFloat64));
  auto probs = logits.softmax(-1).contiguous();
  auto ref_logp = logits.log_softmax(-1);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t want = sample_index(probs[r].data_ptr<float>(), vocab, u[size_t(r)]);
    EXPECT_EQ(tokens[r].item<int64_t>(), want) << "row " << r;
    EXPECT_GT(probs[r][want].item<float>(), 0.0f);
    EXPECT_NEAR(logprobs[r].item<float>(), ref_logp[r][want].item<float>(), 1e-5) << "row " << r;
  }
}

TEST(SampleStep, FullVocabularyNeverPicksZeroProbabilityAndRejectsEmptyRows) {
  // Only token 3 (of 2000) is possible: every uniform, including the extremes, must land on it.
  auto logits = torch::full({1, 2000}, -kInf);
  logits[0][3] = 0.5f;
  for (double u : {0.0, 0.5, 0.9999999999999999}) {
    auto [tokens, logprobs] = draw_full_vocabulary(logits, torch::tensor({u}, torch::kFloat64));
    EXPECT_EQ(tokens[0].item<int64_t>(), 3);
    EXPECT_NEAR(logprobs[0].item<float>(), 0.0f, 1e-7);
  }
  auto none = torch::full({2, 700}, -kInf);
  EXPECT_THROW(draw_full_vocabulary(none, torch::tensor({0.5, 0.5}, torch::kFloat64)), evoq::Error);
  auto nan = torch::zeros({1, 700});
  nan[0][5] = std::nanf("");
  EXPECT_THROW(draw_full_vocabulary(nan, torch::tensor({0.5}, torch::kFloat64)), evoq::Error);
}

TEST(SampleStep, MatchesReferenceChainForEverySetting) {
  torch::manual_seed(12);
  const int64_t rows = 24, vocab = 3000;
  auto logits = torch::randn({rows, vocab}) * 2.5;
  auto present = torch::rand({rows, vocab}) < 0.05;
  auto u = spread_uniforms(rows);
  struct Case {
    bool sample;
    double temperature;
    int64_t top_k;
    double top_p;
    double penalty;
  };
  const Case cases[] = {{false, 1.0, 50, 1.0, 1.0},  {false, 0.7, 5, 0.9, 1.3},   {true, 1.0, 0, 1.0, 1.0},
                        {true, 0.7, 50, 0.9, 1.2},   {true, 1.5, 0, 0.5, 0.8},    {true, 2.0, 7, 1.0, 1.0},
                        {true, 0.1, 1, 0.001, 1.05}, {true, 1.0, 2999, 1.0, 1.0}, {true, 0.9, 5000, 0.95, 1.0}};
  for (const Case& k : cases) {
    SamplingParams p;
    p.do_sample = k.sample;
    p.temperature = k.temperature;
    p.top_k = k.top_k;
    p.top_p = k.top_p;
    p.repetition_penalty = k.penalty;
    const std::string what = "sample " + std::to_string(k.sample) + " T " + std::to_string(k.temperature) + " k " +
                             std::to_string(k.top_k) + " p " + std::to_string(k.top_p);
    auto processed = process_logits(logits, present, p);
    auto want = choose_tokens(logits, processed, p, k.sample ? u : std::vector<double>{}, true);
    auto got = sample_step(logits, present, p, k.sample ? u : std::vector<double>{}, true);
    EXPECT_TRUE(torch::equal(got.tokens, want.tokens)) << what;
    EXPECT_TRUE(torch::allclose(got.sample_logprobs, want.sample_logprobs, 0, 1e-5)) << what;
    EXPECT_TRUE(torch::allclose(got.model_logprobs, want.model_logprobs, 0, 1e-5)) << what;
  }
}

TEST(SampleStep, TieAtTheKthValueKeepsEveryTiedToken) {
  // transformers keeps every token equal to the k-th largest value: with k = 1 both 3s survive.
  SamplingParams p;
  p.do_sample = true;
  p.top_k = 1;
  p.top_p = 1.0;
  auto logits = torch::tensor({1.0f, 3.0f, 3.0f, 2.0f}).unsqueeze(0);
  EXPECT_EQ(sample_step(logits, {}, p, {0.25}, false).tokens.item<int64_t>(), 1);
  EXPECT_EQ(sample_step(logits, {}, p, {0.75}, false).tokens.item<int64_t>(), 2);
  EXPECT_NEAR(sample_step(logits, {}, p, {0.75}, false).sample_logprobs.item<float>(), std::log(0.5), 1e-6);
  // A tie created by the temperature (values distinct before dividing, equal after) counts too:
  // two neighbouring floats whose quotients by 3 round to the same value.
  float a = 1.75f;
  while (a / 3.0f != std::nextafter(a, 2.0f) / 3.0f) a = std::nextafter(a, 2.0f);
  const float b = std::nextafter(a, 2.0f);
  p.temperature = 3.0;
  auto close = torch::tensor({b, -4.0f, a}).unsqueeze(0);
  EXPECT_EQ(sample_step(close, {}, p, {0.1}, false).tokens.item<int64_t>(), 0);
  EXPECT_EQ(sample_step(close, {}, p, {0.9}, false).tokens.item<int64_t>(), 2);
}

TEST(SampleStep, ModelLogprobsOnlyWhenAsked) {
  SamplingParams p;
  p.do_sample = true;
  p.top_k = 0;
  p.temperature = 2.0;
  auto logits = torch::tensor({0.0f, 1.0f, 2.0f}).unsqueeze(0);
  auto without = sample_step(logits, {}, p, {0.5}, false);
  EXPECT_FALSE(without.model_logprobs.defined());
  auto with = sample_step(logits, {}, p, {0.5}, true);
  const int64_t t = with.tokens.item<int64_t>();
  EXPECT_NEAR(with.model_logprobs.item<float>(), logits.log_softmax(-1)[0][t].item<float>(), 1e-6);
  EXPECT_NEAR(with.sample_logprobs.item<float>(), (logits / 2).log_softmax(-1)[0][t].item<float>(), 1e-6);
}

TEST(SampleStep, Bf16LogitsWithManyTiesMatchReferenceChain) {
  // bf16 logits of a large vocabulary (the CPU top-k reads them as they are) on a coarse grid, so the
  // k-th value is tied with many others in most rows: every tied token must stay in the draw.
  torch::manual_seed(13);
  const int64_t rows = 16, vocab = 20000;
  auto logits = (torch::randn({rows, vocab}) * 8).round().div(4).to(torch::kBFloat16);
  auto u = spread_uniforms(rows);
  auto present = torch::zeros({rows, vocab}, torch::kBool);
  for (double temperature : {1.0, 0.7}) {
    for (int64_t top_k : {50, 3}) {
      SamplingParams p;
      p.do_sample = true;
      p.temperature = temperature;
      p.top_k = top_k;
      const std::string what = "T " + std::to_string(temperature) + " k " + std::to_string(top_k);
      auto processed = process_logits(logits.to(torch::kFloat32), present, p);
      const auto kept = torch::isfinite(processed).sum(-1);
      EXPECT_GT(kept.max().item<int64_t>(), top_k) << what << ": the grid should tie at the k-th value";
      auto want = choose_tokens(logits, processed, p, u, false);
      auto got = sample_step(logits, present, p, u, false);
      EXPECT_TRUE(torch::equal(got.tokens, want.tokens)) << what;
      EXPECT_TRUE(torch::allclose(got.sample_logprobs, want.sample_logprobs, 0, 1e-5)) << what;
    }
  }
}

TEST(SampleStep, FullVocabularyDrawOnTheCpuKernelAgreesWithTorchsOps) {
  // The CPU kernel (model::cpu_softmax_draw, its AVX-512 and scalar paths) and the torch ops it replaces
  // draw the same tokens with the same log-probs, and bf16 logits draw as their float32 copy.
  torch::manual_seed(14);
  const int64_t rows = 40, vocab = 151936;  // the Qwen vocabulary: 296 whole blocks and a tail
  auto logits = (torch::randn({rows, vocab}) * 3).to(torch::kBFloat16);
  logits.index_put_({torch::indexing::Slice(0, rows, 4), torch::indexing::Slice(0, 70000)}, -kInf);
  auto u = torch::tensor(spread_uniforms(rows), torch::kFloat64);
  auto [tokens, logprobs] = draw_full_vocabulary(logits, u);
  auto [from_float, from_float_lp] = draw_full_vocabulary(logits.to(torch::kFloat32), u);
  EXPECT_TRUE(torch::equal(tokens, from_float));
  EXPECT_TRUE(torch::equal(logprobs, from_float_lp));
  evoq::model::set_cpu_kernels_simd(false);
  auto [scalar, scalar_lp] = draw_full_vocabulary(logits, u);
  evoq::model::set_cpu_kernels_simd(true);
  EXPECT_TRUE(torch::equal(tokens, scalar));
  EXPECT_TRUE(torch::equal(logprobs, scalar_lp));
  evoq::model::set_cpu_kernels(false);
  auto [torch_tokens, torch_lp] = draw_full_vocabulary(logits, u);
  evoq::model::set_cpu_kernels(true);
  EXPECT_TRUE(torch::equal(tokens, torch_tokens));
  EXPECT_TRUE(torch::allclose(logprobs, torch_lp, 0, 1e-5));
  for (int64_t r = 0; r < rows; r += 4)
    EXPECT_GE(tokens[r].item<int64_t>(), 70000) << "a zero-probability token, row " << r;
}
