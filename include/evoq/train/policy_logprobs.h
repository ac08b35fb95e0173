#pragma once
// Per-token log-probabilities of sampled responses under a policy (the pi_theta, pi_old and pi_ref
// terms of Eq. 5-6): one padded forward over (chat prompt with image, response) sequences.
//
// Only the response positions go through lm_head (the prompt's logits are never built), and each
// distinct image of the micro-batch goes through the vision tower once: its embeddings are reused
// by all K sequences of that image (gradients of the K copies add up in the shared vision pass).
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "evoq/gen/decoder.h"
#include "evoq/model/qwen_vl.h"

namespace evoq::train {

struct PolicySequence {
  std::int64_t image = -1;                // image id: sequences with the same id share one vision pass
  const gen::PromptInput* prompt = nullptr;  // chat prompt ids with the image's pixels and grid
  std::vector<std::int32_t> response;     // sampled tokens (the stop token included when emitted)
};

struct TokenLogprobs {
  torch::Tensor logp;  // [S, T] float32, log pi(response token t | prompt, tokens < t); 0 at padding
  torch::Tensor mask;  // [S, T] float32, 1 on response tokens
  torch::Tensor entropy;  // [S, T] float32, entropy of pi(. | prompt, tokens < t) (no grad); 0 at padding;
                          // only computed when grad mode is on (the policy's pass), else undefined
};

// log pi(o_t | c, x, o_<t) for every response token of `sequences`, T = longest response, under
// softmax(logits / temperature): the distribution the responses were sampled from (verl and TRL divide
// the logits by the rollout temperature the same way). Top-k / top-p truncation of the sampler is not
// reflected: with it, these are the log-probs of the untruncated tempered distribution (training's
// default sampling has top_k 0 and top_p 1, so the two coincide; docs/TRAINING.md).
// Gradients flow into the model's parameters when grad mode is on (call under torch::NoGradGuard for
// the reference / old policy).
TokenLogprobs response_logprobs(model::QwenVL& model, const std::vector<PolicySequence>& sequences,
                                double temperature = 1.0);

// The response mask alone (same layout as response_logprobs), without running the model.
torch::Tensor response_mask(const std::vector<PolicySequence>& sequences);

}  // namespace evoq::train
