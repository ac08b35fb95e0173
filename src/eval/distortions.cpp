#include "evoq/eval/distortions.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "evoq/core/error.h"

namespace evoq::eval {
namespace {

using D = Distortion;

// Per-type parameter for levels 1..5 (see docs/DISTORTIONS.md for units).
double param(D type, int level) {
  static const std::array<std::array<double, 5>, kDistortionCount> table = {{
      {0.5, 1, 2, 3, 5},                 // gaussian_blur: sigma (px)
      {1, 2, 4, 6, 8},                   // lens_blur: disk radius (px)
      {1, 2, 4, 6, 10},                  // motion_blur: half length (px)
      {1, 3, 6, 8, 12},                  // color_diffusion: sigma of a*/b* blur (px)
      {1, 3, 6, 8, 12},                  // color_shift: green channel shift (px)
      {64, 48, 32, 16, 8},               // color_quantization: colours
      {0.7, 0.5, 0.3, 0.15, 0},          // color_saturation_hsv: S multiplier
      {1.5, 2, 3, 4.5, 6},               // color_saturation_lab: a*/b* multiplier
      {16, 32, 45, 120, 170},            // jpeg2000: compression ratio
      {43, 36, 24, 7, 4},                // jpeg: quality
      {0.001, 0.002, 0.003, 0.005, 0.01},       // white_noise: variance (image in [0,1])
      {0.0005, 0.001, 0.002, 0.004, 0.008},     // white_noise_ycbcr: variance per YCbCr channel
      {0.005, 0.01, 0.02, 0.04, 0.08},          // impulse_noise: density
      {0.001, 0.005, 0.01, 0.02, 0.05},         // multiplicative_noise: variance
      {0.001, 0.002, 0.003, 0.005, 0.01},       // denoise: variance of the noise removed
      {0.1, 0.2, 0.4, 0.7, 1.1},         // brighten: gamma = 1 / (1 + p)
      {0.05, 0.1, 0.2, 0.4, 0.8},        // darken: gamma = 1 + p
      {0.15, 0.08, -0.05, -0.1, -0.2},   // mean_shift: added to every channel
      {0.5, 1, 2, 3, 5},                 // jitter: max displacement (px)
      {20, 40, 60, 80, 100},             // non_eccentricity_patch: patches moved
      {2, 3, 4, 6, 10},                  // pixelate: block size (px)
      {20, 16, 13, 10, 7},               // quantization: levels per channel
      {2, 4, 6, 8, 10},                  // color_block: blocks
      {1, 2, 3, 6, 12},                  // high_sharpen: unsharp-mask amount
      {1.3, 0.7, 1.6, 0.5, 0.3},         // contrast_change: contrast factor about the mean
  }};
  return table[static_cast<int>(type) - 1][level - 1];
}

cv::Mat to_float(const cv::Mat& bgr) {
  cv::Mat f;
  bgr.convertTo(f, CV_32F, 1.0 / 255);
  return f;
}

cv::Mat to_u8(const cv::Mat& f) {
  cv::Mat u;
  f.convertTo(u, CV_8U, 255.0);  // saturating, round half away from zero
  return u;
}

cv::Mat filter(const cv::Mat& f, const cv::Mat& kernel) {
  cv::Mat out;
  cv::filter2D(f, out, -1, kernel, cv::Point(-1, -1), 0, cv::BORDER_REFLECT);
  return out;
}

cv::Mat gaussian(const cv::Mat& f, double sigma) {
  cv::Mat out;
  const int k = 2 * static_cast<int>(std::ceil(3 * sigma)) + 1;
  cv::GaussianBlur(f, out, cv::Size(k, k), sigma, sigma, cv::BORDER_REFLECT);
  return out;
}

cv::Mat encode_decode(const cv::Mat& bgr, const std::string& ext, const std::vector<int>& params) {
  std::vector<uchar> buf;
  EVOQ_CHECK(cv::imencode(ext, bgr, buf, params), "distortion: OpenCV cannot encode ", ext);
  return cv::imdecode(buf, cv::IMREAD_COLOR);
}

cv::Mat gaussian_noise(cv::RNG& rng, cv::Size size, int channels) {
  cv::Mat n(size, CV_32FC(channels));
  rng.fill(n, cv::RNG::NORMAL, 0.0, 1.0);
  return n;
}

cv::Mat uniform(cv::RNG& rng, cv::Size size) {
  cv::Mat u(size, CV_32F);
  rng.fill(u, cv::RNG::UNIFORM, 0.0, 1.0);
  return u;
}

cv::Mat convert_lab(const cv::Mat& f, bool to_lab) {
  cv::Mat out;
  cv::cvtColor(f, out, to_lab ? cv::COLOR_BGR2Lab : cv::COLOR_Lab2BGR);
  return out;
}

cv::Mat color_quantize(const cv::Mat& bgr, int colours, cv::RNG& rng) {
  // k-means on a fixed random sample of pixels, then every pixel takes its nearest centre.
  const int n = bgr.rows * bgr.cols, sample = std::min(n, 20000);
  cv::Mat pixels = bgr.reshape(1, n), samples(sample, 3, CV_32F);
  for (int i = 0; i < sample; ++i) {
    const int j = rng.uniform(0, n);
    for (int c = 0; c < 3; ++c) samples.at<float>(i, c) = pixels.at<uchar>(j, c);
  }
  cv::Mat labels, centres;
  cv::theRNG().state = 0x9e3779b97f4a7c15ULL ^ static_cast<std::uint64_t>(colours);  // kmeans++ seeding
  cv::kmeans(samples, colours, labels, cv::TermCriteria(cv::TermCriteria::COUNT + cv::TermCriteria::EPS, 20, 0.5),
             1, cv::KMEANS_PP_CENTERS, centres);
  cv::Mat out(bgr.size(), CV_8UC3);
  for (int r = 0; r < bgr.rows; ++r)
    for (int c = 0; c < bgr.cols; ++c) {
      const cv::Vec3b p = bgr.at<cv::Vec3b>(r, c);
      int best = 0;
      float best_d = std::numeric_limits<float>::max();
      for (int k = 0; k < centres.rows; ++k) {
        float d = 0;
        for (int ch = 0; ch < 3; ++ch) d += (centres.at<float>(k, ch) - p[ch]) * (centres.at<float>(k, ch) - p[ch]);
        if (d < best_d) {
          best_d = d;
          best = k;
        }
      }
      for (int ch = 0; ch < 3; ++ch)
        out.at<cv::Vec3b>(r, c)[ch] = cv::saturate_cast<uchar>(centres.at<float>(best, ch));
    }
  return out;
}

}  // namespace

const std::array<DistortionInfo, kDistortionCount>& distortion_types() {
  static const std::array<DistortionInfo, kDistortionCount> list = {{
      {D::gaussian_blur, "gaussian_blur", true},
      {D::lens_blur, "lens_blur", true},
      {D::motion_blur, "motion_blur", true},
      {D::color_diffusion, "color_diffusion", true},
      {D::color_shift, "color_shift", true},
      {D::color_quantization, "color_quantization", true},
      {D::color_saturation_hsv, "color_saturation_hsv", true},
      {D::color_saturation_lab, "color_saturation_lab", true},
      {D::jpeg2000, "jpeg2000", true},
      {D::jpeg, "jpeg", true},
      {D::white_noise, "white_noise", true},
      {D::white_noise_ycbcr, "white_noise_ycbcr", true},
      {D::impulse_noise, "impulse_noise", true},
      {D::multiplicative_noise, "multiplicative_noise", true},
      {D::denoise, "denoise", true},
      {D::brighten, "brighten", true},
      {D::darken, "darken", true},
      {D::mean_shift, "mean_shift", false},
      {D::jitter, "jitter", true},
      {D::non_eccentricity_patch, "non_eccentricity_patch", true},
      {D::pixelate, "pixelate", true},
      {D::quantization, "quantization", true},
      {D::color_block, "color_block", true},
      {D::high_sharpen, "high_sharpen", true},
      {D::contrast_change, "contrast_change", false},
  }};
  return list;
}

const DistortionInfo& distortion_info(Distortion type) { return distortion_types()[static_cast<int>(type) - 1]; }

Distortion parse_distortion(const std::string& name) {
  std::string n = name;
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& d : distortion_types())
    if (n == d.name || n == std::to_string(static_cast<int>(d.type))) return d.type;
  throw Error("unknown distortion type '" + name + "' (see docs/DISTORTIONS.md)");
}

