#pragma once
// One global GRPO step of the online stage (paper Algorithm 1 lines 8-13):
//   rollouts (K answers per image, this rank's share) -> rewards (Eq. 2-3, statistics shared across
//   ranks) -> advantages (Eq. 4) -> global loss normaliser (all-reduced BEFORE any backward) ->
//   reference log-probs (beta > 0) -> old log-probs (only when ppo_epochs > 1) -> for each PPO epoch:
//   micro-batches of Eq. 5-6 backward, then one optimizer update (the caller's UpdateFn).
//
// With ppo_epochs == 1 the rollout policy IS the current policy, so pi_old = pi_theta.detach() and
// the ratio is 1 by construction: no extra forward pass is made.
#include <nlohmann/json.hpp>

#include <functional>
#include <vector>

#include "evoq/dist/communicator.h"
#include "evoq/train/grpo_backward.h"
#include "evoq/evo/grpo_loss.h"
#include "evoq/train/policy_logprobs.h"
#include "evoq/train/rollout.h"
#include "evoq/model/autocast.h"

namespace evoq::train {

struct GrpoStepConfig {
  RolloutConfig rollout;
  evo::GrpoLossConfig loss;
  int micro_batch = 8;  // sequences per forward/backward
  int ppo_epochs = 1;   // optimizer updates per rollout batch
  model::Autocast autocast = model::Autocast::off;  // policy / reference / old forwards (not the rollouts)
};

// The optimizer update the step calls once per PPO epoch (on every rank, grads summed across ranks
// inside it); it must leave the gradients zeroed or undefined.
struct UpdateOutcome {
  bool skipped = false;  // non-finite gradient: no update made
  double grad_norm = 0.0;
  double lr = 0.0;
};
using UpdateFn = std::function<UpdateOutcome()>;

// Global (all-rank) figures of one step; to_json() is one line of metrics.jsonl.
struct StepMetrics {
  std::int64_t step = 0, epoch = 0, position = 0;
  double reward_mean = 0, reward_std = 0, advantage_abs_mean = 0;
  double invalid_rate = 0;
  std::int64_t images = 0, sequences = 0, zero_variance_groups = 0, no_signal_images = 0, partners_skipped = 0;
  double kl = 0, clip_fraction = 0, ratio_mean = 0, loss = 0, entropy = 0;
  double grad_norm = 0, lr = 0;
  std::int64_t skipped_updates = 0;
  double response_tokens = 0, response_length_mean = 0;
  double rollout_seconds = 0, reference_seconds = 0, old_seconds = 0, update_seconds = 0, optimizer_seconds = 0,
         step_seconds = 0;
  double rollout_tokens_per_second = 0;
  nlohmann::json to_json() const;
};

struct StepResult {
  std::vector<ImageRollout> rollouts;  // this rank's images
  StepMetrics metrics;
};

// One GRPO step over the B pairs `step_pairs`. `reference` may be null when config.loss.beta == 0;
// `running` (optional) adds running estimates for absent partners and is updated (rollout.h).
StepResult grpo_step(const gen::VlmSession& policy, model::QwenVL* reference, const TrainData& data,
                     const std::vector<std::size_t>& step_pairs, std::int64_t step, const GrpoStepConfig& config,
                     dist::Communicator& comm, const UpdateFn& update, RunningPartnerStats* running = nullptr);

}  // namespace evoq::train
