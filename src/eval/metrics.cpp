#include "evoq/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "evoq/core/error.h"

namespace evoq::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_pair(std::span<const double> x, std::span<const double> y, const char* what) {
  EVOQ_CHECK(x.size() == y.size(), what, ": x has ", x.size(), " values but y has ", y.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    EVOQ_CHECK(std::isfinite(x[i]) && std::isfinite(y[i]), what, ": non-finite value at index ", i);
}

bool is_constant(std::span<const double> v) {
  return std::all_of(v.begin(), v.end(), [&](double a) { return a == v.front(); });
}

double mean(std::span<const double> v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double pearson_unchecked(std::span<const double> x, std::span<const double> y) {
  // Exactly constant input is undefined; the sums below need not be exactly 0 then (rounding of the mean).
  if (is_constant(x) || is_constant(y)) return kNaN;
  const double mx = mean(x), my = mean(y);
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double dx = x[i] - mx, dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx == 0 || syy == 0) return kNaN;
  return std::clamp(sxy / std::sqrt(sxx * syy), -1.0, 1.0);
}

// Solves the 4x4 system a d = b by Gaussian elimination with partial pivoting; false if singular.
bool solve4(std::array<std::array<double, 4>, 4> a, std::array<double, 4> b, std::array<double, 4>& d) {
  for (int c = 0; c < 4; ++c) {
    int p = c;
    for (int r = c + 1; r < 4; ++r)
      if (std::abs(a[r][c]) > std::abs(a[p][c])) p = r;
    if (a[p][c] == 0 || !std::isfinite(a[p][c])) return false;
    std::swap(a[p], a[c]);
    std::swap(b[p], b[c]);
    for (int r = c + 1; r < 4; ++r) {
      const double f = a[r][c] / a[c][c];
      for (int k = c; k < 4; ++k) a[r][k] -= f * a[c][k];
      b[r] -= f * b[c];
    }
  }
  for (int c = 3; c >= 0; --c) {
    double s = b[c];
    for (int k = c + 1; k < 4; ++k) s -= a[c][k] * d[k];
    d[c] = s / a[c][c];
  }
  return std::all_of(d.begin(), d.end(), [](double v) { return std::isfinite(v); });
}

double sigmoid(double z) {
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

double sse_of(const Logistic4& b, std::span<const double> x, std::span<const double> y) {
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double r = logistic4(b, x[i]) - y[i];
    s += r * r;
  }
  return s;
}

}  // namespace

std::vector<double> average_ranks(std::span<const double> v) {
  const std::size_t n = v.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> ranks(n);
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j + 1 < n && v[order[j + 1]] == v[order[i]]) ++j;
    const double r = 0.5 * static_cast<double>(i + j) + 1.0;  // average of ranks i+1 .. j+1
    for (std::size_t k = i; k <= j; ++k) ranks[order[k]] = r;
    i = j + 1;
  }
  return ranks;
}

double plcc(std::span<const double> x, std::span<const double> y) {
  check_pair(x, y, "PLCC");
  if (x.size() < 2) return kNaN;
  return pearson_unchecked(x, y);
}

double srcc(std::span<const double> x, std::span<const double> y) {
  check_pair(x, y, "SRCC");
  if (x.size() < 2) return kNaN;
  const auto rx = average_ranks(x), ry = average_ranks(y);
  return pearson_unchecked(rx, ry);
}

double krcc(std::span<const double> x, std::span<const double> y) {
  check_pair(x, y, "KRCC");
  const std::size_t n = x.size();
  if (n < 2) return kNaN;
  // O(n^2) pair count: 23,200 images (PIPAL) is ~2.7e8 comparisons, well under a second.
  long long concordant = 0, discordant = 0, ties_x = 0, ties_y = 0;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = i + 1; j < n; ++j) {
      const double dx = x[i] - x[j], dy = y[i] - y[j];
      if (dx == 0) ++ties_x;
      if (dy == 0) ++ties_y;
      const double p = dx * dy;
      if (p > 0) ++concordant;
      else if (p < 0) ++discordant;
    }
  }
  const double n0 = 0.5 * static_cast<double>(n) * static_cast<double>(n - 1);
  const double denom = std::sqrt((n0 - static_cast<double>(ties_x)) * (n0 - static_cast<double>(ties_y)));
  if (denom == 0) return kNaN;
  return std::clamp(static_cast<double>(concordant - discordant) / denom, -1.0, 1.0);
}

