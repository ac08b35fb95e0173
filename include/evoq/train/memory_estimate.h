#pragma once
// Per-GPU memory estimate of the online (GRPO) stage, printed by `evoq train --dry-run`. Parameter
// counts come from the model config (vision tower, merger, decoder, lm_head); the formulas are listed
// in docs/TRAINING.md "Optimizer, checkpoints, memory". Torch-free.
#include <cstdint>
#include <string>

#include "evoq/model/config.h"

namespace evoq::train {

// Parameter counts by component, from the config alone.
struct ParamCounts {
  int64_t vision = 0;   // patch embedding + vision blocks (without the merger)
  int64_t merger = 0;   // patch merger
  int64_t decoder = 0;  // embed_tokens + decoder layers + final norm
  int64_t lm_head = 0;  // 0 when tied to embed_tokens
  int64_t total() const { return vision + merger + decoder + lm_head; }
};
ParamCounts count_parameters(const model::ModelConfig& config);

// Trainable elements of a scope (all | lm | lm+merger); throws UsageError otherwise.
int64_t trainable_count(const ParamCounts& counts, const std::string& scope);

struct MemoryPlan {
  int ranks = 1;
  bool bf16 = true;  // parameter dtype: bf16 (else fp32)
  int zero_stage = 0;  // 0: replicated optimizer; 1: optimizer state sharded; 2: + gradients sharded
  bool activation_checkpointing = false;
  bool autocast_bf16 = false;  // fp32 parameters, bf16 activations (+ the bf16 weight casts the graph keeps)
  int64_t micro_batch_sequences = 1;
  int64_t sequence_length = 1024;  // prompt (incl. image tokens) + response tokens
  int64_t image_tokens = 256;      // merged image tokens per sequence (part of sequence_length)
  bool reference_model = true;     // beta > 0 keeps a frozen copy of the weights
  std::string trainable_scope = "all";
  // Rollouts (generation, no gradients): images in flight x (prompt KV + samples x response KV).
  int64_t rollout_images = 1;
  int64_t rollout_samples = 8;
  int64_t prompt_tokens = 400;
  int64_t response_tokens = 512;
  double bucket_mb = 25.0;  // communication buffer of DistributedAdamW
};

struct MemoryEstimate {
  ParamCounts params;
  int64_t trainable = 0;
  // Bytes per GPU.
  double weights = 0, reference_weights = 0, grads = 0, optimizer_state = 0, comm_buffers = 0, activations = 0,
         logits = 0, rollout_kv = 0;
  double total() const {
    return weights + reference_weights + grads + optimizer_state + comm_buffers + activations + logits + rollout_kv;
  }
};

MemoryEstimate estimate_training_memory(const model::ModelConfig& config, const MemoryPlan& plan);

// A human-readable table (GiB per component, the plan, parameter counts).
std::string format_memory_table(const MemoryEstimate& estimate, const MemoryPlan& plan);

}  // namespace evoq::train
