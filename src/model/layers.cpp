#include "evoq/model/layers.h"

#include "evoq/core/error.h"

namespace evoq::model {

Linear::Linear(int64_t in, int64_t out, bool with_bias, torch::TensorOptions options) {
  weight = register_parameter("weight", torch::empty({out, in}, options));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}, options));
}

torch::Tensor Linear::forward(const torch::Tensor& x) const { return torch::nn::functional::linear(x, weight, bias); }

RMSNorm::RMSNorm(int64_t dim, double eps_, torch::TensorOptions options) : eps(eps_) {
  weight = register_parameter("weight", torch::empty({dim}, options));
}

torch::Tensor RMSNorm::forward(const torch::Tensor& x) const {
  auto xf = x.to(torch::kFloat32);
  auto variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (xf * torch::rsqrt(variance + eps)).to(x.scalar_type());
}

LayerNorm::LayerNorm(int64_t dim, double eps_, torch::TensorOptions options) : eps(eps_) {
  weight = register_parameter("weight", torch::empty({dim}, options));
  bias = register_parameter("bias", torch::empty({dim}, options));
}

torch::Tensor LayerNorm::forward(const torch::Tensor& x) const {
  return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

torch::Tensor activation(const torch::Tensor& x, const std::string& name) {
  if (name == "silu") return torch::silu(x);
  if (name == "quick_gelu") return x * torch::sigmoid(1.702 * x);
  if (name == "gelu") return torch::gelu(x);
  if (name == "gelu_pytorch_tanh") return torch::gelu(x, "tanh");
  fail("unsupported activation '", name, "'");
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  return torch::cat({-x2, x1}, -1);
}

}  // namespace evoq::model
