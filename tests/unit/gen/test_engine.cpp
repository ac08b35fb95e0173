// Engine scheduling, shared prefixes and reproducibility on a small recurrent stand-in model whose
// state plays the role of the KV cache (the Qwen2-VL parity tests are tests/python/test_gen_generate.py).
#include <gtest/gtest.h>

#include <map>

#include "evoq/gen/engine.h"

using namespace evoq::gen;

namespace {

// h_t = tanh(W h_{t-1} + E[x_t]), logits_t = U h_t. The state after the prompt is the "prefix cache".
class ToyDecoder : public Decoder {
 public:
  explicit ToyDecoder(int64_t vocab = 23, int64_t hidden = 12) : vocab_(vocab) {
    torch::manual_seed(7);
    w_ = torch::randn({hidden, hidden}) * 0.6;
    e_ = torch::randn({vocab, hidden}) * 1.5;
    u_ = torch::randn({vocab, hidden}) * 2.0;
  }
  int64_t vocab_size() const override { return vocab_; }

  torch::Tensor step(const torch::Tensor& h, const torch::Tensor& tokens) const {
    return torch::tanh(h.matmul(w_.t()) + e_.index_select(0, tokens));
  }
  torch::Tensor logits(const torch::Tensor& h) const { return h.matmul(u_.t()); }

  // Full recomputation of the logits after `ids`, one sequence alone (the test's oracle).
  torch::Tensor logits_after(const std::vector<int32_t>& ids) const {
    auto h = torch::zeros({1, w_.size(0)});
    for (int32_t id : ids) h = step(h, torch::tensor({int64_t(id)}));
    return logits(h)[0];
  }

  Prefilled prefill(const PromptInput& prompt) override {
    ++prefills;
    auto h = torch::zeros({1, w_.size(0)});
    for (int32_t id : prompt.input_ids) h = step(h, torch::tensor({int64_t(id)}));
    int64_t id = next_id_++;
    prefixes_[id] = h[0];
    return {id, logits(h)[0]};
  }
  std::vector<int64_t> fork(int64_t prefix, int n) override {
    std::vector<int64_t> out;
    for (int i = 0; i < n; ++i) {
      int64_t id = next_id_++;
      seqs_[id] = prefixes_.at(prefix);
      out.push_back(id);
    }
    return out;
  }
  torch::Tensor decode(const std::vector<int64_t>& seqs, const std::vector<int64_t>& tokens) override {
    batch_sizes.push_back(int(seqs.size()));
    std::vector<torch::Tensor> hs;
    for (int64_t s : seqs) hs.push_back(seqs_.at(s));
    auto h = step(torch::stack(hs), torch::tensor(tokens));
    for (size_t i = 0; i < seqs.size(); ++i) seqs_[seqs[i]] = h[int64_t(i)];
    return logits(h);
  }
  void release_sequence(int64_t seq) override { EXPECT_EQ(seqs_.erase(seq), 1u); }
  void release_prefix(int64_t prefix) override { EXPECT_EQ(prefixes_.erase(prefix), 1u); }

  size_t live_sequences() const { return seqs_.size(); }
  int prefills = 0;
  std::vector<int> batch_sizes;

 private:
  int64_t vocab_;
  torch::Tensor w_, e_, u_;
  std::map<int64_t, torch::Tensor> prefixes_, seqs_;
  int64_t next_id_ = 0;
};

EngineOptions sampling_options(uint64_t seed) {
  EngineOptions o;
  o.sampling.do_sample = true;
  o.sampling.temperature = 1.3;
  o.sampling.top_k = 0;
  o.sampling.top_p = 0.95;
  o.sampling.repetition_penalty = 1.1;
  o.sampling.max_new_tokens = 12;
  o.stop_ids = {3};
  o.seed = seed;
  o.model_logprobs = true;
  return o;
}

std::vector<GenerationRequest> three_requests() {
  std::vector<GenerationRequest> reqs(3);
  reqs[0] = {101, {{1, 5, 9, 2}}, 4};
  reqs[1] = {202, {{7, 7, 8}}, 3};
  reqs[2] = {303, {{4, 11, 12, 13, 14, 0}}, 5};
  return reqs;
}

}  // namespace

TEST(Engine, SharedPrefixEqualsIndependentSingleSampleRuns) {
  ToyDecoder dec;
  Engine engine(dec, sampling_options(99));
  auto batched = engine.generate(three_requests());
  EXPECT_EQ(dec.prefills, 3);  // one prefill per prompt
  EXPECT_EQ(dec.live_sequences(), 0u);

  for (const auto& req : three_requests()) {
    for (int k = 0; k < req.samples; ++k) {
      ToyDecoder alone_dec;
      Engine alone(alone_dec, sampling_options(99));
      GenerationRequest one = req;
      one.samples = 1;
      one.first_sample = k;
      auto single = alone.generate({one})[0][0];
      size_t r = req.request_id == 101 ? 0 : req.request_id == 202 ? 1 : 2;
      const auto& got = batched[r][size_t(k)];
      EXPECT_EQ(got.sample_index, k);
      EXPECT_EQ(got.tokens, single.tokens) << "request " << req.request_id << " sample " << k;
      ASSERT_EQ(got.sample_logprobs.size(), single.sample_logprobs.size());
      for (size_t t = 0; t < got.sample_logprobs.size(); ++t)
        EXPECT_NEAR(got.sample_logprobs[t], single.sample_logprobs[t], 1e-5);
    }
  }
}

