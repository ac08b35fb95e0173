// BRISQUE and NIQE on the CSIQ sample: scores must rise (worse) with distortion level and correlate
// positively with DMOS. The numerical comparison of NIQE with a numpy oracle is in
// tests/python/test_eval_baselines.py.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "evoq/eval/baselines.h"
#include "evoq/eval/metrics.h"
#include "evoq/eval/niqe.h"
#include "evoq/eval/npz.h"

using namespace evoq::eval;

namespace {
const std::string kData = std::string(EVOQ_TEST_DATA) + "/../../data";
const std::string kCsiq = std::string(EVOQ_TEST_DATA) + "/csiq-sample/";
const std::vector<double> kAwgnDmos = {0.061989, 0.20624, 0.26212, 0.37463, 0.46748};
const std::vector<double> kBlurDmos = {0.042668, 0.14243, 0.34111, 0.47104, 0.74979};

std::vector<double> scores(Scorer& s, const std::string& type) {
  std::vector<double> out;
  for (int level = 1; level <= 5; ++level) {
    const auto r = s.score(kCsiq + "1600." + type + "." + std::to_string(level) + ".png");
    EXPECT_TRUE(r.score.has_value()) << r.invalid_reason;
    out.push_back(r.score.value_or(0));
  }
  return out;
}
}  // namespace

TEST(Npz, ReadsNiqeParameters) {
  const auto a = read_npz(kData + "/niqe/niqe_pris_params.npz");
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a.at("mu_pris_param").shape, (std::vector<std::size_t>{1, 36}));
  EXPECT_EQ(a.at("cov_pris_param").shape, (std::vector<std::size_t>{36, 36}));
  // Values printed by numpy (cov_pris_param is stored in Fortran order).
  EXPECT_DOUBLE_EQ(a.at("mu_pris_param").data[0], 2.6013136801541448);
  EXPECT_DOUBLE_EQ(a.at("mu_pris_param").data[35], 0.18677777557293712);
  EXPECT_DOUBLE_EQ(a.at("cov_pris_param").data[0 * 36 + 5], 0.0632938668405873);
  EXPECT_DOUBLE_EQ(a.at("cov_pris_param").data[3 * 36 + 30], 0.001994018702639341);
  // Gaussian window: symmetric, sums to 1, centre 0.11739636 (printed by numpy).
  const auto& w = a.at("gaussian_window").data;
  double sum = 0;
  for (double v : w) sum += v;
  EXPECT_NEAR(sum, 1.0, 1e-9);
  EXPECT_NEAR(w[24], 0.11739636, 1e-8);
}

TEST(Niqe, MatlabImresizeHalvesAConstantAndAverages) {
  cv::Mat c(8, 8, CV_64F, cv::Scalar(3.0));
  const cv::Mat h = matlab_imresize(c, 0.5);
  ASSERT_EQ(h.rows, 4);
  ASSERT_EQ(h.cols, 4);
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 4; ++k) EXPECT_NEAR(h.at<double>(r, k), 3.0, 1e-12);
}

TEST(Baselines, ScoresRiseWithDistortionAndFollowDmos) {
  register_baseline_scorers();
  for (const std::string name : {"brisque", "niqe"}) {
    auto scorer = make_scorer(name, {});
    EXPECT_FALSE(scorer->higher_is_better());
    const auto awgn = scores(*scorer, "AWGN"), blur = scores(*scorer, "BLUR");
    // Blur degrades monotonically for both; all five levels agree in direction with DMOS.
    EXPECT_GT(srcc(blur, kBlurDmos), 0.8) << name;
    std::vector<double> all = awgn, dmos = kAwgnDmos;
    all.insert(all.end(), blur.begin(), blur.end());
    dmos.insert(dmos.end(), kBlurDmos.begin(), kBlurDmos.end());
    EXPECT_GT(srcc(all, dmos), 0.0) << name;
    EXPECT_GT(awgn.back(), awgn.front()) << name;
  }
}

TEST(Baselines, UnreadableImageIsInvalidNotFatal) {
  register_baseline_scorers();
  auto niqe = make_scorer("niqe", {});
  const auto r = niqe->score("/nonexistent/image.png");
  EXPECT_FALSE(r.score.has_value());
  EXPECT_FALSE(r.invalid_reason.empty());
}
