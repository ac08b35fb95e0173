#pragma once
// bf16 inference on the CPU: oneDNN's matmul, which torch's linear calls in bf16, copies the weight (its
// right-hand operand) into oneDNN's blocked layout on every call. For a decode step of a few rows that copy
// costs about as much as the product. This keeps one packed copy per weight (oneDNN's own layout, made by
// mkldnn::_reorder_linear_weight) and multiplies with mkldnn::_linear_pointwise: the same kernels and values
// as torch's linear on 2-D inputs; with a bias on 3-D inputs one rounding where torch's matmul + add has two
// (tests/unit/model/test_packed_linear.cpp). Decode GEMMs of the small config 1.2-2x faster (docs/BENCHMARKS.md).
//
// Only where nothing needs a gradient (grad mode off) and autocast is off, with x, W (and b, residual) bf16 on
// the CPU and at least 2 rows. A packed copy is made again when its weight changes (version counter or
// storage) and dropped when its weight dies. The copies cost one more weight's worth of memory per packed
// weight; set_packed_weights(false) turns packing off (EVOQ_PACKED_WEIGHTS=0 for the binary, src/apps/main.cpp).
#include <torch/torch.h>

#include <cstdint>
#include <optional>

namespace evoq::model {

void set_packed_weights(bool on);
bool packed_weights_enabled();

// x W^T + b (+ residual, same shape as the result) through W's packed copy, or nullopt when the conditions
// above do not hold (the caller then computes it as before). If oneDNN's ops are missing or throw on this
// CPU, packing turns itself off for the process.
std::optional<torch::Tensor> packed_linear(const torch::Tensor& x, const torch::Tensor& weight,
                                           const torch::Tensor& bias = {}, const torch::Tensor& residual = {});

// Packs weight now if it is one packed_linear would pack (bf16, CPU, 2-D, packing on); true if it did or
// already had. For loading (QwenVL::pack_linear_weights): the first forward then finds it packed.
bool prepack_weight(const torch::Tensor& weight);

// Drops weight's packed copy now (a dying model's: QwenVL's destructor); a later product packs it again.
void drop_packed_weight(const torch::Tensor& weight);

// Packed copies held now (of live weights; those of dead ones are dropped first), and how many were made since the start (tests).
int64_t packed_weight_count();
int64_t packed_weight_packs();

}  // namespace evoq::model
