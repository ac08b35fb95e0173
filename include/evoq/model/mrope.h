#pragma once
// Multimodal RoPE (M-RoPE) of the Qwen2-VL decoder. Text tokens carry the same position on the
// temporal, height and width axes; the tokens of an image with merged grid (t, h, w) carry
// (start + frame, start + row, start + col), and the text after it continues at start + max(h, w).
// The head dimension's frequencies are split into contiguous mrope_section chunks, one per axis.
#include <torch/torch.h>

#include <utility>
#include <vector>

namespace evoq::model {

struct RopeIndex {
  torch::Tensor positions;      // [3, B, L] int64 (CPU); padding positions are 0
  std::vector<int64_t> deltas;  // per row: max position + 1 - number of tokens
};

// get_rope_index: input_ids [B, L]; attention_mask [B, L] or undefined; grid_thw [num_images, 3] or
// undefined (images consumed in order across the batch). Throws evoq::Error when the image tokens do
// not match the grids.
RopeIndex rope_index(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                     const torch::Tensor& grid_thw, int64_t image_token_id, int64_t spatial_merge);

// cos and signed sin [B, L, head_dim] for positions [3, B, L]: angles in fp32, then cast to `dtype`.
// The sin table's first half is negated so that rotate_half(x) * sin = swap_halves(x) * signed_sin:
// RoPE is then one multiply, one concatenation and one addcmul (the decode step runs it per layer).
std::pair<torch::Tensor, torch::Tensor> mrope_cos_sin(const torch::Tensor& positions, int64_t head_dim, double theta,
                                                      const std::vector<int64_t>& section, torch::Dtype dtype);

// x * cos + swap_halves(x) * signed_sin with cos/signed_sin broadcastable to x [..., head_dim]. In fp32
// the values are transformers' x * cos + rotate_half(x) * sin; in bf16 the second product and the sum
// are rounded once instead of twice.
torch::Tensor rope_rotate(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& signed_sin);

// x [B, heads, L, head_dim] rotated by the tables [B, L, head_dim] of mrope_cos_sin.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& signed_sin);

}  // namespace evoq::model
