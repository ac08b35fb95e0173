#pragma once
// Vision tower of Qwen2-VL (LayerNorm, quick-GELU MLP, full attention per image) and Qwen2.5-VL
// (RMSNorm, SwiGLU MLP with biases, window attention except in fullatt_block_indexes), followed by
// the patch merger. Parameter names follow transformers (`patch_embed.proj.weight`, `blocks.N.*`,
// `merger.*`).
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "evoq/model/config.h"
#include "evoq/model/layers.h"
#include "evoq/model/patch_merger.h"

namespace evoq::model {

class VisionBlock : public torch::nn::Module {
 public:
  VisionBlock(const ModelConfig& config, torch::TensorOptions options);
  // x [N, width]; segment_lengths partition N into independent attention segments.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const std::vector<int64_t>& segment_lengths);

 private:
  torch::Tensor attention(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                          const std::vector<int64_t>& segment_lengths);
  torch::Tensor mlp_forward(const torch::Tensor& x);
  Arch arch_;
  int64_t heads_, head_dim_;
  std::string act_;
  std::shared_ptr<torch::nn::Module> norm1_, norm2_;
  std::shared_ptr<Linear> qkv_, proj_;
  std::shared_ptr<Linear> fc1_, fc2_;                   // Qwen2-VL
  std::shared_ptr<Linear> gate_proj_, up_proj_, down_proj_;  // Qwen2.5-VL
};

class VisionTower : public torch::nn::Module {
 public:
  VisionTower(const ModelConfig& config, torch::TensorOptions options);
  // pixel_values [N, patch_dim], grid_thw [num_images, 3] -> merged tokens [N / merge^2, out_hidden].
  torch::Tensor forward(const torch::Tensor& pixel_values, const torch::Tensor& grid_thw);

 private:
  ModelConfig config_;
  torch::Tensor patch_weight_;  // Conv3d weight [width, C, T, P, P] (kernel == stride, so a matmul)
  std::vector<std::shared_ptr<VisionBlock>> blocks_;
  std::shared_ptr<PatchMerger> merger_;
};

// Attention inside independent segments (images or windows) of a packed sequence; q, k, v
// [N, heads, head_dim] -> [N, heads, head_dim].
torch::Tensor segment_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                const std::vector<int64_t>& segment_lengths);

}  // namespace evoq::model
