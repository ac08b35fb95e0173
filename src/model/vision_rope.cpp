#include "evoq/model/vision_rope.h"

#include "evoq/model/layers.h"

namespace evoq::model {

torch::Tensor vision_patch_positions(const torch::Tensor& grid_thw, int64_t merge) {
  auto grid = grid_thw.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t* g = grid.data_ptr<int64_t>();
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < grid.size(0); ++i) {
    const int64_t t = g[3 * i], h = g[3 * i + 1], w = g[3 * i + 2];
    auto rows = torch::arange(h).view({h, 1}).expand({h, w});
    auto cols = torch::arange(w).view({1, w}).expand({h, w});
    // [h/m, m, w/m, m] -> [h/m, w/m, m, m]: merge blocks row-major, patches inside a block row-major.
    auto block = [&](const torch::Tensor& p) {
      return p.reshape({h / merge, merge, w / merge, merge}).permute({0, 2, 1, 3}).reshape({-1});
    };
    auto pos = torch::stack({block(rows), block(cols)}, 1);
    parts.push_back(pos.repeat({t, 1}));
  }
  return torch::cat(parts, 0);
}

std::pair<torch::Tensor, torch::Tensor> vision_rope_cos_sin(const torch::Tensor& positions, int64_t head_dim,
                                                            double theta, torch::Device device) {
  const int64_t spatial = head_dim / 2;  // half of the head for rows, half for columns
  auto inv_freq =
      1.0 / torch::pow(theta, (torch::arange(0, spatial, 2, torch::kFloat32) / static_cast<double>(spatial)));
  auto pos = positions.to(device, torch::kFloat32);
  inv_freq = inv_freq.to(torch::kFloat32).to(device);
  auto freqs = pos.unsqueeze(-1) * inv_freq;                            // [N, 2, spatial/2]
  auto hw = torch::cat({freqs.select(1, 0), freqs.select(1, 1)}, -1);   // [N, spatial]
  auto full = torch::cat({hw, hw}, -1);                                 // [N, head_dim]
  return {full.cos(), full.sin()};
}

torch::Tensor apply_vision_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  auto xf = x.to(torch::kFloat32);
  auto c = cos.unsqueeze(-2), s = sin.unsqueeze(-2);
  return (xf * c + rotate_half(xf) * s).to(x.scalar_type());
}

}  // namespace evoq::model
