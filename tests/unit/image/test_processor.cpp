// Processor config parsing, alpha compositing and the patch layout on hand-derived values.
#include <gtest/gtest.h>

#include "evoq/core/error.h"
#include "evoq/image/processor.h"
#include "evoq/image/to_rgb.h"

using namespace evoq::image;

TEST(CompositeOverWhite, HandValues) {
  for (int v = 0; v < 256; ++v) {
    EXPECT_EQ(composite_over_white(std::uint8_t(v), 255), v);  // opaque: unchanged
    EXPECT_EQ(composite_over_white(std::uint8_t(v), 0), 255);  // transparent: white
  }
  // v = 0, a = 128: weights 128*128 = 16384 and 128*255 - 16384 = 16256; 255 * 16256 + 16384 =
  // 4161664; Pillow's /255 by shifts: (4161664 >> 8) + 4161664 = 4177920, >> 8 = 16320, >> 7 = 127.
  EXPECT_EQ(composite_over_white(0, 128), 127);
  EXPECT_EQ(composite_premultiplied_over_white(0, 128), 127);
}

TEST(ProcessorConfig, ParsesQwen2VLFile) {
  const ProcessorConfig c = load_processor_config(EVOQ_TEST_DATA "/qwen2-vl-2b");
  EXPECT_EQ(c.min_pixels, 3136);
  EXPECT_EQ(c.max_pixels, 12845056);
  EXPECT_EQ(c.patch_size, 14);
  EXPECT_EQ(c.merge_size, 2);
  EXPECT_EQ(c.temporal_patch_size, 2);
  EXPECT_EQ(c.patch_dim(), 1176);
  EXPECT_DOUBLE_EQ(c.image_std[2], 0.27577711);
}

TEST(ProcessorConfig, SizeLayoutsAndPrecedence) {
  ProcessorConfig c = parse_processor_config(R"({"size": {"shortest_edge": 100, "longest_edge": 900}})", "t");
  EXPECT_EQ(c.min_pixels, 100);
  EXPECT_EQ(c.max_pixels, 900);
  c = parse_processor_config(R"({"size": {"min_pixels": 200, "max_pixels": 800}})", "t");
  EXPECT_EQ(c.min_pixels, 200);
  EXPECT_EQ(c.max_pixels, 800);
  c = parse_processor_config(R"({"size": {"shortest_edge": 100, "longest_edge": 900}, "max_pixels": 500})", "t");
  EXPECT_EQ(c.min_pixels, 100);
  EXPECT_EQ(c.max_pixels, 500);
  c = parse_processor_config("{}", "t");  // transformers' class defaults
  EXPECT_EQ(c.min_pixels, 56 * 56);
  EXPECT_EQ(c.max_pixels, 28 * 28 * 1280);
}

TEST(ProcessorConfig, Errors) {
  EXPECT_THROW(parse_processor_config("{", "f.json"), evoq::Error);
  EXPECT_THROW(parse_processor_config(R"({"min_pixels": -3})", "f.json"), evoq::Error);
  EXPECT_THROW(parse_processor_config(R"({"image_mean": [1, 2]})", "f.json"), evoq::Error);
  EXPECT_THROW(parse_processor_config(R"({"min_pixels": 10, "max_pixels": 5})", "f.json"), evoq::Error);
  EXPECT_THROW(load_processor_config("/nonexistent-dir"), evoq::Error);
  ProcessorConfig c;
  EXPECT_THROW(override_pixel_limits(c, 0, std::nullopt), evoq::UsageError);
  EXPECT_THROW(override_pixel_limits(c, 5000, 4000), evoq::UsageError);
  override_pixel_limits(c, 100, 200000);
  EXPECT_EQ(c.min_pixels, 100);
  EXPECT_EQ(c.max_pixels, 200000);
}

TEST(Processor, PatchLayoutByHand) {
  // 56x84 (W x H) needs no resize (both multiples of 28 and inside the pixel budget). With rescale
  // and normalisation off, each value is the pixel itself, so positions can be checked by hand.
  ProcessorConfig c;
  c.do_rescale = c.do_normalize = false;
  Image8 img(56, 84, 3);
  auto pixel = [](int y, int x, int ch) { return std::uint8_t((y * 3 + x * 5 + ch * 7) % 256); };
  for (int y = 0; y < 84; ++y)
    for (int x = 0; x < 56; ++x)
      for (int ch = 0; ch < 3; ++ch) img.row(y)[x * 3 + ch] = pixel(y, x, ch);
  const ProcessedImage p = preprocess_image(img, c);
  EXPECT_EQ(p.grid_thw, (std::array<std::int64_t, 3>{1, 6, 4}));
  EXPECT_EQ(p.rows, 24);
  EXPECT_EQ(p.cols, 1176);
  EXPECT_EQ(p.num_image_tokens, 6);
  auto at = [&](int row, int ch, int t, int py, int px) {
    return p.pixel_values[std::size_t(row) * 1176 + ((ch * 2 + t) * 14 + py) * 14 + px];
  };
  // Rows go window by window (2x2 patches each, raster inside), windows in raster order:
  // row 0 = patch (0,0), row 1 = patch (0,1), row 2 = patch (1,0), row 4 = patch (0,2), row 8 = (2,0).
  const int patch_of_row[][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 0}};
  for (int row = 0; row < 9; ++row) {
    const int py0 = patch_of_row[row][0] * 14, px0 = patch_of_row[row][1] * 14;
    for (int ch : {0, 2})
      for (int t : {0, 1})
        for (auto [py, px] : {std::pair{0, 0}, {3, 11}, {13, 13}})
          EXPECT_EQ(at(row, ch, t, py, px), pixel(py0 + py, px0 + px, ch)) << row;
  }
}

TEST(Processor, TokenCountWithoutPixels) {
  const ProcessorConfig c = load_processor_config(EVOQ_TEST_DATA "/qwen2-vl-2b");
  EXPECT_EQ(image_token_count(512, 768, c), 18 * 27);  // 504x756 -> 36x54 patches -> /4
  EXPECT_EQ(grid_for_size(70, 70, c), (std::array<std::int64_t, 3>{1, 4, 4}));
}
