#pragma once
// 2-D rotary embedding of the vision tower: each patch rotates half of its head dimension by its row
// and half by its column (theta 10000), cos/sin computed and applied in fp32.
#include <torch/torch.h>

#include <utility>

namespace evoq::model {

// (row, col) of every patch, [N, 2] int64, in the order the image processor emits patches: image after
// image, frame after frame, spatial_merge x spatial_merge blocks row-major, patches inside a block
// row-major. grid_thw: [num_images, 3] int64 on the CPU.
torch::Tensor vision_patch_positions(const torch::Tensor& grid_thw, int64_t spatial_merge);

// cos and sin [N, head_dim] float32 on `device`.
std::pair<torch::Tensor, torch::Tensor> vision_rope_cos_sin(const torch::Tensor& positions, int64_t head_dim,
                                                            double theta, torch::Device device);

// Rotates x [N, heads, head_dim] in fp32 and casts back to x's dtype.
torch::Tensor apply_vision_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace evoq::model
