// Logits processors and the sampler on hand-derived cases (the transformers comparison on random
// logits is tests/python/test_gen_sampler.py).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "evoq/core/error.h"
#include "evoq/gen/sampler.h"

using namespace evoq::gen;

namespace {
const float kInf = std::numeric_limits<float>::infinity();
torch::Tensor row(std::vector<float> v) { return torch::tensor(v).unsqueeze(0); }
std::vector<float> vec(const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kFloat32).flatten();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
}  // namespace

TEST(Sampler, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  auto present = torch::tensor({true, true, false}).unsqueeze(0);
  EXPECT_EQ(vec(apply_repetition_penalty(row({2, -2, 1}), present, 2.0)), (std::vector<float>{1, -4, 1}));
}

TEST(Sampler, TemperatureDivides) { EXPECT_EQ(vec(apply_temperature(row({2, 4}), 2.0)), (std::vector<float>{1, 2})); }

TEST(Sampler, TopKKeepsTies) {
  EXPECT_EQ(vec(apply_top_k(row({1, 3, 3, 2}), 2)), (std::vector<float>{-kInf, 3, 3, -kInf}));
  EXPECT_EQ(vec(apply_top_k(row({1, 3}), 5)), (std::vector<float>{1, 3}));  // k larger than vocab
}

TEST(Sampler, TopPRemovesTheTail) {
  auto logits = row({std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)});
  // ascending cumsum 0.05, 0.2, 0.5, 1.0; with top_p 0.75 remove <= 0.25
  auto kept = vec(apply_top_p(logits, 0.75));
  EXPECT_TRUE(std::isfinite(kept[0]) && std::isfinite(kept[1]));
  EXPECT_EQ(kept[2], -kInf);
  EXPECT_EQ(kept[3], -kInf);
  // a tiny top_p still keeps the most likely token
  auto one = vec(apply_top_p(logits, 0.001));
  EXPECT_TRUE(std::isfinite(one[0]));
  EXPECT_EQ(one[1], -kInf);
  EXPECT_EQ(one[2], -kInf);
  EXPECT_EQ(one[3], -kInf);
}

