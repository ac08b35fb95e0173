#include <gtest/gtest.h>

#include <set>
#include <string>

#include <opencv2/imgcodecs.hpp>

#include "evoq/core/error.h"
#include "evoq/eval/distortion_plan.h"
#include "evoq/eval/distortions.h"

using namespace evoq::eval;

namespace {
cv::Mat reference() {
  static const cv::Mat img = cv::imread(std::string(EVOQ_TEST_DATA) + "/distort/carrots_crop256.png", cv::IMREAD_COLOR);
  return img;
}
}  // namespace

TEST(Distortions, EveryTypeChangesTheImageAndMonotonicTypesLosePsnrWithLevel) {
  const cv::Mat ref = reference();
  ASSERT_FALSE(ref.empty());
  for (const auto& info : distortion_types()) {
    double previous = std::numeric_limits<double>::infinity();
    for (int level = 1; level <= 5; ++level) {
      const cv::Mat d = apply_distortion(ref, info.type, level, 7);
      ASSERT_EQ(d.size(), ref.size()) << info.name;
      ASSERT_EQ(d.type(), CV_8UC3) << info.name;
      const double p = psnr(ref, d);
      EXPECT_TRUE(std::isfinite(p)) << info.name << " level " << level << " left the image unchanged";
      if (info.monotonic) EXPECT_LT(p, previous) << info.name << " level " << level;
      previous = p;
    }
  }
}

TEST(Distortions, SameSeedSameBytesOtherSeedOtherNoise) {
  const cv::Mat ref = reference();
  for (const auto& info : distortion_types()) {
    const cv::Mat a = apply_distortion(ref, info.type, 3, 42), b = apply_distortion(ref, info.type, 3, 42);
    EXPECT_EQ(cv::norm(a, b, cv::NORM_INF), 0) << info.name;
  }
  const cv::Mat a = apply_distortion(ref, Distortion::white_noise, 3, 1);
  const cv::Mat b = apply_distortion(ref, Distortion::white_noise, 3, 2);
  EXPECT_GT(cv::norm(a, b, cv::NORM_INF), 0);
}

TEST(Distortions, NamesAndLevelsAreChecked) {
  EXPECT_EQ(parse_distortion("jpeg"), Distortion::jpeg);
  EXPECT_EQ(parse_distortion("25"), Distortion::contrast_change);
  EXPECT_THROW(parse_distortion("nope"), evoq::Error);
  EXPECT_THROW(apply_distortion(reference(), Distortion::jpeg, 6, 0), evoq::Error);
}

TEST(DistortionPlan, Round2PresetDrawsTenDistinctTypesPerReference) {
  const auto plan = plan_round2({"/x/a.png", "/x/b.png"}, 10, 3);
  ASSERT_EQ(plan.size(), 20u);
  std::set<int> types_a;
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(plan[i].reference_id, "a");
    types_a.insert(static_cast<int>(plan[i].type));
    EXPECT_GE(plan[i].level, 1);
    EXPECT_LE(plan[i].level, 5);
  }
  EXPECT_EQ(types_a.size(), 10u);
  // Deterministic, and a reference's draws do not depend on the other references.
  const auto again = plan_round2({"/y/b.png"}, 10, 3);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(again[i].type, plan[10 + i].type);
    EXPECT_EQ(again[i].level, plan[10 + i].level);
  }
  EXPECT_EQ(plan_grid({"/x/a.png"}, {Distortion::jpeg, Distortion::pixelate}, {1, 5}, 0).size(), 4u);
}
