#pragma once
// Generation engine: K samples per prompt from one shared prefill, many prompts batched.
//
// Scheduling: requests are admitted in order while the number of live sequences stays within
// max_batch_sequences; each admitted prompt is prefilled once and forked into its K samples; every
// step decodes all live sequences in one call; a sequence that emits a stop id or reaches
// max_new_tokens leaves the batch and frees its slot for the next request.
//
// Reproducibility: token t of sample k of request r is drawn from the uniform
// SampleStream{seed, r, k}.uniform(t), and repetition penalty only looks at that sample's own
// prompt and tokens, so the result does not depend on batch composition, rank count or resume
// (up to floating-point differences of the model's batched kernels).
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "evoq/gen/decoder.h"
#include "evoq/gen/sampler.h"

namespace evoq::gen {

struct GenerationRequest {
  uint64_t request_id = 0;  // with the seed and the sample index, names each sample's random stream
  PromptInput prompt;
  int samples = 1;       // sample indices first_sample .. first_sample + samples - 1
  int first_sample = 0;  // lets a caller draw more samples of a request later (e.g. in waves)
  // When not empty, the sample indices to draw instead of the range above. Two requests may share a
  // request id with disjoint indices: a compare pair shown in both orders is two prompts whose
  // samples interleave (sample k of the pair is swapped or not by its own random bit).
  std::vector<int> sample_indices;

  std::vector<int> indices() const;
};

enum class FinishReason { kStop, kLength };
const char* to_string(FinishReason reason);

struct GeneratedSample {
  uint64_t request_id = 0;
  int sample_index = 0;  // the sample's index (GenerationRequest::indices())
  std::vector<int32_t> tokens;          // generated ids, including the stop id when there is one
  std::vector<float> sample_logprobs;   // per token, under the processed (sampling) distribution
  std::vector<float> model_logprobs;    // per token, raw log_softmax of the model (when asked)
  FinishReason finish = FinishReason::kLength;
};

struct EngineOptions {
  SamplingParams sampling;
  std::set<int64_t> stop_ids;        // union of the tokenizer's and generation_config's stop ids
  uint64_t seed = 0;
  bool model_logprobs = false;       // also record raw model log-probs (GRPO)
  int max_batch_sequences = 64;      // live sequences decoded together
};

class Engine {
 public:
  Engine(Decoder& decoder, EngineOptions options);

  // Generates every sample of every request; results ordered by request, then sample index.
  // `on_request_done` (optional) sees each request's samples as soon as they are all finished.
  std::vector<std::vector<GeneratedSample>> generate(
      const std::vector<GenerationRequest>& requests,
      const std::function<void(size_t request_index, const std::vector<GeneratedSample>&)>& on_request_done = {});

  const EngineOptions& options() const { return options_; }

 private:
  Decoder& decoder_;
  EngineOptions options_;
};

}  // namespace evoq::gen
