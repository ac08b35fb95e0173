#pragma once
// Qwen2-VL / Qwen2.5-VL image preprocessing: the vision tower's input for one image, identical to
// transformers' slow (PIL) Qwen2VLImageProcessor: smart_resize, Pillow bicubic resize, x * 1/255,
// (x - mean) / std per channel, the frame repeated to temporal_patch_size, and the patches
// flattened in merge-window order.
#include <array>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "evoq/image/processor_config.h"
#include "evoq/image/rgb_image.h"
#include "evoq/image/smart_resize.h"

namespace evoq::image {

struct ProcessedImage {
  std::vector<float> pixel_values;    // rows x cols, row-major
  std::int64_t rows = 0;              // number of patches: t * h * w
  std::int64_t cols = 0;              // 3 * temporal_patch_size * patch_size^2 (1176)
  std::array<std::int64_t, 3> grid_thw{0, 0, 0};  // frames, patch rows, patch columns
  std::int64_t num_image_tokens = 0;  // <|image_pad|> tokens after merging: t*h*w / merge_size^2
};

// The size the image is resized to (its size unchanged when the config disables resizing).
Size2 target_size(std::int64_t height, std::int64_t width, const ProcessorConfig& config);

// grid_thw and number of image tokens for an image of this size, without touching pixels.
std::array<std::int64_t, 3> grid_for_size(std::int64_t height, std::int64_t width, const ProcessorConfig& config);
std::int64_t image_token_count(std::int64_t height, std::int64_t width, const ProcessorConfig& config);

// Preprocesses one decoded RGB image.
ProcessedImage preprocess_image(const Image8& rgb, const ProcessorConfig& config);

// Decodes the file and preprocesses it.
ProcessedImage preprocess_file(const std::filesystem::path& path, const ProcessorConfig& config);

}  // namespace evoq::image
