#include "evoq/image/to_rgb.h"

namespace evoq::image {

namespace {
// Pillow divides by 255 with a shift-and-add; its result differs from exact division in places.
constexpr std::uint32_t shift_div255(std::uint32_t x) { return ((x >> 8) + x) >> 8; }
constexpr int kExtraBits = 7;  // fractional bits Pillow carries in the blend coefficients
}  // namespace

// Pillow's alpha_composite with an opaque white destination: the destination weight
// dst_a * (255 - a) makes the output alpha exactly 255*255, so the source coefficient is a * 2^7.
std::uint8_t composite_over_white(std::uint8_t value, std::uint8_t alpha) {
  if (alpha == 0) return 255;  // fully transparent: the background shows through unchanged
  const std::uint32_t src_weight = std::uint32_t(alpha) * 255u * 255u * (1u << kExtraBits) / (255u * 255u);
  const std::uint32_t dst_weight = 255u * (1u << kExtraBits) - src_weight;
  const std::uint32_t mixed = value * src_weight + 255u * dst_weight;
  return static_cast<std::uint8_t>(shift_div255(mixed + (0x80u << kExtraBits)) >> kExtraBits);
}

}  // namespace evoq::image