double logistic4(const Logistic4& b, double x) {
  return (b[0] - b[1]) * sigmoid((x - b[2]) / std::abs(b[3])) + b[1];
}

LogisticFit fit_logistic4(std::span<const double> x, std::span<const double> y) {
  check_pair(x, y, "logistic fit");
  const std::size_t n = x.size();
  EVOQ_CHECK(n >= 4, "logistic fit: needs at least 4 points, got ", n);
  EVOQ_CHECK(!is_constant(x) && !is_constant(y), "logistic fit: constant input");

  const double mx = mean(x);
  double var = 0;
  for (double v : x) var += (v - mx) * (v - mx);
  LogisticFit fit;
  fit.beta = {*std::max_element(y.begin(), y.end()), *std::min_element(y.begin(), y.end()), mx,
              std::sqrt(var / static_cast<double>(n))};
  fit.sse = sse_of(fit.beta, x, y);

  double lambda = 1e-3;
  constexpr int kMaxIterations = 5000;
  for (fit.iterations = 0; fit.iterations < kMaxIterations; ++fit.iterations) {
    // Normal equations J^T J and gradient J^T r at the current beta.
    std::array<std::array<double, 4>, 4> jtj{};
    std::array<double, 4> jtr{};
    const auto& b = fit.beta;
    const double w = std::abs(b[3]), sign_w = b[3] >= 0 ? 1.0 : -1.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double z = (x[i] - b[2]) / w, s = sigmoid(z);
      const double dfdz = (b[0] - b[1]) * s * (1 - s);
      const std::array<double, 4> j = {s, 1 - s, -dfdz / w, -dfdz * z / w * sign_w};
      const double r = logistic4(b, x[i]) - y[i];
      for (int p = 0; p < 4; ++p) {
        jtr[p] += j[p] * r;
        for (int q = 0; q < 4; ++q) jtj[p][q] += j[p] * j[q];
      }
    }
    double max_diag = 0;
    for (int p = 0; p < 4; ++p) max_diag = std::max(max_diag, jtj[p][p]);
    if (max_diag == 0) break;

    // Try damped steps until one lowers the SSE (or the damping makes the step vanish).
    bool improved = false;
    double rel_step = 0, old_sse = fit.sse;
    while (lambda < 1e20) {
      auto a = jtj;
      for (int p = 0; p < 4; ++p) a[p][p] += lambda * std::max(jtj[p][p], 1e-12 * max_diag);
      std::array<double, 4> delta{};
      std::array<double, 4> rhs = {-jtr[0], -jtr[1], -jtr[2], -jtr[3]};
      if (solve4(a, rhs, delta)) {
        Logistic4 trial = b;
        double step2 = 0, norm2 = 0;
        for (int p = 0; p < 4; ++p) {
          trial[p] += delta[p];
          step2 += delta[p] * delta[p];
          norm2 += b[p] * b[p];
        }
        const double trial_sse = trial[3] != 0 ? sse_of(trial, x, y) : std::numeric_limits<double>::infinity();
        if (std::isfinite(trial_sse) && trial_sse < fit.sse) {
          fit.beta = trial;
          fit.sse = trial_sse;
          rel_step = std::sqrt(step2 / std::max(norm2, 1e-300));
          lambda = std::max(lambda / 10, 1e-15);
          improved = true;
          break;
        }
      }
      lambda *= 10;
    }
    if (!improved) {  // no damped step lowers the SSE: a (local) minimum
      fit.converged = true;
      break;
    }
    if ((old_sse - fit.sse) <= 1e-15 * old_sse && rel_step < 1e-12) {
      fit.converged = true;
      break;
    }
  }
  return fit;
}

double plcc_fitted(std::span<const double> x, std::span<const double> y) {
  check_pair(x, y, "fitted PLCC");
  if (x.size() < 4 || is_constant(x) || is_constant(y)) return kNaN;
  const LogisticFit fit = fit_logistic4(x, y);
  std::vector<double> mapped(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) mapped[i] = logistic4(fit.beta, x[i]);
  return pearson_unchecked(mapped, y);
}

Correlations correlate(std::span<const double> x, std::span<const double> y) {
  Correlations c;
  c.n = x.size();
  c.srcc = srcc(x, y);
  c.krcc = krcc(x, y);
  c.plcc = plcc(x, y);
  c.plcc_fitted = plcc_fitted(x, y);
  return c;
}

}  // namespace evoq::eval
