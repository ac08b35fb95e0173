#include "evoq/model/patch_merger.h"

namespace evoq::model {

PatchMerger::PatchMerger(const ModelConfig& config, torch::TensorOptions options) {
  const auto& v = config.vision;
  merged_width_ = v.width * v.spatial_merge_size * v.spatial_merge_size;
  if (config.arch == Arch::Qwen2VL)
    ln_ = register_module("ln_q", std::make_shared<LayerNorm>(v.width, 1e-6, options));
  else
    rms_ = register_module("ln_q", std::make_shared<RMSNorm>(v.width, 1e-6, options));
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  fc0_ = mlp->register_module("0", std::make_shared<Linear>(merged_width_, merged_width_, true, options));
  fc2_ = mlp->register_module("2", std::make_shared<Linear>(merged_width_, v.out_hidden_size, true, options));
}

torch::Tensor PatchMerger::forward(const torch::Tensor& x) {
  auto normed = ln_ ? ln_->forward(x) : rms_->forward(x);
  auto h = fc0_->forward(normed.reshape({-1, merged_width_}));
  return fc2_->forward(torch::gelu(h));
}

}  // namespace evoq::model