double psnr(const cv::Mat& a, const cv::Mat& b) {
  EVOQ_CHECK(a.size() == b.size() && a.type() == b.type(), "PSNR: images differ in size or type");
  cv::Mat d;
  cv::absdiff(a, b, d);
  d.convertTo(d, CV_64F);
  const cv::Scalar s = cv::sum(d.mul(d));
  const double mse = (s[0] + s[1] + s[2] + s[3]) / (static_cast<double>(a.total()) * a.channels());
  if (mse == 0) return std::numeric_limits<double>::infinity();
  return 10 * std::log10(255.0 * 255.0 / mse);
}

cv::Mat apply_distortion(const cv::Mat& bgr, Distortion type, int level, std::uint64_t seed) {
  EVOQ_CHECK(level >= 1 && level <= kDistortionLevels, "distortion level ", level, " is outside 1..5");
  EVOQ_CHECK(!bgr.empty() && bgr.type() == CV_8UC3, "distortion: expected an 8-bit 3-channel image");
  const double p = param(type, level);
  // One stream per (seed, type): every level draws the same random numbers.
  cv::RNG rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<std::uint64_t>(type) * 0xBF58476D1CE4E5B9ULL + 1);
  const cv::Size size = bgr.size();
  const cv::Mat f = to_float(bgr);

  switch (type) {
    case D::gaussian_blur:
      return to_u8(gaussian(f, p));
    case D::lens_blur: {
      const int r = static_cast<int>(p);
      cv::Mat k = cv::Mat::zeros(2 * r + 1, 2 * r + 1, CV_32F);
      cv::circle(k, {r, r}, r, cv::Scalar(1), cv::FILLED, cv::LINE_AA);
      return to_u8(filter(f, k / cv::sum(k)[0]));
    }
    case D::motion_blur: {
      const double angle = rng.uniform(0.0, CV_PI);
      const int r = static_cast<int>(p);
      cv::Mat k = cv::Mat::zeros(2 * r + 1, 2 * r + 1, CV_32F);
      const cv::Point2d d(r * std::cos(angle), r * std::sin(angle));
      cv::line(k, cv::Point(cvRound(r - d.x), cvRound(r - d.y)), cv::Point(cvRound(r + d.x), cvRound(r + d.y)),
               cv::Scalar(1), 1, cv::LINE_AA);
      return to_u8(filter(f, k / cv::sum(k)[0]));
    }
    case D::color_diffusion: {
      cv::Mat lab = convert_lab(f, true);
      std::vector<cv::Mat> ch;
      cv::split(lab, ch);
      ch[1] = gaussian(ch[1], p);
      ch[2] = gaussian(ch[2], p);
      cv::merge(ch, lab);
      return to_u8(convert_lab(lab, false));
    }
    case D::color_shift: {
      const double angle = rng.uniform(0.0, 2 * CV_PI);
      std::vector<cv::Mat> ch;
      cv::split(f, ch);
      const cv::Mat m = (cv::Mat_<double>(2, 3) << 1, 0, p * std::cos(angle), 0, 1, p * std::sin(angle));
      cv::warpAffine(ch[1], ch[1], m, size, cv::INTER_LINEAR, cv::BORDER_REFLECT);
      cv::Mat out;
      cv::merge(ch, out);
      return to_u8(out);
    }
    case D::color_quantization:
      return color_quantize(bgr, static_cast<int>(p), rng);
    case D::color_saturation_hsv: {
      cv::Mat hsv;
      cv::cvtColor(f, hsv, cv::COLOR_BGR2HSV);
      std::vector<cv::Mat> ch;
      cv::split(hsv, ch);
      ch[1] *= p;
      cv::merge(ch, hsv);
      cv::cvtColor(hsv, hsv, cv::COLOR_HSV2BGR);
      return to_u8(hsv);
    }
    case D::color_saturation_lab: {
      cv::Mat lab = convert_lab(f, true);
      std::vector<cv::Mat> ch;
      cv::split(lab, ch);
      ch[1] *= p;
      ch[2] *= p;
      cv::merge(ch, lab);
      return to_u8(convert_lab(lab, false));
    }
    case D::jpeg2000:
      return encode_decode(bgr, ".jp2", {cv::IMWRITE_JPEG2000_COMPRESSION_X1000, std::max(1, cvRound(1000 / p))});
    case D::jpeg:
      return encode_decode(bgr, ".jpg", {cv::IMWRITE_JPEG_QUALITY, static_cast<int>(p)});
    case D::white_noise:
      return to_u8(f + gaussian_noise(rng, size, 3) * std::sqrt(p));
    case D::white_noise_ycbcr: {
      cv::Mat ycc;
      cv::cvtColor(f, ycc, cv::COLOR_BGR2YCrCb);
      ycc += gaussian_noise(rng, size, 3) * std::sqrt(p);
      cv::cvtColor(ycc, ycc, cv::COLOR_YCrCb2BGR);
      return to_u8(ycc);
    }
    case D::impulse_noise: {
      // A pixel whose uniform draw u < density becomes black (u < density/2) or white: nested across levels.
      const cv::Mat u = uniform(rng, size);
      cv::Mat out = bgr.clone();
      for (int r = 0; r < size.height; ++r)
        for (int c = 0; c < size.width; ++c) {
          const float v = u.at<float>(r, c);
          if (v < p) out.at<cv::Vec3b>(r, c) = v < p / 2 ? cv::Vec3b(0, 0, 0) : cv::Vec3b(255, 255, 255);
        }
      return out;
    }
    case D::multiplicative_noise:
      return to_u8(f + f.mul(gaussian_noise(rng, size, 3) * std::sqrt(p)));
    case D::denoise: {
      const cv::Mat noisy = f + gaussian_noise(rng, size, 3) * std::sqrt(p);
      cv::Mat n8 = to_u8(noisy), out;
      cv::bilateralFilter(n8, out, 7, 255.0 * 3 * std::sqrt(p), 3.0, cv::BORDER_REFLECT);
      return out;
    }
    case D::brighten: {
      cv::Mat out;
      cv::pow(f, 1.0 / (1.0 + p), out);
      return to_u8(out);
    }
    case D::darken: {
      cv::Mat out;
      cv::pow(f, 1.0 + p, out);
      return to_u8(out);
    }
    case D::mean_shift:
      return to_u8(f + cv::Scalar::all(p));
    case D::jitter: {
      cv::Mat dx = uniform(rng, size), dy = uniform(rng, size), mx(size, CV_32F), my(size, CV_32F);
      for (int r = 0; r < size.height; ++r)
        for (int c = 0; c < size.width; ++c) {
          mx.at<float>(r, c) = static_cast<float>(c + (2 * dx.at<float>(r, c) - 1) * p);
          my.at<float>(r, c) = static_cast<float>(r + (2 * dy.at<float>(r, c) - 1) * p);
        }
      cv::Mat out;
      cv::remap(bgr, out, mx, my, cv::INTER_NEAREST, cv::BORDER_REFLECT);
      return out;
    }
    case D::non_eccentricity_patch: {
      // Patches of 16x16 copied to a random nearby position (offset up to 24 px); more patches per level.
      constexpr int kPatch = 16, kOffset = 24;
      cv::Mat out = bgr.clone();
      for (int i = 0; i < static_cast<int>(p); ++i) {
        const int x = rng.uniform(0, std::max(1, size.width - kPatch)),
                  y = rng.uniform(0, std::max(1, size.height - kPatch));
        int tx = x + rng.uniform(-kOffset, kOffset + 1), ty = y + rng.uniform(-kOffset, kOffset + 1);
        tx = std::clamp(tx, 0, std::max(0, size.width - kPatch));
        ty = std::clamp(ty, 0, std::max(0, size.height - kPatch));
        const cv::Rect src(x, y, std::min(kPatch, size.width), std::min(kPatch, size.height));
        bgr(src).copyTo(out(cv::Rect(tx, ty, src.width, src.height)));
      }
      return out;
    }
    case D::pixelate: {
      const int b = static_cast<int>(p);
      cv::Mat small, out;
      cv::resize(bgr, small, cv::Size(std::max(1, size.width / b), std::max(1, size.height / b)), 0, 0, cv::INTER_AREA);
      cv::resize(small, out, size, 0, 0, cv::INTER_NEAREST);
      return out;
    }
    case D::quantization: {
      const double n = p - 1;
      cv::Mat out = f.clone();
      out.forEach<cv::Vec3f>([n](cv::Vec3f& v, const int*) {
        for (int c = 0; c < 3; ++c) v[c] = static_cast<float>(std::round(v[c] * n) / n);
      });
      return to_u8(out);
    }
    case D::color_block: {
      // Uniformly coloured 32x32 squares at random places (the first k blocks are the same at every level).
      const int side = std::min({32, size.width, size.height});
      cv::Mat out = bgr.clone();
      for (int i = 0; i < static_cast<int>(p); ++i) {
        const int x = rng.uniform(0, size.width - side + 1), y = rng.uniform(0, size.height - side + 1);
        const cv::Scalar colour(rng.uniform(0, 256), rng.uniform(0, 256), rng.uniform(0, 256));
        out(cv::Rect(x, y, side, side)).setTo(colour);
      }
      return out;
    }
    case D::high_sharpen: {
      const cv::Mat blurred = gaussian(f, 1.5);
      return to_u8(f + (f - blurred) * p);
    }
    case D::contrast_change: {
      const cv::Scalar mean = cv::mean(f);
      return to_u8((f - mean) * p + mean);
    }
  }
  throw Error("distortion: unknown type " + std::to_string(static_cast<int>(type)));
}

}  // namespace evoq::eval
