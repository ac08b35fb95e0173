#include "evoq/model/mrope.h"

#include "evoq/core/error.h"

namespace evoq::model {

RopeIndex rope_index(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                     const torch::Tensor& grid_thw, int64_t image_token_id, int64_t merge) {
  auto ids = input_ids.to(torch::kCPU, torch::kInt64).contiguous();
  EVOQ_CHECK(ids.dim() == 2, "input_ids must have shape [batch, length]");
  const int64_t batch = ids.size(0), len = ids.size(1);
  torch::Tensor mask;
  if (attention_mask.defined()) {
    mask = attention_mask.to(torch::kCPU, torch::kInt64).contiguous();
    EVOQ_CHECK(mask.sizes() == ids.sizes(), "attention_mask shape ", mask.sizes(), " differs from input_ids ",
               ids.sizes());
  }
  torch::Tensor grid;
  int64_t num_images = 0;
  if (grid_thw.defined() && grid_thw.numel() > 0) {
    grid = grid_thw.to(torch::kCPU, torch::kInt64).contiguous();
    num_images = grid.size(0);
  }
  RopeIndex out;
  out.positions = torch::zeros({3, batch, len}, torch::kInt64);
  auto pos = out.positions.accessor<int64_t, 3>();
  const int64_t* id = ids.data_ptr<int64_t>();
  const int64_t* m = mask.defined() ? mask.data_ptr<int64_t>() : nullptr;
  int64_t image = 0;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> cols;  // non-padding columns
    for (int64_t j = 0; j < len; ++j)
      if (!m || m[b * len + j] != 0) cols.push_back(j);
    int64_t next = 0, max_pos = -1;
    for (size_t i = 0; i < cols.size();) {
      if (id[b * len + cols[i]] != image_token_id) {
        for (int a = 0; a < 3; ++a) pos[a][b][cols[i]] = next;
        max_pos = std::max(max_pos, next);
        ++next, ++i;
        continue;
      }
      EVOQ_CHECK(image < num_images, "input_ids contain more images than image_grid_thw rows (", num_images, ")");
      const int64_t t = grid[image][0].item<int64_t>(), h = grid[image][1].item<int64_t>() / merge,
                    w = grid[image][2].item<int64_t>() / merge;
      const int64_t tokens = t * h * w;
      EVOQ_CHECK(i + tokens <= cols.size(), "image ", image, " needs ", tokens, " image tokens but the sequence ends");
      for (int64_t f = 0; f < t; ++f)
        for (int64_t y = 0; y < h; ++y)
          for (int64_t x = 0; x < w; ++x, ++i) {
            const int64_t col = cols[i];
            EVOQ_CHECK(id[b * len + col] == image_token_id, "image ", image, " has fewer image tokens than its grid (",
                       tokens, ")");
            pos[0][b][col] = next + f;
            pos[1][b][col] = next + y;
            pos[2][b][col] = next + x;
            max_pos = std::max({max_pos, next + f, next + y, next + x});
          }
      next += std::max(h, w);
      ++image;
    }
    out.deltas.push_back(max_pos + 1 - static_cast<int64_t>(cols.size()));
  }
  EVOQ_CHECK(image == num_images, "image_grid_thw has ", num_images, " rows but input_ids contain ", image, " images");
  return out;
}

std::pair<torch::Tensor, torch::Tensor> mrope_cos_sin(const torch::Tensor& positions, int64_t head_dim, double theta,
                                                      const std::vector<int64_t>& section, torch::Dtype dtype) {
  auto device = positions.device();
  auto inv_freq =
      1.0 / torch::pow(theta, torch::arange(0, head_dim, 2, torch::kFloat32) / static_cast<double>(head_dim));
  auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq.to(device);  // [3, B, L, head_dim/2]
  std::vector<torch::Tensor> chunks;
  int64_t start = 0;
  for (size_t i = 0; i < section.size(); ++i) {
    chunks.push_back(freqs.select(0, static_cast<int64_t>(i % 3)).narrow(-1, start, section[i]));
    start += section[i];
  }
  auto half = torch::cat(chunks, -1);
  auto sin_half = half.sin();
  return {torch::cat({half, half}, -1).cos().to(dtype), torch::cat({-sin_half, sin_half}, -1).to(dtype)};
}

torch::Tensor rope_rotate(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& signed_sin) {
  const int64_t half = x.size(-1) / 2;
  auto swapped = torch::cat({x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return torch::addcmul(x * cos, swapped, signed_sin);
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& signed_sin) {
  return rope_rotate(x, cos.unsqueeze(1), signed_sin.unsqueeze(1));
}

}  // namespace evoq::model
