#pragma once
// Correlation metrics used to report IQA results (REFERENCE-NOTES G): SRCC, KRCC (tau-b), PLCC raw and
// PLCC after a 4-parameter logistic fit.
//
// Policy for degenerate input (the same for every metric):
//   - x and y of different lengths, or any non-finite value: throws evoq::Error (callers exclude invalid
//     answers before computing, they are never silently dropped here);
//   - n < 2, or x or y constant: the correlation is undefined and NaN is returned (scipy also yields NaN
//     for constant input);
//   - the logistic fit needs at least 4 points (one per parameter, as scipy's curve_fit): for n < 4 the
//     fitted PLCC is NaN.
// With n == 2 and distinct values every correlation is +1 or -1.
#include <array>
#include <cstddef>
#include <span>
#include <vector>

namespace evoq::eval {

// Ranks 1..n; tied values share the average of the ranks they span (scipy.stats.rankdata "average").
std::vector<double> average_ranks(std::span<const double> v);

// Pearson linear correlation coefficient.
double plcc(std::span<const double> x, std::span<const double> y);

// Spearman rank correlation: Pearson on average ranks.
double srcc(std::span<const double> x, std::span<const double> y);

// Kendall's tau-b: (C - D) / sqrt((n0 - Tx) (n0 - Ty)), n0 = n(n-1)/2, Tx/Ty = pairs tied in x/y.
double krcc(std::span<const double> x, std::span<const double> y);

// The 4-parameter logistic mapping objective scores x to the human scale:
//   f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2
// b1, b2 are the upper/lower asymptotes, b3 the centre, |b4| the width (a decreasing map has b1 < b2).
using Logistic4 = std::array<double, 4>;
double logistic4(const Logistic4& b, double x);

struct LogisticFit {
  Logistic4 beta{};
  double sse = 0;      // sum of squared residuals at beta
  int iterations = 0;
  bool converged = false;
};

// Least-squares fit of logistic4 to (x, y) with Levenberg-Marquardt (analytic Jacobian, Marquardt's
// diagonal scaling). Start values: b1 = max(y), b2 = min(y), b3 = mean(x), b4 = std(x) (population).
// Requires n >= 4 and non-constant x and y (throws evoq::Error otherwise).
LogisticFit fit_logistic4(std::span<const double> x, std::span<const double> y);

// PLCC between logistic4(fit, x) and y. Like every fitted PLCC it is >= 0 whatever the direction of the
// relation (the fit absorbs the sign); use SRCC / raw PLCC to see the direction. NaN when n < 4 or constant.
double plcc_fitted(std::span<const double> x, std::span<const double> y);

struct Correlations {
  std::size_t n = 0;
  double srcc = 0, krcc = 0, plcc = 0, plcc_fitted = 0;
};
Correlations correlate(std::span<const double> x, std::span<const double> y);

}  // namespace evoq::eval
