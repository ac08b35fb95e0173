#include "evoq/eval/niqe.h"

#include <cmath>
#include <limits>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "evoq/core/error.h"
#include "evoq/eval/npz.h"

namespace evoq::eval {
namespace {

constexpr int kBlock = 96;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

cv::Mat to_mat(const NpyArray& a, int rows, int cols, const std::string& what) {
  EVOQ_CHECK(a.data.size() == static_cast<std::size_t>(rows * cols), "NIQE parameters: ", what, " has ",
             a.data.size(), " values, expected ", rows * cols);
  return cv::Mat(rows, cols, CV_64F, const_cast<double*>(a.data.data())).clone();
}

// The ratio table r(gamma) = Gamma(2/g)^2 / (Gamma(1/g) Gamma(3/g)) on the grid g = 0.2, 0.201, ..., 10.
struct GammaGrid {
  std::vector<double> gam, ratio;
  GammaGrid() {
    for (int k = 0; k <= 9800; ++k) {
      const double g = 0.2 + 0.001 * k;
      gam.push_back(g);
      ratio.push_back(std::pow(std::tgamma(2 / g), 2) / (std::tgamma(1 / g) * std::tgamma(3 / g)));
    }
  }
};

double cubic(double x) {
  const double a = std::abs(x), a2 = a * a, a3 = a2 * a;
  if (a <= 1) return 1.5 * a3 - 2.5 * a2 + 1;
  if (a <= 2) return -0.5 * a3 + 2.5 * a2 - 4 * a + 2;
  return 0;
}

// Resize along rows (dim 0) of a CV_64F image: out = W * in with MATLAB's contributions.
cv::Mat resize_rows(const cv::Mat& in, double scale) {
  const int in_len = in.rows;
  const int out_len = static_cast<int>(std::ceil(in_len * scale));
  const bool antialias = scale < 1;
  const double width = antialias ? 4.0 / scale : 4.0;
  const int taps = static_cast<int>(std::ceil(width)) + 2;
  cv::Mat out(out_len, in.cols, CV_64F, cv::Scalar(0));
  for (int x = 1; x <= out_len; ++x) {
    const double u = x / scale + 0.5 * (1 - 1 / scale);
    const int left = static_cast<int>(std::floor(u - width / 2));
    std::vector<double> w(taps);
    std::vector<int> idx(taps);
    double sum = 0;
    for (int p = 0; p < taps; ++p) {
      const int j = left + p;
      w[p] = antialias ? scale * cubic(scale * (u - j)) : cubic(u - j);
      sum += w[p];
      // Symmetric padding: 1-based index mirrored as in MATLAB's [1..n, n..1] table.
      int m = (j - 1) % (2 * in_len);
      if (m < 0) m += 2 * in_len;
      idx[p] = m < in_len ? m : 2 * in_len - 1 - m;
    }
    double* o = out.ptr<double>(x - 1);
    for (int p = 0; p < taps; ++p) {
      if (w[p] == 0) continue;
      const double* r = in.ptr<double>(idx[p]);
      const double wp = w[p] / sum;
      for (int c = 0; c < in.cols; ++c) o[c] += wp * r[c];
    }
  }
  return out;
}

cv::Mat pinv(const cv::Mat& a) {
  cv::SVD svd(a, cv::SVD::FULL_UV);
  const double cutoff = 1e-15 * svd.w.at<double>(0);
  cv::Mat winv = cv::Mat::zeros(a.cols, a.rows, CV_64F);
  for (int i = 0; i < svd.w.rows; ++i)
    if (svd.w.at<double>(i) > cutoff) winv.at<double>(i, i) = 1 / svd.w.at<double>(i);
  return svd.vt.t() * winv * svd.u.t();
}

void block_features(const cv::Mat& block, std::vector<double>& feat) {
  const AggdFit f = estimate_aggd(block);
  feat.push_back(f.alpha);
  feat.push_back((f.beta_left + f.beta_right) / 2);
  static const int shifts[4][2] = {{0, 1}, {1, 0}, {1, 1}, {1, -1}};
  const int h = block.rows, w = block.cols;
  cv::Mat prod(h, w, CV_64F);
  for (const auto& s : shifts) {
    // np.roll(block, (dy, dx)): shifted[i][j] = block[i - dy][j - dx] (circular).
    for (int i = 0; i < h; ++i)
      for (int j = 0; j < w; ++j)
        prod.at<double>(i, j) =
            block.at<double>(i, j) * block.at<double>(((i - s[0]) % h + h) % h, ((j - s[1]) % w + w) % w);
    const AggdFit g = estimate_aggd(prod);
    const double mean = (g.beta_right - g.beta_left) * (std::tgamma(2 / g.alpha) / std::tgamma(1 / g.alpha));
    feat.insert(feat.end(), {g.alpha, mean, g.beta_left, g.beta_right});
  }
}

}  // namespace

NiqeModel NiqeModel::load(const std::string& npz_path) {
  const auto arrays = read_npz(npz_path);
  auto get = [&](const char* key) -> const NpyArray& {
    const auto it = arrays.find(key);
    EVOQ_CHECK(it != arrays.end(), npz_path, ": no array '", key, "'");
    return it->second;
  };
  NiqeModel m;
  m.mu = to_mat(get("mu_pris_param"), 1, 36, "mu_pris_param");
  m.cov = to_mat(get("cov_pris_param"), 36, 36, "cov_pris_param");
  m.window = to_mat(get("gaussian_window"), 7, 7, "gaussian_window");
  return m;
}

AggdFit estimate_aggd(const cv::Mat& values) {
  static const GammaGrid grid;
  double left_sq = 0, right_sq = 0, abs_sum = 0, sq_sum = 0;
  std::size_t left_n = 0, right_n = 0, n = 0;
  for (int r = 0; r < values.rows; ++r) {
    const double* p = values.ptr<double>(r);
    for (int c = 0; c < values.cols; ++c, ++n) {
      const double v = p[c];
      if (v < 0) {
        left_sq += v * v;
        ++left_n;
      } else if (v > 0) {
        right_sq += v * v;
        ++right_n;
      }
      abs_sum += std::abs(v);
      sq_sum += v * v;
    }
  }
  // An empty side gives NaN (mean of nothing), as numpy does; such blocks are dropped from the covariance.
  const double left_std = left_n ? std::sqrt(left_sq / left_n) : kNaN;
  const double right_std = right_n ? std::sqrt(right_sq / right_n) : kNaN;
  const double gammahat = left_std / right_std;
  const double mean_abs = abs_sum / n, mean_sq = sq_sum / n;
  const double rhat = mean_abs * mean_abs / mean_sq;
  const double rhatnorm = rhat * (std::pow(gammahat, 3) + 1) * (gammahat + 1) / std::pow(gammahat * gammahat + 1, 2);
  AggdFit fit;
  if (!std::isfinite(rhatnorm)) {
    // numpy's argmin over an all-NaN difference returns index 0.
    fit.alpha = grid.gam[0];
  } else {
    std::size_t best = 0;
    double best_d = std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < grid.gam.size(); ++k) {
      const double d = (grid.ratio[k] - rhatnorm) * (grid.ratio[k] - rhatnorm);
      if (d < best_d) {
        best_d = d;
        best = k;
      }
    }
    fit.alpha = grid.gam[best];
  }
  const double s = std::sqrt(std::tgamma(1 / fit.alpha) / std::tgamma(3 / fit.alpha));
  fit.beta_left = left_std * s;
  fit.beta_right = right_std * s;
  return fit;
}

