#pragma once
// The backward part of a GRPO step (grpo_step.h), on sequences whose rollouts and advantages are
// given: per-sequence log-probs without gradients (reference / old policy) and the micro-batched
// Eq. 5-6 backward. Needs only the model, not the tokenizer or the data files, so that the GPU
// acceptance tool (tests/gpu) builds it against plain LibTorch.
#include <torch/torch.h>

#include <vector>

#include "evoq/evo/grpo_loss.h"
#include "evoq/train/policy_logprobs.h"
#include "evoq/model/autocast.h"
#include "evoq/model/qwen_vl.h"

namespace evoq::train {

// Shared with `evoq debug-grpo-grad` and the GPU acceptance tool: accumulates into the model's .grad the
// gradient of sum_micro-batches grpo_loss(...) over `sequences` (micro-batches of `micro_batch`).
// logp_old / logp_ref hold one 1-D tensor per sequence (its response length) or are empty
// (old = new.detach(); no reference). The forwards run under `autocast`, the backward passes outside
// it. Returns the loss value and the sums of grpo_loss's statistics;
// new_logp_sums (optional) receives each sequence's summed log-prob under the model.
struct BackwardSums {
  double loss = 0, clipped_tokens = 0, kl_sum = 0, ratio_sum = 0, tokens = 0, entropy_sum = 0;
};
BackwardSums accumulate_grpo_gradients(model::QwenVL& model, const std::vector<PolicySequence>& sequences,
                                       const std::vector<double>& advantages,
                                       const std::vector<torch::Tensor>& logp_old,
                                       const std::vector<torch::Tensor>& logp_ref, const evo::GrpoLossConfig& config,
                                       double normaliser, int micro_batch,
                                       model::Autocast autocast = model::Autocast::off,
                                       std::vector<double>* new_logp_sums = nullptr);

// Per-sequence log-prob vectors under `model` without gradients (reference / old policy), in
// micro-batches (forwards under `autocast`; the returned log-probs are float32).
// `temperature`: as response_logprobs (the rollouts' sampling temperature).
std::vector<torch::Tensor> sequence_logprobs(model::QwenVL& model, const std::vector<PolicySequence>& sequences,
                                             int micro_batch, model::Autocast autocast = model::Autocast::off,
                                             double temperature = 1.0);

}  // namespace evoq::train
