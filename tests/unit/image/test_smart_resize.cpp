// smart_resize on hand-derived cases (factor 28, Qwen2-VL-2B's min 3136 / max 12845056 unless noted).
#include <gtest/gtest.h>

#include "evoq/core/error.h"
#include "evoq/image/smart_resize.h"

using evoq::image::Size2;
using evoq::image::smart_resize;

namespace {
constexpr std::int64_t kMin = 3136, kMax = 12845056;
Size2 hw(std::int64_t h, std::int64_t w) { return {h, w}; }
}  // namespace

TEST(SmartResize, RoundsHalfToEven) {
  EXPECT_EQ(smart_resize(70, 70, 28, kMin, kMax), hw(56, 56));     // 2.5 -> 2
  EXPECT_EQ(smart_resize(126, 98, 28, kMin, kMax), hw(112, 112));  // 4.5 -> 4, 3.5 -> 4
  EXPECT_EQ(smart_resize(42, 154, 28, kMin, kMax), hw(56, 168));   // 1.5 -> 2, 5.5 -> 6
}

TEST(SmartResize, NearestMultipleOtherwise) {
  EXPECT_EQ(smart_resize(83, 61, 28, kMin, kMax), hw(84, 56));     // 2.96 -> 3, 2.18 -> 2
  EXPECT_EQ(smart_resize(333, 500, 28, kMin, kMax), hw(336, 504)); // 11.89 -> 12, 17.86 -> 18
  EXPECT_EQ(smart_resize(512, 768, 28, kMin, kMax), hw(504, 756)); // 18.29 -> 18, 27.43 -> 27
  EXPECT_EQ(smart_resize(56, 56, 28, kMin, kMax), hw(56, 56));
}

TEST(SmartResize, GrowsToMinPixelsRoundingUp) {
  // 14x14: rounds to 0x0 (< min): beta = sqrt(3136 / 196) = 4, ceil(14 * 4 / 28) = 2 -> 56.
  EXPECT_EQ(smart_resize(14, 14, 28, kMin, kMax), hw(56, 56));
  // 1x1: beta = 56, ceil(56 / 28) = 2.
  EXPECT_EQ(smart_resize(1, 1, 28, kMin, kMax), hw(56, 56));
  // 2x400 (aspect exactly 200): beta = sqrt(3136 / 800) = 1.9799; ceil(0.1414) = 1, ceil(28.28) = 29.
  EXPECT_EQ(smart_resize(2, 400, 28, kMin, kMax), hw(28, 812));
}

TEST(SmartResize, ShrinksToMaxPixelsRoundingDown) {
  // 1000x2000 with max 78400: rounds to 1008x1988 (> max); beta = sqrt(2e6 / 78400) = 5.0508;
  // floor(1000 / 5.0508 / 28) = floor(7.07) = 7, floor(2000 / 5.0508 / 28) = floor(14.14) = 14.
  EXPECT_EQ(smart_resize(1000, 2000, 28, kMin, 78400), hw(196, 392));
  // Never below one factor: 30x3000 with max 2000: beta = 6.708; floor(0.16) = 0 -> 28, floor(15.97) = 15.
  EXPECT_EQ(smart_resize(30, 3000, 28, 100, 2000), hw(28, 420));
}

TEST(SmartResize, RejectsAspectRatioOver200) {
  EXPECT_THROW(smart_resize(1, 201, 28, kMin, kMax), evoq::Error);
  EXPECT_THROW(smart_resize(402, 2, 28, kMin, kMax), evoq::Error);
  EXPECT_NO_THROW(smart_resize(1, 200, 28, kMin, kMax));
  try {
    smart_resize(1, 201, 28, kMin, kMax);
  } catch (const evoq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("aspect ratio"), std::string::npos);
  }
}

TEST(SmartResize, RejectsEmpty) {
  EXPECT_THROW(smart_resize(0, 10, 28, kMin, kMax), evoq::Error);
}