TEST(Sampler, GreedyAppliesOnlyThePenalty) {
  SamplingParams p;
  p.do_sample = false;
  p.temperature = 0.5;
  p.top_k = 1;
  p.repetition_penalty = 4.0;
  auto present = torch::tensor({true, false}).unsqueeze(0);
  auto processed = process_logits(row({4, 2}), present, p);
  EXPECT_EQ(vec(processed), (std::vector<float>{1, 2}));
  auto c = choose_tokens(row({4, 2}), processed, p, {}, true);
  EXPECT_EQ(c.tokens.item<int64_t>(), 1);
  // softmax([1, 2])[1] = 1 / (1 + e^-1); raw softmax([4, 2])[1] = 1 / (1 + e^2)
  EXPECT_NEAR(c.sample_logprobs.item<float>(), -std::log1p(std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(c.model_logprobs.item<float>(), -std::log1p(std::exp(2.0)), 1e-6);
}

TEST(Sampler, InverseCdfDraw) {
  std::vector<float> probs = {0.1f, 0.0f, 0.6f, 0.3f};
  EXPECT_EQ(sample_index(probs.data(), 4, 0.0), 0);
  EXPECT_EQ(sample_index(probs.data(), 4, 0.05), 0);
  EXPECT_EQ(sample_index(probs.data(), 4, 0.2), 2);
  EXPECT_EQ(sample_index(probs.data(), 4, 0.69), 2);
  EXPECT_EQ(sample_index(probs.data(), 4, 0.75), 3);
  EXPECT_EQ(sample_index(probs.data(), 4, 0.9999999), 3);
  std::vector<float> gap = {0.5f, 0.0f, 0.5f};
  EXPECT_EQ(sample_index(gap.data(), 3, 0.5), 2);  // never the zero-probability token
  std::vector<float> none = {0.0f, 0.0f};
  EXPECT_THROW(sample_index(none.data(), 2, 0.5), evoq::Error);
}

TEST(Sampler, SampledLogprobIsUnderProcessedDistribution) {
  SamplingParams p;
  p.do_sample = true;
  p.temperature = 1.0;
  p.top_k = 2;
  p.top_p = 1.0;
  auto raw = row({0.0f, std::log(3.0f), -5.0f});
  auto present = torch::zeros({1, 3}, torch::kBool);
  auto processed = process_logits(raw, present, p);  // keeps tokens 0 and 1: probs 0.25, 0.75
  auto c = choose_tokens(raw, processed, p, {0.3}, true);
  EXPECT_EQ(c.tokens.item<int64_t>(), 1);
  EXPECT_NEAR(c.sample_logprobs.item<float>(), std::log(0.75), 1e-6);
  double z = 1 + 3 + std::exp(-5.0);
  EXPECT_NEAR(c.model_logprobs.item<float>(), std::log(3 / z), 1e-6);
  auto first = choose_tokens(raw, processed, p, {0.2}, false);
  EXPECT_EQ(first.tokens.item<int64_t>(), 0);
  EXPECT_FALSE(first.model_logprobs.defined());
}

TEST(Sampler, ReadsQwenGenerationConfig) {
  auto p = read_generation_config(std::filesystem::path(EVOQ_TEST_DATA) / "qwen2-vl-2b/generation_config.json");
  EXPECT_TRUE(p.do_sample);
  EXPECT_DOUBLE_EQ(p.temperature, 0.1);
  EXPECT_DOUBLE_EQ(p.top_p, 0.001);
  EXPECT_EQ(p.top_k, 1);
  EXPECT_DOUBLE_EQ(p.repetition_penalty, 1.05);
  EXPECT_EQ(p.eos_token_ids, (std::vector<int64_t>{151645, 151643}));
}

TEST(Sampler, GenerationConfigDefaultsAndErrors) {
  auto dir = std::filesystem::temp_directory_path() / "evoq_gen_cfg_test";
  std::filesystem::create_directories(dir);
  auto file = dir / "generation_config.json";
  std::ofstream(file) << R"({"eos_token_id": 7})";
  auto p = read_generation_config(file);
  EXPECT_FALSE(p.do_sample);
  EXPECT_DOUBLE_EQ(p.temperature, 1.0);
  EXPECT_EQ(p.top_k, 50);
  EXPECT_DOUBLE_EQ(p.top_p, 1.0);
  EXPECT_DOUBLE_EQ(p.repetition_penalty, 1.0);
  EXPECT_EQ(p.eos_token_ids, (std::vector<int64_t>{7}));
  std::ofstream(file) << R"({"top_p": 1.5})";
  EXPECT_THROW(read_generation_config(file), evoq::Error);
  std::ofstream(file) << R"({"temperature": "hot"})";
  EXPECT_THROW(read_generation_config(file), evoq::Error);
  std::ofstream(file) << "{not json";
  EXPECT_THROW(read_generation_config(file), evoq::Error);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(model_sampling_defaults(dir).top_k, 50);  // no file: transformers' defaults
}

TEST(Sampler, DeviceInverseCdfAgreesWithRowDraw) {
  torch::manual_seed(3);
  auto logits = torch::randn({16, 50}) * 3;
  logits.index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, 10)}, -kInf);  // zero-probability block
  auto probs = logits.softmax(-1).contiguous();
  std::vector<double> us;
  for (int r = 0; r < 16; ++r) us.push_back((r + 0.5) / 16.0);
  us[15] = 0.9999999999;
  auto got = inverse_cdf(probs, torch::tensor(us, torch::kFloat64));
  for (int r = 0; r < 16; ++r) {
    int64_t want = sample_index(probs[r].data_ptr<float>(), 50, us[size_t(r)]);
    EXPECT_EQ(got[r].item<int64_t>(), want) << "row " << r;
    EXPECT_GE(want, 10);
  }
}

TEST(Sampler, TopPAfterTopKMatchesFullSort) {
  torch::manual_seed(4);
  auto logits = torch::randn({8, 400}) * 2;
  SamplingParams p;
  p.do_sample = true;
  p.temperature = 0.8;
  for (int64_t k : {1, 5, 40}) {
    for (double top_p : {0.001, 0.5, 0.9}) {
      p.top_k = k;
      p.top_p = top_p;
      auto fast = process_logits(logits, torch::Tensor(), p);
      auto slow = apply_top_p(apply_top_k(apply_temperature(logits, 0.8), k), top_p);
      EXPECT_TRUE(torch::equal(torch::isinf(fast), torch::isinf(slow))) << k << " " << top_p;
      auto finite = torch::isfinite(slow);
      EXPECT_TRUE(torch::equal(fast.masked_select(finite), slow.masked_select(finite)));
    }
  }
}
