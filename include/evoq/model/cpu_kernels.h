#pragma once
// Hand-written CPU kernels for bf16 inference where LibTorch spends its time in many small passes: the
// decode step of K samples (docs/BENCHMARKS.md, issue 19 section 7). Each returns nullopt where it does not
// apply (another device or dtype, a gradient to record), and the caller then computes the same thing with
// torch's ops. AVX-512 on CPUs that have it, the same operations in scalar code elsewhere (equal bits).
#include <torch/torch.h>

#include <optional>
#include <utility>
#include <vector>

namespace evoq::model {

// RMSNorm as at::rms_norm computes it in bf16: y = bf16(x / sqrt(mean(x^2) + eps) * w), all in float32
// with one rounding. x [..., D] and w [D] bf16 on the CPU, nothing requiring a gradient under grad mode.
// Only the float32 sum of squares is summed in another order than torch's (16 lanes, then across them).
std::optional<torch::Tensor> cpu_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// The n largest values of each row of x [B, V] (float32 or bf16, CPU) as float32, in descending order,
// and their columns (int64); among equal values the lower column comes first. One pass over each row
// with a heap of n, where torch.topk sorts. nullopt for a row holding NaN (torch.topk ranks NaN above
// everything) and where n is not small against V (n > 1024 or 8 n > V).
std::optional<std::pair<torch::Tensor, torch::Tensor>> cpu_top_values(const torch::Tensor& x, int64_t n);

// softmax over the last dimension of cat(a, b) (float32, same leading sizes), rounded to bf16: the decode
// attention's probabilities over a row's prompt and own keys, as torch's cat, softmax and cast compute them
// (exp within about one float ulp of torch's, sums in another order: rarely one bf16 rounding apart).
std::optional<torch::Tensor> cpu_softmax_bf16(const torch::Tensor& a, const torch::Tensor& b);

// The inverse-CDF draw from softmax(x) of each row of x [B, V] (float32 or bf16, CPU), u one uniform per
// row: weights w = exp(x - max x) in float32 (evoq's exp), float32 sums of blocks of `block` columns
// accumulated in float64 pick the block, a float64 running sum inside it picks the first column where the
// sum exceeds u * total (if rounding leaves the target beyond it, the block's last column of positive
// weight). Returns the columns [B] int64 and log softmax(x) there [B] float32; nullopt where a row has no
// positive mass (all -inf, NaN or +inf: the caller reports it).
std::optional<std::pair<torch::Tensor, torch::Tensor>> cpu_softmax_draw(const torch::Tensor& x,
                                                                        const std::vector<double>& uniforms,
                                                                        int64_t block);

// Off: every kernel above returns nullopt, so torch's ops run (EVOQ_CPU_KERNELS=0 for the binary, an A/B
// knob like EVOQ_PACKED_WEIGHTS). Off for simd: the scalar code on every CPU (tests compare both paths).
void set_cpu_kernels(bool on);
bool cpu_kernels_enabled();
void set_cpu_kernels_simd(bool on);

}  // namespace evoq::model
