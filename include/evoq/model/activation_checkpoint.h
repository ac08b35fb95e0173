#pragma once
// Activation checkpointing (`evoq train --activation-checkpointing`): a decoder layer or vision
// block keeps only its input for the backward pass and is run again, with gradients, when the
// backward reaches it (LibTorch C++ has no torch.utils.checkpoint). Trades one extra forward of the
// checkpointed blocks for their activations; the gradients are the same.
//
// The switch is process-wide because it only matters for forwards that build a graph: the model
// consults it in QwenVL::hidden_states and VisionTower::forward when grad mode is on, so rollouts
// (decode, no grad) and reference/old-policy passes (NoGradGuard) are unaffected.
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace evoq::model {

void set_activation_checkpointing(bool on);
bool activation_checkpointing();

// True when a block run now should be checkpointed: the switch is on and grad mode is enabled.
bool checkpoint_now();

using BlockFn = std::function<torch::Tensor(const torch::Tensor&)>;

// y = block(x), storing only x; in backward, block is re-run under grad mode (and the autocast state
// of the forward) and d loss / d x and d loss / d params are returned through torch::autograd::grad.
// `params` must be every tensor the block reads that can require a gradient (its parameters);
// anything else it reads (RoPE tables, masks) must be captured by `block` and must not need one.
torch::Tensor checkpoint_block(BlockFn block, const torch::Tensor& x, const std::vector<torch::Tensor>& params);

}  // namespace evoq::model
