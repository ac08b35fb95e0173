#include "evoq/image/resize.h"

#include <algorithm>
#include <cmath>

#include "evoq/core/error.h"

// Bit-exactness with Pillow needs the kernel evaluated with separate roundings: forbid fusing
// a*b+c into one FMA even when a build enables FMA instructions.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace evoq::image {

namespace {
constexpr double kSupport = 2.0;  // the cubic kernel is zero beyond |x| = 2

// Pillow clips through a table covering sums of -640..639 after the shift; values beyond cannot
// arise from normalised weights, and clamping gives the same answer inside that range.
inline std::uint8_t clip_fixed(std::int32_t sum) {
  const std::int32_t v = sum >> kResampleFractionBits;  // arithmetic shift: floor
  return static_cast<std::uint8_t>(std::clamp(v, 0, 255));
}

inline std::int32_t to_fixed(double w) {
  const double scaled = w * double(1 << kResampleFractionBits);
  return static_cast<std::int32_t>(w < 0 ? scaled - 0.5 : scaled + 0.5);  // truncation, as in Pillow
}
}  // namespace

double bicubic_kernel(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

ResampleTaps bicubic_taps(int in_size, int out_size) {
  if (in_size <= 0 || out_size <= 0) fail("cannot resize between sizes ", in_size, " and ", out_size);
  const double scale = double(in_size) / double(out_size);
  const double filter_scale = std::max(scale, 1.0);  // widen the kernel only when shrinking
  const double support = kSupport * filter_scale;
  const double inv_filter_scale = 1.0 / filter_scale;

  ResampleTaps taps;
  taps.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weights.assign(std::size_t(out_size) * taps.stride, 0);
  std::vector<double> w(taps.stride);
  for (int i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    // Pillow rounds the window ends by adding 0.5 and truncating toward zero.
    const int lo = std::max(0, static_cast<int>(center - support + 0.5));
    const int hi = std::min(in_size, static_cast<int>(center + support + 0.5));
    const int n = hi - lo;
    double total = 0.0;
    for (int j = 0; j < n; ++j) {
      w[j] = bicubic_kernel((j + lo - center + 0.5) * inv_filter_scale);
      total += w[j];
    }
    std::int32_t* row = taps.weights.data() + std::size_t(i) * taps.stride;
    for (int j = 0; j < n; ++j) row[j] = to_fixed(total != 0.0 ? w[j] / total : w[j]);
    taps.first[i] = lo;
    taps.count[i] = n;
  }
  return taps;
}

namespace {

// Horizontal pass over input rows [row0, row0 + out.height).
void resample_rows(const Image8& in, int row0, const ResampleTaps& taps, Image8& out) {
  const int c = in.channels;
  constexpr std::int32_t half = 1 << (kResampleFractionBits - 1);
  std::int32_t sums[4];
  for (int y = 0; y < out.height; ++y) {
    const std::uint8_t* src = in.row(row0 + y);
    std::uint8_t* dst = out.row(y);
    for (int x = 0; x < out.width; ++x) {
      const std::int32_t* k = taps.weights.data() + std::size_t(x) * taps.stride;
      const std::uint8_t* p = src + std::size_t(taps.first[x]) * c;
      for (int ch = 0; ch < c; ++ch) sums[ch] = half;
      for (int j = 0; j < taps.count[x]; ++j, p += c)
        for (int ch = 0; ch < c; ++ch) sums[ch] += p[ch] * k[j];
      for (int ch = 0; ch < c; ++ch) dst[x * c + ch] = clip_fixed(sums[ch]);
    }
  }
}

// Vertical pass; taps.first is relative to the first row of `in` minus row_offset.
void resample_columns(const Image8& in, int row_offset, const ResampleTaps& taps, Image8& out) {
  const std::size_t row_len = std::size_t(in.width) * in.channels;
  constexpr std::int32_t half = 1 << (kResampleFractionBits - 1);
  std::vector<std::int32_t> sums(row_len);
  for (int y = 0; y < out.height; ++y) {
    std::fill(sums.begin(), sums.end(), half);
    const std::int32_t* k = taps.weights.data() + std::size_t(y) * taps.stride;
    for (int j = 0; j < taps.count[y]; ++j) {
      const std::uint8_t* src = in.row(taps.first[y] - row_offset + j);
      const std::int32_t kj = k[j];
      for (std::size_t i = 0; i < row_len; ++i) sums[i] += src[i] * kj;
    }
    std::uint8_t* dst = out.row(y);
    for (std::size_t i = 0; i < row_len; ++i) dst[i] = clip_fixed(sums[i]);
  }
}

}  // namespace

bool vertical_pass_first(int in_width, int in_height, int out_width, int out_height) {
  // Pillow 13 (python-pillow PR 9549) shrinks the height first when it loses more than twice as
  // many rows as the width loses columns; found by comparing both orders against Pillow 13.0.0.
  return out_height < in_height && 2 * (in_width - out_width) < in_height - out_height;
}

Image8 resize_bicubic(const Image8& in, int out_width, int out_height, PassOrder order) {
  if (in.channels < 1 || in.channels > 4) fail("resize: unsupported channel count ", in.channels);
  if (out_width <= 0 || out_height <= 0) fail("resize: target size ", out_width, "x", out_height, " is empty");
  if (in.width <= 0 || in.height <= 0) fail("resize: source image is empty");
  const bool need_horizontal = in.width != out_width;
  const bool need_vertical = in.height != out_height;
  if (!need_horizontal && !need_vertical) return in;
  const ResampleTaps vertical = bicubic_taps(in.height, out_height);

  if (need_horizontal && need_vertical && order == PassOrder::pillow13 &&
      vertical_pass_first(in.width, in.height, out_width, out_height)) {
    Image8 shorter(in.width, out_height, in.channels);
    resample_columns(in, 0, vertical, shorter);
    Image8 out(out_width, out_height, in.channels);
    resample_rows(shorter, 0, bicubic_taps(in.width, out_width), out);
    return out;
  }

  // Horizontal first; only the input rows the vertical pass reads need the horizontal pass.
  const int row_first = need_vertical ? vertical.first.front() : 0;
  const int row_last = need_vertical ? vertical.first.back() + vertical.count.back() : in.height;
  Image8 wider;
  if (need_horizontal) {
    wider = Image8(out_width, row_last - row_first, in.channels);
    resample_rows(in, row_first, bicubic_taps(in.width, out_width), wider);
    if (!need_vertical) return wider;
  }
  Image8 out(out_width, out_height, in.channels);
  if (need_horizontal)
    resample_columns(wider, row_first, vertical, out);
  else
    resample_columns(in, 0, vertical, out);
  return out;
}

}  // namespace evoq::image
