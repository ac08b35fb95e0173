#pragma once
// Small building blocks whose parameters are created with explicit TensorOptions (dtype, device, or
// meta) and left uninitialised: the weights always come from a checkpoint.
#include <torch/torch.h>

#include <string>

namespace evoq::model {

// x [..., in] -> x W^T + b [..., out]. On CPU in fp32 with few rows (the decode step of K samples), MKL's
// sgemm repacks the whole weight on every call when the weight is the right-hand operand; (W x^T)^T puts
// it on the left and measured 20-35% faster for 8-32 rows (docs/BENCHMARKS.md, "skinny projections").
// Same values up to summation order; other shapes, dtypes (bf16 runs through oneDNN) and devices call
// torch's linear.
inline constexpr int64_t kSkinnyRows = 48;
// Overrides kSkinnyRows for the whole process (0 turns the weight-left product off): a benchmark knob,
// set by the binary from EVOQ_SKINNY_ROWS (src/apps/main.cpp) or by a benchmark's option, never read from
// the environment here.
void set_skinny_rows(int64_t rows);
int64_t skinny_rows();
#define EVOQ_HAS_SKINNY_ROWS_SETTING 1

// contiguous = false lets the weight-left product return its [rows, out] result as a transposed view
// (no copy) for a caller whose next ops read any layout (the decode step's q/k/v and gate/up).
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {},
                     bool contiguous = true);

// residual + x W^T as one GEMM with accumulation (addmm): one rounding of the sum instead of two.
// Under autocast (whose addmm would round the residual stream to bf16) it is residual + linear(x).
torch::Tensor linear_add(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& residual);

class Linear : public torch::nn::Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, torch::TensorOptions options);
  // Parameters that are views of a caller's storage (fused projections: decoder_layer.h).
  Linear(const torch::Tensor& weight_view, const torch::Tensor& bias_view);
  torch::Tensor forward(const torch::Tensor& x) const;
  torch::Tensor weight, bias;  // [out, in], [out] (bias undefined when absent)
};

// Qwen2 RMSNorm: x / sqrt(mean(x^2) + eps) * weight in fp32. Same dtypes: at::rms_norm (one fused
// kernel on CUDA; rounds once, where transformers rounds the normalised x to the input dtype before
// the scale: equal in fp32, within one bf16 rounding in bf16). Mixed dtypes (bf16 input, fp32 weight
// under autocast): transformers' formula, whose result has the promoted dtype. bf16 inference on the CPU:
// cpu_rms_norm (cpu_kernels.h), at::rms_norm's values in one pass.
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
