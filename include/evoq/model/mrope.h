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

// cos/sin [B, L, head_dim] for positions [3, B, L]: angles in fp32, then cast to `dtype`.
std::pair<torch::Tensor, torch::Tensor> mrope_cos_sin(const torch::Tensor& positions, int64_t head_dim, double theta,
                                                      const std::vector<int64_t>& section, torch::Dtype dtype);

// x [B, heads, L, head_dim] rotated by cos/sin [B, L, head_dim].
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace evoq::model
