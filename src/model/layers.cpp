#include "evoq/model/layers.h"

#include <ATen/autocast_mode.h>

#include <atomic>

#include "evoq/core/error.h"
#include "evoq/model/cpu_kernels.h"
#include "evoq/model/packed_linear.h"

namespace evoq::model {

Linear::Linear(int64_t in, int64_t out, bool with_bias, torch::TensorOptions options) {
  weight = register_parameter("weight", torch::empty({out, in}, options));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}, options));
}

Linear::Linear(const torch::Tensor& weight_view, const torch::Tensor& bias_view) {
  weight = register_parameter("weight", weight_view);
  if (bias_view.defined()) bias = register_parameter("bias", bias_view);
}

namespace {
std::atomic<int64_t> g_skinny_rows{kSkinnyRows};

// The weight-left product returns [out, rows] and pays a transposing copy of the result; below about
// 256 input features that copy costs more than the repacking it saves (tiny config, hidden 64: decode
// 2.3 s -> 8.2 s with it, docs/BENCHMARKS.md), so narrow projections keep torch's linear.
constexpr int64_t kSkinnyMinInFeatures = 256;

bool autocast_on(const torch::Tensor& x) {
  return at::autocast::is_autocast_enabled(x.device().type());
}

// Only for weights at least as tall as wide: with more inputs than outputs (the MLP's down projection,
// 896 x 4864) the weight-left product took 2.1x torch's time at 4 rows (docs/BENCHMARKS.md).
// Only in fp32 (MKL's sgemm, whose weight repacking it avoids): bf16 goes to oneDNN, where it made the
// small config's decode 8-43 % slower at 8-24 rows and was no faster at 32 (BENCHMARKS, issue 19 section 4).
bool weight_left(const torch::Tensor& x, int64_t rows, int64_t in, int64_t out) {
  return x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && !autocast_on(x) && rows >= 2 &&
         rows <= skinny_rows() && in >= kSkinnyMinInFeatures && out >= in;
}

}  // namespace

void set_skinny_rows(int64_t rows) { g_skinny_rows.store(rows, std::memory_order_relaxed); }
int64_t skinny_rows() { return g_skinny_rows.load(std::memory_order_relaxed); }

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     bool contiguous) {
  const int64_t in = x.size(-1);
  const int64_t rows = in == 0 ? 0 : x.numel() / in;
  if (auto packed = packed_linear(x, weight, bias)) return *packed;  // bf16 inference on the CPU
  if (!weight_left(x, rows, in, weight.size(0))) return torch::nn::functional::linear(x, weight, bias);
  auto x2 = x.reshape({rows, in});
  // [out, rows], weight as the left operand
  auto out = bias.defined() ? torch::addmm(bias.unsqueeze(1), weight, x2.t()) : weight.matmul(x2.t());
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  if (!contiguous && x.dim() == 2) return out.t();
  return out.t().contiguous().view(sizes);
}

torch::Tensor linear_add(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& residual) {
  if (autocast_on(x) || x.scalar_type() != residual.scalar_type()) return residual + model::linear(x, weight);
  if (auto packed = packed_linear(x, weight, {}, residual)) return *packed;
  const int64_t in = x.size(-1), out_features = weight.size(0);
  const int64_t rows = in == 0 ? 0 : x.numel() / in;
  auto x2 = x.reshape({rows, in});
  auto r2 = residual.reshape({rows, out_features});
  torch::Tensor out;
  if (weight_left(x, rows, in, out_features))
    out = torch::addmm(r2.t(), weight, x2.t()).t().contiguous();  // [out, rows] accumulated, then [rows, out]
  else
    out = torch::addmm(r2, x2, weight.t());
  return out.view(residual.sizes());
}

torch::Tensor Linear::forward(const torch::Tensor& x) const { return model::linear(x, weight, bias); }

RMSNorm::RMSNorm(int64_t dim, double eps_, torch::TensorOptions options) : eps(eps_) {
  weight = register_parameter("weight", torch::empty({dim}, options));
}

torch::Tensor RMSNorm::forward(const torch::Tensor& x) const {
  if (auto fused = cpu_rms_norm(x, weight, eps)) return *fused;  // bf16 inference on the CPU
  if (x.scalar_type() == weight.scalar_type()) return at::rms_norm(x, {weight.size(0)}, weight, eps);
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
