#pragma once
// An 8-bit image in memory: rows top to bottom, pixels interleaved (RGB for decoded images).
#include <cstdint>
#include <vector>

namespace evoq::image {

struct Image8 {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<std::uint8_t> pixels;  // height * width * channels, row-major, channels interleaved

  Image8() = default;
  Image8(int w, int h, int c) : width(w), height(h), channels(c), pixels(std::size_t(w) * h * c) {}
  std::uint8_t* row(int y) { return pixels.data() + std::size_t(y) * width * channels; }
  const std::uint8_t* row(int y) const { return pixels.data() + std::size_t(y) * width * channels; }
};

}  // namespace evoq::image