cv::Mat matlab_imresize(const cv::Mat& src, double scale) {
  CV_Assert(src.type() == CV_64FC1);
  cv::Mat rows = resize_rows(src, scale);
  cv::Mat cols = resize_rows(rows.t(), scale);
  return cols.t();
}

cv::Mat niqe_luma(const cv::Mat& image) {
  cv::Mat y(image.rows, image.cols, CV_64F);
  if (image.channels() == 1) {
    image.convertTo(y, CV_64F);
    return y;
  }
  EVOQ_CHECK(image.channels() == 3 && image.depth() == CV_8U, "NIQE: expected an 8-bit grey or BGR image");
  for (int r = 0; r < image.rows; ++r) {
    const auto* p = image.ptr<cv::Vec3b>(r);
    double* o = y.ptr<double>(r);
    for (int c = 0; c < image.cols; ++c) {
      const double b = p[c][0] / 255.0, g = p[c][1] / 255.0, rr = p[c][2] / 255.0;
      // nearbyint rounds half to even, as numpy's round does.
      o[c] = std::nearbyint(24.966 * b + 128.553 * g + 65.481 * rr + 16.0);
    }
  }
  return y;
}

cv::Mat niqe_features(const cv::Mat& image, const NiqeModel& model) {
  cv::Mat img = niqe_luma(image);
  const int bh = img.rows / kBlock, bw = img.cols / kBlock;
  EVOQ_CHECK(bh > 0 && bw > 0, "NIQE: image of ", img.cols, "x", img.rows, " is smaller than one 96x96 block");
  img = img(cv::Rect(0, 0, bw * kBlock, bh * kBlock)).clone();

  std::vector<std::vector<double>> feats(static_cast<std::size_t>(bh * bw));
  for (int scale = 1; scale <= 2; ++scale) {
    cv::Mat mu, mu_sq, sigma;
    cv::filter2D(img, mu, CV_64F, model.window, cv::Point(-1, -1), 0, cv::BORDER_REPLICATE);
    cv::filter2D(img.mul(img), mu_sq, CV_64F, model.window, cv::Point(-1, -1), 0, cv::BORDER_REPLICATE);
    sigma = cv::abs(mu_sq - mu.mul(mu));
    cv::sqrt(sigma, sigma);
    const cv::Mat mscn = (img - mu) / (sigma + 1);
    const int size = kBlock / scale;
    std::size_t k = 0;
    for (int bx = 0; bx < bw; ++bx)
      for (int by = 0; by < bh; ++by, ++k)
        block_features(mscn(cv::Rect(bx * size, by * size, size, size)).clone(), feats[k]);
    if (scale == 1) img = matlab_imresize(img / 255.0, 0.5) * 255.0;
  }
  cv::Mat out(static_cast<int>(feats.size()), 36, CV_64F);
  for (std::size_t k = 0; k < feats.size(); ++k)
    for (int j = 0; j < 36; ++j) out.at<double>(static_cast<int>(k), j) = feats[k][static_cast<std::size_t>(j)];
  return out;
}

