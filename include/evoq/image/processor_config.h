#pragma once
// The image-processor settings of a Qwen2-VL / Qwen2.5-VL checkpoint (preprocessor_config.json).
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace evoq::image {

struct ProcessorConfig {
  // Pixel budget for smart_resize. The defaults are transformers' class defaults; released
  // checkpoints set their own (Qwen2-VL-2B: 3136 and 12845056).
  std::int64_t min_pixels = 56 * 56;
  std::int64_t max_pixels = 28 * 28 * 1280;
  int patch_size = 14;
  int temporal_patch_size = 2;
  int merge_size = 2;
  bool do_resize = true;
  bool do_rescale = true;
  bool do_normalize = true;
  double rescale_factor = 1.0 / 255.0;
  std::array<double, 3> image_mean{0.48145466, 0.4578275, 0.40821073};  // OpenAI CLIP
  std::array<double, 3> image_std{0.26862954, 0.26130258, 0.27577711};

  std::int64_t factor() const { return std::int64_t(patch_size) * merge_size; }
  // Values of one flattened patch row: channels x temporal frames x patch x patch (1176 for Qwen2-VL).
  std::int64_t patch_dim() const { return 3 * std::int64_t(temporal_patch_size) * patch_size * patch_size; }
};

// Parses preprocessor_config.json text. Pixel limits come from "min_pixels"/"max_pixels" when
// present, else from "size": {"shortest_edge", "longest_edge"} (newer files) or
// "size": {"min_pixels", "max_pixels"}; as in transformers, the top-level keys win.
// `source` names the file in errors.
ProcessorConfig parse_processor_config(const std::string& json_text, const std::string& source);

// Reads DIR/preprocessor_config.json; throws evoq::Error naming the file when it is missing or bad.
ProcessorConfig load_processor_config(const std::filesystem::path& model_dir);

// Applies command-line overrides of the pixel budget (validated: positive, min <= max).
void override_pixel_limits(ProcessorConfig& config, std::optional<std::int64_t> min_pixels,
                           std::optional<std::int64_t> max_pixels);

}  // namespace evoq::image
