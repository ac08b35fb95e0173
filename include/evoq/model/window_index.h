#pragma once
// Qwen2.5-VL window attention layout: the merged-token grid of each frame is cut into windows of
// window_size pixels (window_size / (patch * merge) merged tokens per side, the last ones smaller);
// tokens are permuted into window order before the blocks and restored after the merger.
#include <torch/torch.h>

#include <vector>

namespace evoq::model {

struct WindowLayout {
  torch::Tensor index;                 // [num_merged_tokens] int64: window order -> original merged token
  std::vector<int64_t> window_tokens;  // patch tokens in each non-empty window, in window order
};

WindowLayout window_layout(const torch::Tensor& grid_thw, int64_t spatial_merge, int64_t window_size,
                           int64_t patch_size);

}  // namespace evoq::model