double niqe(const cv::Mat& image, const NiqeModel& model) {
  const cv::Mat fm = niqe_features(image, model);
  std::vector<std::vector<double>> feats(static_cast<std::size_t>(fm.rows), std::vector<double>(36));
  for (int k = 0; k < fm.rows; ++k)
    for (int j = 0; j < 36; ++j) feats[static_cast<std::size_t>(k)][static_cast<std::size_t>(j)] = fm.at<double>(k, j);

  // Mean ignoring NaN, covariance over NaN-free blocks (np.nanmean, np.cov rowvar=False).
  const int d = 36;
  cv::Mat mu_d(1, d, CV_64F);
  for (int j = 0; j < d; ++j) {
    double s = 0;
    int c = 0;
    for (const auto& f : feats)
      if (!std::isnan(f[j])) {
        s += f[j];
        ++c;
      }
    mu_d.at<double>(j) = c ? s / c : kNaN;
  }
  std::vector<const std::vector<double>*> clean;
  for (const auto& f : feats) {
    bool ok = true;
    for (double v : f) ok = ok && !std::isnan(v);
    if (ok) clean.push_back(&f);
  }
  EVOQ_CHECK(clean.size() >= 2, "NIQE: fewer than two blocks with finite features");
  cv::Mat cov_d = cv::Mat::zeros(d, d, CV_64F);
  std::vector<double> m(d, 0);
  for (const auto* f : clean)
    for (int j = 0; j < d; ++j) m[j] += (*f)[j] / clean.size();
  for (const auto* f : clean)
    for (int a = 0; a < d; ++a)
      for (int b = 0; b < d; ++b) cov_d.at<double>(a, b) += ((*f)[a] - m[a]) * ((*f)[b] - m[b]);
  cov_d /= static_cast<double>(clean.size() - 1);

  const cv::Mat diff = model.mu - mu_d;
  const cv::Mat q = diff * pinv((model.cov + cov_d) / 2) * diff.t();
  return std::sqrt(q.at<double>(0));
}

}  // namespace evoq::eval
