#include "evoq/image/smart_resize.h"

#include <algorithm>
#include <cmath>

#include "evoq/core/error.h"

namespace evoq::image {

namespace {
// Python's round(): nearest integer, ties to even (std::nearbyint in the default rounding mode).
std::int64_t round_half_even(double x) { return static_cast<std::int64_t>(std::nearbyint(x)); }
}  // namespace

Size2 smart_resize(std::int64_t height, std::int64_t width, std::int64_t factor, std::int64_t min_pixels,
                   std::int64_t max_pixels) {
  if (height <= 0 || width <= 0) fail("image size ", width, "x", height, " is empty");
  if (factor <= 0) fail("resize factor ", factor, " must be positive");
  const double ratio = double(std::max(height, width)) / double(std::min(height, width));
  if (ratio > 200.0)
    fail("image of ", width, "x", height, " pixels has aspect ratio ", ratio, "; it must not exceed 200");
  // The operations below are done in doubles in the same order as transformers so that the
  // floor/ceil decisions agree to the last bit.
  const double f = double(factor);
  std::int64_t h_bar = round_half_even(double(height) / f) * factor;
  std::int64_t w_bar = round_half_even(double(width) / f) * factor;
  if (h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt(double(height * width) / double(max_pixels));
    h_bar = std::max(factor, static_cast<std::int64_t>(std::floor(double(height) / beta / f)) * factor);
    w_bar = std::max(factor, static_cast<std::int64_t>(std::floor(double(width) / beta / f)) * factor);
  } else if (h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(double(min_pixels) / double(height * width));
    h_bar = static_cast<std::int64_t>(std::ceil(double(height) * beta / f)) * factor;
    w_bar = static_cast<std::int64_t>(std::ceil(double(width) * beta / f)) * factor;
  }
  return {h_bar, w_bar};
}

}  // namespace evoq::image
