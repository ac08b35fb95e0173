#pragma once
// Small building blocks whose parameters are created with explicit TensorOptions (dtype, device, or
// meta) and left uninitialised: the weights always come from a checkpoint.
#include <torch/torch.h>

#include <string>

namespace evoq::model {

class Linear : public torch::nn::Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x) const;
  torch::Tensor weight, bias;  // [out, in], [out] (bias undefined when absent)
};

// Qwen2 RMSNorm: normalise in fp32, cast back to the input dtype, then scale.
class RMSNorm : public torch::nn::Module {
 public:
  RMSNorm(int64_t dim, double eps, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x) const;
  torch::Tensor weight;
  double eps;
};

class LayerNorm : public torch::nn::Module {
 public:
  LayerNorm(int64_t dim, double eps, torch::TensorOptions options);
  torch::Tensor forward(const torch::Tensor& x) const;
  torch::Tensor weight, bias;
  double eps;
};

// Activation by its transformers name (silu, quick_gelu, gelu, gelu_pytorch_tanh).
torch::Tensor activation(const torch::Tensor& x, const std::string& name);

// rotate_half of RoPE: pairs element i with i + d/2.
torch::Tensor rotate_half(const torch::Tensor& x);

}  // namespace evoq::model
