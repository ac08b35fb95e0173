#pragma once
// Sampling settings and the logits processors, with transformers' semantics and order.
//
// Order (transformers `_get_logits_processor`): repetition penalty (also applied when greedy), then,
// only when sampling: temperature, top-k, top-p (min_tokens_to_keep = 1). Greedy takes the argmax of
// the penalised logits. A sampled token is drawn by inverse CDF from one counter-based uniform
// (rng.h), so a sample depends only on (seed, request id, sample index, step).
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <vector>

#include "evoq/gen/rng.h"

namespace evoq::gen {

struct SamplingParams {
  bool do_sample = false;
  double temperature = 1.0;
  int64_t top_k = 50;  // 0 = off
  double top_p = 1.0;  // 1 = off
  double repetition_penalty = 1.0;
  std::vector<int64_t> eos_token_ids;  // stop ids from generation_config.json (engine adds the tokenizer's)
  int64_t max_new_tokens = 128;
};

// transformers' defaults for keys a generation_config.json leaves out (do_sample false, temperature
// 1, top_k 50, top_p 1, repetition_penalty 1), overridden by the file's values. Throws evoq::Error
// naming the file and key on malformed JSON or values out of domain.
SamplingParams read_generation_config(const std::filesystem::path& file);
// As above for a model directory: its generation_config.json when present, else the defaults.
SamplingParams model_sampling_defaults(const std::filesystem::path& model_dir);

// Checks the domain of each setting (temperature > 0 when sampling, top_p in (0, 1], top_k >= 0,
// penalty > 0, max_new_tokens >= 1); throws UsageError naming `what` (the option or file).
void validate(const SamplingParams& p, const std::string& what);

// --- processors: logits [B, V] float32, returns new tensors ---
// HF RepetitionPenaltyLogitsProcessor: for tokens present in the sequence (prompt + generated),
// score < 0 ? score * penalty : score / penalty. `present` is a bool mask [B, V].
torch::Tensor apply_repetition_penalty(const torch::Tensor& logits, const torch::Tensor& present, double penalty);
torch::Tensor apply_temperature(const torch::Tensor& logits, double temperature);
// HF TopKLogitsWarper: -inf below the k-th largest value (ties with it are kept).
torch::Tensor apply_top_k(const torch::Tensor& logits, int64_t top_k);
// HF TopPLogitsWarper: ascending sort, softmax, cumulative sum; remove where cumsum <= 1 - top_p,
// always keeping the most likely token.
torch::Tensor apply_top_p(const torch::Tensor& logits, double top_p);

// The whole chain for the current settings (penalty always; the rest only when sampling).
torch::Tensor process_logits(const torch::Tensor& logits, const torch::Tensor& present, const SamplingParams& p);

struct Choice {
  torch::Tensor tokens;            // [B] int64
  torch::Tensor sample_logprobs;   // [B] float32: log_softmax(processed)[token]
  torch::Tensor model_logprobs;    // [B] float32: log_softmax(raw logits)[token] (undefined unless asked)
};

// Picks one token per row. `uniforms` (one per row, in [0, 1)) are used only when sampling.
Choice choose_tokens(const torch::Tensor& raw_logits, const torch::Tensor& processed, const SamplingParams& p,
                     const std::vector<double>& uniforms, bool want_model_logprobs);

// Inverse-CDF draw on the device: for each row of probs [B, V], the first index whose running sum
// (float64) exceeds uniforms[b] * total; same rule as sample_index.
torch::Tensor inverse_cdf(const torch::Tensor& probs, const torch::Tensor& uniforms);

// Inverse-CDF draw of one row of probabilities: the first index whose running sum (in double) exceeds
// u * total. Never returns an index of zero probability.
int64_t sample_index(const float* probs, int64_t n, double u);

}  // namespace evoq::gen
