#include "evoq/model/layers.h"

#include <atomic>

#include "evoq/core/error.h"

namespace evoq::model {

Linear::Linear(int64_t in, int64_t out, bool with_bias, torch::TensorOptions options) {
  weight = register_parameter("weight", torch::empty({out, in}, options));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}, options));
}

namespace {
std::atomic<int64_t> g_skinny_rows{kSkinnyRows};
int64_t skinny_rows() { return g_skinny_rows.load(std::memory_order_relaxed); }

// The weight-left product returns [out, rows] and pays a transposing copy of the result; below about
// 256 input features that copy costs more than the repacking it saves (tiny config, hidden 64: decode
// 2.3 s -> 8.2 s with it, docs/BENCHMARKS.md), so narrow projections keep torch's linear.
constexpr int64_t kSkinnyMinInFeatures = 256;
}  // namespace

void set_skinny_rows(int64_t rows) { g_skinny_rows.store(rows, std::memory_order_relaxed); }

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const int64_t in = x.size(-1);
  const int64_t rows = in == 0 ? 0 : x.numel() / in;
  if (!x.device().is_cpu() || rows < 2 || rows > skinny_rows() || in < kSkinnyMinInFeatures)
    return torch::nn::functional::linear(x, weight, bias);
  auto out = weight.matmul(x.reshape({rows, in}).t()).t();  // [rows, out], weight as the left operand
  if (bias.defined()) out = out + bias;
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return out.contiguous().view(sizes);
}

torch::Tensor Linear::forward(const torch::Tensor& x) const { return model::linear(x, weight, bias); }

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
