#include "evoq/image/processor.h"

#include "evoq/core/error.h"
#include "evoq/image/decode.h"
#include "evoq/image/resize.h"

namespace evoq::image {

Size2 target_size(std::int64_t height, std::int64_t width, const ProcessorConfig& config) {
  if (!config.do_resize) {
    if (height % config.factor() != 0 || width % config.factor() != 0)
      fail("image of ", width, "x", height, " pixels is not a multiple of ", config.factor(),
           " and the processor config disables resizing");
    return {height, width};
  }
  return smart_resize(height, width, config.factor(), config.min_pixels, config.max_pixels);
}

std::array<std::int64_t, 3> grid_for_size(std::int64_t height, std::int64_t width, const ProcessorConfig& config) {
  const Size2 s = target_size(height, width, config);
  return {1, s.height / config.patch_size, s.width / config.patch_size};
}

std::int64_t image_token_count(std::int64_t height, std::int64_t width, const ProcessorConfig& config) {
  const auto g = grid_for_size(height, width, config);
  return g[0] * g[1] * g[2] / (std::int64_t(config.merge_size) * config.merge_size);
}

namespace {

// transformers' rescale then normalize, with its precisions: the rescale is done in double and
// stored as float32; mean and std are cast to float32 and (x - mean) / std is computed in float32.
std::array<float, 256> channel_lut(const ProcessorConfig& config, int channel) {
  std::array<float, 256> lut{};
  const float mean = static_cast<float>(config.image_mean[channel]);
  const float std_dev = static_cast<float>(config.image_std[channel]);
  for (int v = 0; v < 256; ++v) {
    float x = config.do_rescale ? static_cast<float>(double(v) * config.rescale_factor) : float(v);
    if (config.do_normalize) x = (x - mean) / std_dev;
    lut[v] = x;
  }
  return lut;
}

}  // namespace

ProcessedImage preprocess_image(const Image8& rgb, const ProcessorConfig& config) {
  if (rgb.channels != 3) fail("preprocess: expected an RGB image, got ", rgb.channels, " channels");
  const Size2 size = target_size(rgb.height, rgb.width, config);
  const Image8 resized = resize_bicubic(rgb, int(size.width), int(size.height));

  const int p = config.patch_size, m = config.merge_size, t_frames = config.temporal_patch_size;
  const std::int64_t grid_h = size.height / p, grid_w = size.width / p;
  ProcessedImage out;
  out.grid_thw = {1, grid_h, grid_w};
  out.rows = grid_h * grid_w;
  out.cols = config.patch_dim();
  out.num_image_tokens = out.rows / (std::int64_t(m) * m);
  out.pixel_values.resize(std::size_t(out.rows * out.cols));

  const std::array<std::array<float, 256>, 3> lut{channel_lut(config, 0), channel_lut(config, 1),
                                                   channel_lut(config, 2)};
  // Row order: merge windows in raster order, and inside each window its m x m patches in raster
  // order. Column order: channel, frame (the one frame repeated), pixel row, pixel column.
  float* dst = out.pixel_values.data();
  for (std::int64_t wy = 0; wy < grid_h / m; ++wy)
    for (std::int64_t wx = 0; wx < grid_w / m; ++wx)
      for (int my = 0; my < m; ++my)
        for (int mx = 0; mx < m; ++mx) {
          const std::int64_t y0 = (wy * m + my) * p, x0 = (wx * m + mx) * p;
          for (int c = 0; c < 3; ++c) {
            float* first_frame = dst;
            for (int py = 0; py < p; ++py) {
              const std::uint8_t* src = resized.row(int(y0 + py)) + x0 * 3 + c;
              for (int px = 0; px < p; ++px) *dst++ = lut[c][src[px * 3]];
            }
            for (int t = 1; t < t_frames; ++t) {
              std::copy(first_frame, first_frame + p * p, dst);
              dst += p * p;
            }
          }
        }
  return out;
}

ProcessedImage preprocess_file(const std::filesystem::path& path, const ProcessorConfig& config) {
  const Image8 rgb = load_rgb(path);
  try {
    return preprocess_image(rgb, config);
  } catch (const Error& e) {
    fail("image file '", path.string(), "': ", e.what());
  }
}

}  // namespace evoq::image
