#pragma once
// Patch merger: norm (LayerNorm for Qwen2-VL, RMSNorm for Qwen2.5-VL, eps 1e-6), then each
// spatial_merge^2 neighbouring tokens concatenated -> Linear -> exact GELU -> Linear to the LM width.
#include <torch/torch.h>

#include <memory>

#include "evoq/model/config.h"
#include "evoq/model/layers.h"

namespace evoq::model {

class PatchMerger : public torch::nn::Module {
 public:
  PatchMerger(const ModelConfig& config, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x);  // [N, width] -> [N / merge^2, out_hidden]

 private:
  int64_t merged_width_;
  std::shared_ptr<RMSNorm> rms_;
  std::shared_ptr<LayerNorm> ln_;
  std::shared_ptr<Linear> fc0_, fc2_;
};

}  // namespace evoq::model
