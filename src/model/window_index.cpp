#include "evoq/model/window_index.h"

#include "evoq/core/error.h"

namespace evoq::model {

WindowLayout window_layout(const torch::Tensor& grid_thw, int64_t merge, int64_t window_size, int64_t patch_size) {
  const int64_t win = window_size / merge / patch_size;  // merged tokens per window side
  EVOQ_CHECK(win > 0, "window_size ", window_size, " is smaller than one merged token");
  auto grid = grid_thw.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t* g = grid.data_ptr<int64_t>();
  std::vector<int64_t> order;
  WindowLayout layout;
  int64_t offset = 0;
  const int64_t unit = merge * merge;
  for (int64_t i = 0; i < grid.size(0); ++i) {
    const int64_t t = g[3 * i], h = g[3 * i + 1] / merge, w = g[3 * i + 2] / merge;
    for (int64_t f = 0; f < t; ++f) {
      for (int64_t wy = 0; wy * win < h; ++wy) {
        for (int64_t wx = 0; wx * win < w; ++wx) {
          int64_t n = 0;
          for (int64_t y = wy * win; y < std::min(h, (wy + 1) * win); ++y)
            for (int64_t x = wx * win; x < std::min(w, (wx + 1) * win); ++x, ++n)
              order.push_back(offset + f * h * w + y * w + x);
          layout.window_tokens.push_back(n * unit);
        }
      }
    }
    offset += t * h * w;
  }
  layout.index = torch::tensor(order, torch::kInt64);
  return layout;
}

}  // namespace evoq::model
