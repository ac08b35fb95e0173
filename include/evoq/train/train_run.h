#pragma once
// The online stage as one collective call (`evoq train`, and `evoq evolve`'s train stage): GRPO with
// fidelity rewards on labels.h5 (paper section 3.2, Algorithm 1 lines 6-15), or EvoEstimate's reward on
// estimates.h5, synchronous data parallel over the ranks, resumable (docs/TRAINING.md).
//
// Every setting that changes results is recorded in RUN/run_config.json ("settings") and in the
// checkpoints' trainer state; a resume with any of them changed is refused with one line naming each
// key and both values. Settings that do not change results ("runtime": threads, device, micro-batch,
// checkpoint cadence, activation checkpointing, rollout batch) may change between runs.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "evoq/dist/communicator.h"
#include "evoq/gen/sampling_settings.h"
#include "evoq/gen/vlm_session.h"

namespace evoq::train {

struct TrainSettings {
  // Data and folders.
  std::string model_dir;        // the policy at the start of this run
  std::string reference_model;  // pi_ref of Eq. 5-6 ("" = model_dir); evolve passes the base model
  std::string reward = "fidelity";     // fidelity (EvoQuality, labels_path) | estimate (EvoEstimate)
  std::string labels_path;             // labels.h5 (fidelity)
  std::string estimates_path;          // estimates.h5 (estimate)
  double estimate_threshold = 0.35;    // estimate: reward 1 when |score - pseudo score| < this
  std::string out_dir;
  bool resume = false;
  // Schedule. Paper: 1 epoch, 8 GPUs x per-GPU batch 4, read as 4 images per GPU = 16 pairs per step.
  std::optional<std::int64_t> steps;   // else round(epochs x steps per epoch)
  double epochs = 1.0;
  std::int64_t pairs_per_step = 16;    // B (images per step for estimate)
  int samples = 32;                    // K rollouts per image (paper: 32)
  // Optimizer (paper: AdamW, lr 3e-7, linear decay).
  double lr = 3e-7;
  std::int64_t warmup = 0;
  double weight_decay = 0.01;
  double grad_clip = 1.0;
  std::string trainable = "all";       // all (paper) | lm | lm+merger
  bool zero = false;                   // shard the optimizer state (ZeRO-1)
  // Objective (Eq. 2-6).
  double beta = 0.05;
  double gamma = 1e-6;
  int min_partner_valid = 2;
  std::string absent_partners = "off"; // off | running
  double running_momentum = 0.9;
  double clip_low = 0.2, clip_high = 0.2;
  std::string loss_agg = "seq-mean-token-mean";  // Eq. 5's 1/(BK) over sequences of token means
  double loss_divisor = 1.0;
  double adv_epsilon = 1e-6;
  bool std_division = true;
  int ppo_epochs = 1;
  // off | bf16 | auto (bf16 when the weights are fp32 and the device computes bf16 natively: CUDA, or a CPU
  // with AVX512-BF16/AMX; else off). Recorded resolved.
  std::string autocast = "auto";
  std::uint64_t seed = 0;
  // Rollouts.
  bool reasoning = true;
  std::string prompt_file;             // "" = c_score
  gen::SamplingOverrides sampling;     // over rollout_sampling_defaults (not generation_config.json)
  bool allow_near_greedy = false;      // accept near-deterministic rollout sampling
  // Runtime (may change on resume).
  int micro_batch = 8;
  int max_batch_sequences = 64;
  bool activation_checkpointing = false;
  std::int64_t checkpoint_every = 50;
  int keep_checkpoints = 2;
  std::int64_t rollouts_every = 1;
  int zero_signal_steps = 5;           // warn after this many consecutive steps with most groups silent
  gen::RuntimeSettings runtime{.dtype = "fp32"};  // fp32 master weights; bf16 compute via autocast
  // --dry-run: print the memory estimate and exit.
  bool dry_run = false;
  std::optional<int> dry_run_ranks;

  void validate() const;  // UsageError naming the option
};

// Collective: runs (or resumes, or dry-runs) the training. Returns 0, or dist::kExitStoppedBySignal (75)
// after a signal-requested checkpoint; throws evoq::Error on every rank on failure.
int run_training(const TrainSettings& settings, const std::shared_ptr<dist::Communicator>& world);

// The settings of `s` that change results, as recorded in run_config.json (model checksums added by
// run_training). `prompt` is the final rollout prompt, `sampling` the final rollout sampling.
nlohmann::json training_fingerprint(const TrainSettings& s, const std::string& prompt,
                                    const gen::SamplingParams& sampling);

}  // namespace evoq::train
