// Hand-derived checks of the metrics; the scipy comparison is tests/python/test_eval_metrics.py.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "evoq/core/error.h"
#include "evoq/eval/metrics.h"

using namespace evoq::eval;

TEST(Metrics, AverageRanksForTies) {
  const std::vector<double> v = {10, 20, 20, 5, 20};
  const std::vector<double> expected = {2, 4, 4, 1, 4};
  EXPECT_EQ(average_ranks(v), expected);
}

TEST(Metrics, PerfectAndReversedOrder) {
  const std::vector<double> x = {1, 2, 3, 4, 5}, y = {2, 4, 8, 16, 32}, r = {5, 4, 3, 2, 1};
  EXPECT_DOUBLE_EQ(srcc(x, y), 1.0);
  EXPECT_DOUBLE_EQ(krcc(x, y), 1.0);
  EXPECT_DOUBLE_EQ(srcc(x, r), -1.0);
  EXPECT_DOUBLE_EQ(krcc(x, r), -1.0);
  EXPECT_DOUBLE_EQ(plcc(x, r), -1.0);
}

TEST(Metrics, KendallTauBByHand) {
  // x = 1,2,2,3  y = 1,3,2,3 : pairs (6): C = 4, D = 0, ties x = 1 (2,2), ties y = 1 (3,3)
  // tau_b = 4 / sqrt((6-1)(6-1)) = 0.8
  const std::vector<double> x = {1, 2, 2, 3}, y = {1, 3, 2, 3};
  EXPECT_NEAR(krcc(x, y), 0.8, 1e-12);
}

TEST(Metrics, DegenerateInputsGiveNaN) {
  const std::vector<double> c = {3, 3, 3, 3}, x = {1, 2, 3, 4}, one = {1};
  EXPECT_TRUE(std::isnan(plcc(c, x)));
  EXPECT_TRUE(std::isnan(srcc(x, c)));
  EXPECT_TRUE(std::isnan(krcc(c, x)));
  EXPECT_TRUE(std::isnan(plcc_fitted(c, x)));
  EXPECT_TRUE(std::isnan(plcc(one, one)));
  // A constant whose computed mean is not exactly itself (0.1 x 10 sums to 0.9999999999999999).
  const std::vector<double> tenth(10, 0.1), ramp = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_TRUE(std::isnan(plcc(tenth, ramp)));
  EXPECT_TRUE(std::isnan(plcc(ramp, tenth)));
  const std::vector<double> a = {1, 2}, b = {5, 3};
  EXPECT_DOUBLE_EQ(plcc(a, b), -1.0);
  EXPECT_DOUBLE_EQ(srcc(a, b), -1.0);
  EXPECT_DOUBLE_EQ(krcc(a, b), -1.0);
  EXPECT_TRUE(std::isnan(plcc_fitted(a, b)));
}

TEST(Metrics, BadInputThrows) {
  const std::vector<double> a = {1, 2, 3}, b = {1, 2}, n = {1, NAN, 3};
  EXPECT_THROW(plcc(a, b), evoq::Error);
  EXPECT_THROW(srcc(a, n), evoq::Error);
}

TEST(Metrics, LogisticFitRecoversExactCurve) {
  const Logistic4 truth = {5.0, 1.0, 0.3, 0.7};
  std::vector<double> x, y;
  for (int i = 0; i < 40; ++i) {
    x.push_back(-3 + 0.15 * i);
    y.push_back(logistic4(truth, x.back()));
  }
  const auto fit = fit_logistic4(x, y);
  EXPECT_TRUE(fit.converged);
  EXPECT_LT(fit.sse, 1e-16);
  EXPECT_NEAR(fit.beta[0], 5.0, 1e-6);
  EXPECT_NEAR(fit.beta[1], 1.0, 1e-6);
  EXPECT_NEAR(fit.beta[2], 0.3, 1e-6);
  EXPECT_NEAR(std::abs(fit.beta[3]), 0.7, 1e-6);
  EXPECT_NEAR(plcc_fitted(x, y), 1.0, 1e-12);
}
