#pragma once
// Qwen2-VL's choice of the resized image size (transformers' smart_resize).
#include <cstdint>

namespace evoq::image {

struct Size2 {
  std::int64_t height = 0;
  std::int64_t width = 0;
  bool operator==(const Size2&) const = default;
};

// Both sides become multiples of `factor` (patch_size * merge_size, 28 for Qwen2-VL): each side is
// rounded to the nearest multiple (ties to even, like Python's round); if the area then exceeds
// max_pixels both sides shrink by sqrt(h*w/max_pixels) rounding down (never below `factor`), if
// it is under min_pixels they grow by sqrt(min_pixels/(h*w)) rounding up.
// Throws evoq::Error when the aspect ratio exceeds 200 or a size is not positive.
Size2 smart_resize(std::int64_t height, std::int64_t width, std::int64_t factor, std::int64_t min_pixels,
                   std::int64_t max_pixels);

}  // namespace evoq::image
