#pragma once
// Bicubic resize of 8-bit images, bit-identical to Pillow's Image.resize(size, Image.BICUBIC)
// (the resize transformers' slow image processors use). OpenCV's INTER_CUBIC (a = -0.75, no
// antialiasing) gives different pixels, hence this separate implementation of Pillow's algorithm:
// cubic kernel with a = -0.5 and support 2, widened by in/out when shrinking (antialiasing);
// per-output-pixel weights normalised to sum 1 and rounded to 22-bit fixed point; a horizontal
// pass, then a vertical one, each skipped when that dimension does not change; results rounded
// and clipped to 0..255. No box argument and no reducing_gap (Image.resize's defaults).
// Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many pixels
// as the width (see vertical_pass_first); the two orders round differently, so this is part of
// being bit-exact. Older Pillow always went horizontal first (PassOrder::horizontal_first).
#include <cstdint>
#include <vector>

#include "evoq/image/rgb_image.h"

namespace evoq::image {

// Pillow's separable filter for one axis: for output index i, `count[i]` weights starting at input
// index `first[i]`, stored in row i of `weights` (row length `stride`), as 22-bit fixed point.
struct ResampleTaps {
  int stride = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<std::int32_t> weights;
};

inline constexpr int kResampleFractionBits = 22;  // Pillow's PRECISION_BITS for 8-bit images

// Pillow's bicubic kernel, a = -0.5.
double bicubic_kernel(double x);

// The taps mapping `in_size` samples onto `out_size` samples along one axis.
ResampleTaps bicubic_taps(int in_size, int out_size);

enum class PassOrder {
  pillow13,          // the order Pillow >= 13 picks (the pinned oracle)
  horizontal_first,  // Pillow <= 12
};

// Whether Pillow 13 resamples the rows (vertical pass) before the columns for this size change.
bool vertical_pass_first(int in_width, int in_height, int out_width, int out_height);

// Resizes an interleaved 8-bit image (1 to 4 channels) to out_width x out_height.
Image8 resize_bicubic(const Image8& in, int out_width, int out_height, PassOrder order = PassOrder::pillow13);

}  // namespace evoq::image
