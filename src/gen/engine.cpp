#include "evoq/gen/engine.h"

#include "evoq/core/error.h"
#include "evoq/gen/rng.h"
#include "evoq/gen/sample_step.h"

namespace evoq::gen {

std::vector<int> GenerationRequest::indices() const {
  if (!sample_indices.empty()) return sample_indices;
  std::vector<int> out(size_t(std::max(samples, 0)));
  for (int k = 0; k < samples; ++k) out[size_t(k)] = first_sample + k;
  return out;
}

const char* to_string(FinishReason reason) { return reason == FinishReason::kStop ? "stop" : "length"; }

Engine::Engine(Decoder& decoder, EngineOptions options) : decoder_(decoder), options_(std::move(options)) {
  validate(options_.sampling, "generation settings");
  EVOQ_CHECK(options_.max_batch_sequences >= 1, "max_batch_sequences must be >= 1");
}

namespace {

struct LiveSequence {
  size_t request = 0;
  int sample = 0;
  int64_t seq = -1;
  SampleStream stream;
  torch::Tensor present;  // [V] bool: tokens of the prompt and of this sample (repetition penalty)
};

}  // namespace

std::vector<std::vector<GeneratedSample>> Engine::generate(
    const std::vector<GenerationRequest>& requests,
    const std::function<void(size_t, const std::vector<GeneratedSample>&)>& on_request_done) {
  const SamplingParams& params = options_.sampling;
  const bool penalise = params.repetition_penalty != 1.0;
  const int64_t vocab = decoder_.vocab_size();

  std::vector<std::vector<GeneratedSample>> results(requests.size());
  std::vector<int> unfinished(requests.size(), 0);
  std::vector<LiveSequence> live;
  size_t next_request = 0;

  auto finish_request_if_done = [&](size_t r) {
    if (unfinished[r] == 0 && on_request_done) on_request_done(r, results[r]);
  };

  // Picks the next token of each sequence in `batch` from its logits row; returns the sequences that go on.
  auto advance = [&](std::vector<LiveSequence>& batch, const torch::Tensor& logits) {
    torch::Tensor present;
    if (penalise) {
      std::vector<torch::Tensor> rows;
      for (auto& s : batch) rows.push_back(s.present);
      present = torch::stack(rows);
    }
    std::vector<double> uniforms;
    if (params.do_sample)
      for (auto& s : batch) uniforms.push_back(s.stream.uniform(uint32_t(results[s.request][s.sample].tokens.size())));
    Choice choice = sample_step(logits, present, params, uniforms, options_.model_logprobs);
    auto tokens_t = choice.tokens.to(torch::kCPU).contiguous();
    auto sample_lp_t = choice.sample_logprobs.to(torch::kCPU).contiguous();
    torch::Tensor model_lp_t =
        options_.model_logprobs ? choice.model_logprobs.to(torch::kCPU).contiguous() : torch::Tensor();
    const int64_t* tokens = tokens_t.data_ptr<int64_t>();
    const float* sample_lp = sample_lp_t.data_ptr<float>();
    const float* model_lp = options_.model_logprobs ? model_lp_t.data_ptr<float>() : nullptr;

    std::vector<LiveSequence> going_on;
    for (size_t i = 0; i < batch.size(); ++i) {
      LiveSequence& s = batch[i];
      GeneratedSample& out = results[s.request][s.sample];
      const int64_t token = tokens[i];
      out.tokens.push_back(int32_t(token));
      out.sample_logprobs.push_back(sample_lp[i]);
      if (model_lp) out.model_logprobs.push_back(model_lp[i]);
      if (penalise) s.present[token] = true;
      bool stop = options_.stop_ids.count(token) > 0;
      if (stop || int64_t(out.tokens.size()) >= params.max_new_tokens) {
        out.finish = stop ? FinishReason::kStop : FinishReason::kLength;
        decoder_.release_sequence(s.seq);
        --unfinished[s.request];
        finish_request_if_done(s.request);
      } else {
        going_on.push_back(std::move(s));
      }
    }
    return going_on;
  };

  while (true) {
    // Admit requests while their samples fit (always at least one request when nothing is live).
    while (next_request < requests.size() &&
           (live.empty() ||
            int(live.size() + requests[next_request].indices().size()) <= options_.max_batch_sequences)) {
      const size_t r = next_request++;
      const GenerationRequest& req = requests[r];
      const std::vector<int> indices = req.indices();
      const int n = int(indices.size());
      EVOQ_CHECK(n >= 1, "request ", req.request_id, ": no samples requested");
      for (int k : indices) EVOQ_CHECK(k >= 0, "request ", req.request_id, ": negative sample index ", k);
      EVOQ_CHECK(!req.prompt.input_ids.empty(), "request ", req.request_id, ": empty prompt");
      results[r].resize(size_t(n));
      unfinished[r] = n;

      Decoder::Prefilled pre = decoder_.prefill(req.prompt);
      std::vector<int64_t> seqs = decoder_.fork(pre.prefix, n);
      decoder_.release_prefix(pre.prefix);

      torch::Tensor prompt_present;
      if (penalise) {
        auto ids = torch::tensor(std::vector<int64_t>(req.prompt.input_ids.begin(), req.prompt.input_ids.end()));
        ids = ids.masked_select(ids < vocab);
        prompt_present = torch::zeros({vocab}, torch::kBool).index_fill_(0, ids, true).to(pre.logits.device());
      }
      std::vector<LiveSequence> fresh;
      for (int k = 0; k < n; ++k) {
        GeneratedSample& out = results[r][size_t(k)];
        out.request_id = req.request_id;
        out.sample_index = indices[size_t(k)];
        LiveSequence s;
        s.request = r;
        s.sample = k;
        s.seq = seqs[size_t(k)];
        s.stream = SampleStream{options_.seed, req.request_id, uint32_t(indices[size_t(k)])};
        if (penalise) s.present = prompt_present.clone();
        fresh.push_back(std::move(s));
      }
      auto logits = pre.logits.reshape({1, -1}).expand({n, -1}).contiguous();
      for (auto& s : advance(fresh, logits)) live.push_back(std::move(s));
    }
    if (live.empty()) break;

    std::vector<int64_t> seqs, last;
    for (auto& s : live) {
      seqs.push_back(s.seq);
      last.push_back(results[s.request][s.sample].tokens.back());
    }
    torch::Tensor logits = decoder_.decode(seqs, last);
    EVOQ_CHECK(logits.dim() == 2 && logits.size(0) == int64_t(live.size()), "decoder returned logits of shape ",
               logits.sizes(), " for ", live.size(), " sequences");
    live = advance(live, logits);
  }
  return results;
}

}  // namespace evoq::gen