TEST(Engine, ResultsDoNotDependOnBatchCapacity) {
  ToyDecoder a, b;
  auto opts = sampling_options(5);
  auto wide = Engine(a, opts).generate(three_requests());
  opts.max_batch_sequences = 1;
  auto narrow = Engine(b, opts).generate(three_requests());
  for (size_t r = 0; r < wide.size(); ++r)
    for (size_t k = 0; k < wide[r].size(); ++k) EXPECT_EQ(wide[r][k].tokens, narrow[r][k].tokens);
  // capacity 1: one request at a time (a request's samples are never split), at most 5 sequences
  for (int n : b.batch_sizes) EXPECT_LE(n, 5);
}

TEST(Engine, DifferentSeedsGiveDifferentSamples) {
  ToyDecoder a, b;
  auto x = Engine(a, sampling_options(1)).generate(three_requests());
  auto y = Engine(b, sampling_options(2)).generate(three_requests());
  int same = 0, total = 0;
  for (size_t r = 0; r < x.size(); ++r)
    for (size_t k = 0; k < x[r].size(); ++k, ++total) same += x[r][k].tokens == y[r][k].tokens;
  EXPECT_LT(same, total);
}

TEST(Engine, StopAndLengthRulesAndLogprobs) {
  ToyDecoder dec;
  auto opts = sampling_options(11);
  auto out = Engine(dec, opts).generate(three_requests());
  int stopped = 0;
  for (size_t r = 0; r < out.size(); ++r) {
    for (const auto& s : out[r]) {
      ASSERT_FALSE(s.tokens.empty());
      ASSERT_LE(int64_t(s.tokens.size()), opts.sampling.max_new_tokens);
      for (size_t t = 0; t + 1 < s.tokens.size(); ++t) EXPECT_NE(s.tokens[t], 3) << "token after a stop id";
      if (s.finish == FinishReason::kStop) {
        ++stopped;
        EXPECT_EQ(s.tokens.back(), 3);
      } else {
        EXPECT_EQ(int64_t(s.tokens.size()), opts.sampling.max_new_tokens);
      }
      // Raw model log-probs equal a full recomputation of the sequence, token by token.
      std::vector<int32_t> ids = three_requests()[r].prompt.input_ids;
      ASSERT_EQ(s.model_logprobs.size(), s.tokens.size());
      for (size_t t = 0; t < s.tokens.size(); ++t) {
        auto lp = dec.logits_after(ids).log_softmax(-1)[s.tokens[t]].item<float>();
        EXPECT_NEAR(s.model_logprobs[t], lp, 1e-5);
        EXPECT_LE(s.sample_logprobs[t], 0.0f);
        ids.push_back(s.tokens[t]);
      }
    }
  }
  EXPECT_GT(stopped, 0);  // the stop id does occur with this seed and model
  // Finished sequences leave the batch: decode batches shrink below the 12 live samples.
  EXPECT_LT(dec.batch_sizes.back(), dec.batch_sizes.front());
  for (size_t i = 1; i < dec.batch_sizes.size(); ++i) EXPECT_LE(dec.batch_sizes[i], dec.batch_sizes[i - 1]);
}

TEST(Engine, GreedyMatchesArgmaxOfFullRecomputation) {
  ToyDecoder dec;
  EngineOptions o;
  o.sampling.do_sample = false;
  o.sampling.max_new_tokens = 8;
  auto reqs = three_requests();
  auto out = Engine(dec, o).generate(reqs);
  for (size_t r = 0; r < out.size(); ++r) {
    std::vector<int32_t> ids = reqs[r].prompt.input_ids;
    std::vector<int32_t> want;
    for (int t = 0; t < 8; ++t) {
      int32_t next = int32_t(dec.logits_after(ids).argmax().item<int64_t>());
      want.push_back(next);
      ids.push_back(next);
    }
    for (const auto& s : out[r]) EXPECT_EQ(s.tokens, want);
  }
}

TEST(Engine, AdmissionRespectsCapacityAndReportsDoneRequests) {
  ToyDecoder dec;
  auto opts = sampling_options(3);
  opts.max_batch_sequences = 6;
  std::vector<size_t> done;
  auto out = Engine(dec, opts).generate(three_requests(), [&](size_t r, const std::vector<GeneratedSample>& s) {
    done.push_back(r);
    EXPECT_EQ(s.size(), size_t(three_requests()[r].samples));
  });
  for (int n : dec.batch_sizes) EXPECT_LE(n, 6);
  std::sort(done.begin(), done.end());
  EXPECT_EQ(done, (std::vector<size_t>{0, 1, 2}));
}
