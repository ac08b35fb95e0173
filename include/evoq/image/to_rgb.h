#pragma once
// Pixel-format conversions to 8-bit RGB that reproduce Pillow's integer arithmetic, so images with
// alpha or 16-bit samples reach the resize step with the exact values PIL gives transformers.
#include <cstdint>

namespace evoq::image {

// One colour channel of Pillow's alpha_composite(src over an opaque white background).
std::uint8_t composite_over_white(std::uint8_t value, std::uint8_t alpha);

// The same for a colour already multiplied by alpha (OpenCV hands out 8-bit RGBA TIFFs that way,
// rounded as (value * alpha + 127) / 255): over white this is exactly premultiplied + 255 - alpha.
inline std::uint8_t composite_premultiplied_over_white(std::uint8_t premultiplied, std::uint8_t alpha) {
  const int v = int(premultiplied) + 255 - int(alpha);
  return static_cast<std::uint8_t>(v > 255 ? 255 : v);
}

// 16 -> 8 bits for colour channels (Pillow keeps the most significant byte).
inline std::uint8_t high_byte(std::uint16_t v) { return static_cast<std::uint8_t>(v >> 8); }

// 16 -> 8 bits for a lone grey channel (Pillow's "I;16" -> "RGB" conversion clips).
inline std::uint8_t clip_to_255(std::uint16_t v) { return static_cast<std::uint8_t>(v > 255 ? 255 : v); }

}  // namespace evoq::image
