#pragma once
// Data-parallel AdamW for the online (GRPO) stage, paper section 3.2 "Optimizer": gradients are SUMMED
// over ranks (the GRPO loss normaliser is already global, grpo_loss.h), clipped by their global norm,
// a step with any non-finite gradient is skipped on every rank, and the update follows
// torch.optim.AdamW (decoupled weight decay, bias correction) with a linear warmup / linear decay
// schedule (the one of transformers' get_linear_schedule_with_warmup).
//
// Layout: the trainable parameters, in the given order, form one flat element space that is cut into
// buckets of bucket_mb (fp32 elements; a parameter may span buckets). Unsharded, every rank owns every
// element and each bucket's gradients are all-reduced. Sharded (ZeRO-1/2 style), each bucket is padded
// to a multiple of the rank count and rank r owns its r-th equal chunk: gradients are reduce-scattered
// per bucket, each rank updates the Adam moments (and fp32 master, for non-fp32 parameters) of the
// elements it owns, and the updated values are all-gathered back into every rank's parameters.
// fp32 parameters are updated in place (no master copy); bf16/fp16 parameters keep an fp32 master.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "evoq/train/trainable_scope.h"

namespace evoq::dist {
class Communicator;
}

namespace evoq::train {

struct OptimizerConfig {
  double lr = 3e-7;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;  // <= 0: no clipping
  int64_t warmup_steps = 0;    // linear warmup from 0, then linear decay to 0 at total_steps
  int64_t total_steps = 1;
  bool shard_state = false;  // ZeRO-1/2: each rank owns fp32 master + Adam moments of a slice
  double bucket_mb = 25.0;   // gradient communication bucket (fp32 MiB)
};

struct StepReport {
  bool applied = false;    // false: skipped (non-finite gradient)
  bool nonfinite = false;  // some gradient element on some rank was NaN/Inf
  double grad_norm = 0;    // global L2 norm of the summed gradient, before clipping
  double lr = 0;           // learning rate of this step
  int64_t step = 0;        // schedule step index this call used (0-based)
};

class DistributedAdamW {
 public:
  // params: the trainable parameters (name, tensor), same order and shapes on every rank, all on one
  // device (that of comm's backend). Any floating dtype.
  DistributedAdamW(std::vector<std::pair<std::string, torch::Tensor>> params, OptimizerConfig config,
                   std::shared_ptr<dist::Communicator> comm);
  ~DistributedAdamW();
  DistributedAdamW(const DistributedAdamW&) = delete;
  DistributedAdamW& operator=(const DistributedAdamW&) = delete;

  // Collective. Sums .grad() over ranks (an undefined grad counts as zeros), clips by the global norm
  // (torch.nn.utils.clip_grad_norm_ semantics), skips the update on all ranks if any gradient is
  // non-finite, else applies AdamW with lr_at(steps_taken()); then zeroes the grads. Skipped steps
  // advance the schedule but not Adam's bias-correction count (as torch with a LambdaLR stepped
  // every iteration and optimizer.step() not called).
  StepReport step();
  void zero_grad();  // sets every .grad() to undefined

  // base lr x factor: step < warmup: step / warmup; else max(0, (total - step) / max(1, total - warmup)).
  double lr_at(int64_t step) const;
  int64_t steps_taken() const;   // schedule steps so far (applied + skipped)
  int64_t adam_steps() const;    // applied updates (Adam's t)
  const OptimizerConfig& config() const;

  int64_t numel() const;        // trainable elements
  int64_t owned_numel() const;  // elements whose moments this rank holds
  std::size_t state_bytes() const;  // bytes of moments + masters held by this rank

  // This rank's state (moments/masters of what it owns, counters, layout) in one HDF5 file, written
  // atomically. load_state checks format, parameter names/sizes, rank count, rank, sharding and bucket
  // layout, and throws evoq::Error naming the file on a mismatch.
  void save_state(const std::string& h5_path) const;
  void load_state(const std::string& h5_path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace evoq::train
