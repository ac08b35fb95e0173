#pragma once
// The engine's per-step token choice: the distribution of process_logits + choose_tokens
// (sampler.h, transformers' order: repetition penalty, temperature, top-k, top-p) without their
// [B, V] float64 and log-softmax passes, which dominated decoding time at a 152k vocabulary.
//
// Draw rule (as choose_tokens): the token is the first one, in vocabulary order, at which the
// running sum of the sampling probabilities exceeds u * total; never a token of zero probability.
// How the running sum is formed (only float rounding depends on it):
// - top-k (k < V): on the kept tokens only, sorted by vocabulary id (top-p on them, then
//   log_softmax, float64 running sum), exactly as choose_tokens over the full row, whose removed
//   tokens add zero. Every token tied with the k-th value (after temperature) is kept, as
//   apply_top_k keeps it (bf16 logits tie often).
// - full vocabulary: weights w = exp(x - max x) in float32; float32 sums of blocks of
//   kSampleBlock tokens, accumulated in float64, pick the block; a float64 running sum inside the
//   block (starting from the preceding blocks' sum) picks the token. If rounding leaves the target
//   beyond the block's refined sum, the block's last positive token is taken.
// The result is a pure function of the logits row, the settings and u. The float32 block sums
// place u * total to about 1e-7 of the mass, the precision the float32 probabilities of
// choose_tokens had: only a uniform that close to a boundary between two tokens can pick differently.
#include <torch/torch.h>

#include <vector>

#include "evoq/gen/sampler.h"

namespace evoq::gen {

inline constexpr int64_t kSampleBlock = 512;

// logits [B, V] (any float dtype, any device); present [B, V] bool (only read when the penalty is
// not 1); uniforms: one per row in [0, 1) when sampling. Model log-probs only when asked.
Choice sample_step(const torch::Tensor& logits, const torch::Tensor& present, const SamplingParams& p,
                   const std::vector<double>& uniforms, bool want_model_logprobs);

// The full-vocabulary draw above on logits x [B, V] float32 or bf16 (with -inf for removed tokens; on the
// CPU model::cpu_softmax_draw, which reads bf16 logits as they are, elsewhere torch's ops);
// returns the tokens [B] int64 and their log-probs under softmax(x) [B] float32.
std::pair<torch::Tensor, torch::Tensor> draw_full_vocabulary(const torch::Tensor& x, const torch::Tensor& uniforms);

}  // namespace evoq::gen
