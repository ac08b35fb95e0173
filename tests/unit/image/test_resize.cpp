// The bicubic resize's building blocks on hand-derived values (bit-exactness against Pillow itself
// is tested in tests/python/test_image_processor.py).
#include <gtest/gtest.h>

#include "evoq/image/resize.h"

using namespace evoq::image;

TEST(BicubicKernel, HandValues) {
  // a = -0.5: k(x) = 1.5|x|^3 - 2.5|x|^2 + 1 for |x| < 1, -0.5(|x|^3 - 5|x|^2 + 8|x| - 4) for |x| < 2.
  EXPECT_DOUBLE_EQ(bicubic_kernel(0.0), 1.0);
  EXPECT_DOUBLE_EQ(bicubic_kernel(0.5), 0.5625);
  EXPECT_DOUBLE_EQ(bicubic_kernel(-0.5), 0.5625);
  EXPECT_DOUBLE_EQ(bicubic_kernel(1.0), 0.0);
  EXPECT_DOUBLE_EQ(bicubic_kernel(1.5), -0.0625);
  EXPECT_DOUBLE_EQ(bicubic_kernel(2.0), 0.0);
  EXPECT_DOUBLE_EQ(bicubic_kernel(3.0), 0.0);
}

TEST(BicubicTaps, DoublingUsesQuarterOffsets) {
  // 4 -> 8: output 3 has centre 1.75; taps on inputs 0..3 at distances 1.25, 0.25, 0.75, 1.75.
  const ResampleTaps t = bicubic_taps(4, 8);
  EXPECT_EQ(t.stride, 5);  // ceil(support 2) * 2 + 1
  EXPECT_EQ(t.first[3], 0);
  EXPECT_EQ(t.count[3], 4);
  const double w[4] = {bicubic_kernel(1.25), bicubic_kernel(0.25), bicubic_kernel(0.75), bicubic_kernel(1.75)};
  const double sum = w[0] + w[1] + w[2] + w[3];
  for (int j = 0; j < 4; ++j) {
    const double scaled = w[j] / sum * (1 << 22);
    EXPECT_EQ(t.weights[3 * t.stride + j], static_cast<std::int32_t>(scaled < 0 ? scaled - 0.5 : scaled + 0.5));
  }
  // Near the border the window is clipped to the image: output 0 (centre 0.25) keeps inputs 0 and 1
  // (distances 0.25 and 1.25; the window's rounded end is int(0.25 + 2 + 0.5) = 2).
  EXPECT_EQ(t.first[0], 0);
  EXPECT_EQ(t.count[0], 2);
}

TEST(BicubicTaps, HalvingWidensSupport) {
  // 8 -> 4: scale 2, support 4, so up to 2 * ceil(4) + 1 = 9 taps; output 1 (centre 3) reads 0..6.
  const ResampleTaps t = bicubic_taps(8, 4);
  EXPECT_EQ(t.stride, 9);
  EXPECT_EQ(t.first[1], 0);
  EXPECT_EQ(t.count[1], 7);
}

TEST(ResizeBicubic, ConstantImageStaysConstant) {
  Image8 in(37, 23, 3);
  std::fill(in.pixels.begin(), in.pixels.end(), 201);
  for (auto [w, h] : {std::pair{56, 28}, {12, 40}, {37, 5}, {100, 23}}) {
    const Image8 out = resize_bicubic(in, w, h);
    ASSERT_EQ(out.width, w);
    ASSERT_EQ(out.height, h);
    for (auto v : out.pixels) ASSERT_EQ(v, 201);
  }
}

TEST(ResizeBicubic, SameSizeIsACopy) {
  Image8 in(5, 4, 3);
  for (std::size_t i = 0; i < in.pixels.size(); ++i) in.pixels[i] = std::uint8_t(i * 37);
  EXPECT_EQ(resize_bicubic(in, 5, 4).pixels, in.pixels);
}

TEST(ResizeBicubic, OvershootIsClipped) {
  // A step edge upscaled with a negative-lobe kernel overshoots; results must clip to 0..255.
  Image8 in(4, 1, 1);
  in.pixels = {0, 0, 255, 255};
  const Image8 out = resize_bicubic(in, 16, 1);
  EXPECT_EQ(out.pixels.front(), 0);
  EXPECT_EQ(out.pixels.back(), 255);
}

TEST(ResizePassOrder, Pillow13Rule) {
  EXPECT_TRUE(vertical_pass_first(83, 61, 84, 56));    // width grows, height shrinks
  EXPECT_FALSE(vertical_pass_first(61, 83, 56, 84));   // height grows
  EXPECT_FALSE(vertical_pass_first(100, 100, 80, 60)); // 2 * 20 == 40: not strictly more
  EXPECT_TRUE(vertical_pass_first(100, 100, 80, 59));
  EXPECT_FALSE(vertical_pass_first(100, 100, 120, 130));  // both grow
}
