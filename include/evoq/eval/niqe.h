#pragma once
// NIQE (Mittal, Soundararajan, Bovik 2013), following the BasicSR / pyiqa definition:
//   1. Y channel of BT.601 YCbCr in [16, 235] (Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for 8-bit
//      RGB), rounded to integers; grey images are used as they are;
//   2. the image is cropped to whole 96x96 blocks;
//   3. at two scales (full, then MATLAB-style bicubic x0.5 with antialiasing), MSCN coefficients
//      (I - mu) / (sigma + 1) with the 7x7 Gaussian window of the parameter file (replicated border);
//   4. per block (96x96, then 48x48 at scale 2) 18 features: GGD-by-AGGD shape and mean variance of the
//      MSCN block, and (shape, mean, left scale, right scale) of the AGGD fit of its products with its
//      four circularly shifted neighbours (0,1), (1,0), (1,1), (1,-1); shape found on a 0.001 grid in
//      [0.2, 10];
//   5. quality = sqrt((mu_p - mu_d)^T pinv((C_p + C_d) / 2) (mu_p - mu_d)), mu_d the NaN-ignoring mean of
//      the 36-dim block features, C_d their covariance over NaN-free blocks.
// Lower is better. Deviations: computed in float64 throughout (BasicSR runs parts in float32); images
// smaller than 96x96 in either direction are rejected (no block to measure). Sensitivity: in flat regions
// I - mu is exactly 0 or +-1e-12 depending on the summation order of the filter, which moves those pixels
// between the AGGD's left and right sets; implementations therefore agree to ~1e-4 relative, not exactly
// (tests/python/test_eval_e2e.py compares with a numpy/scipy implementation).
#include <array>
#include <string>

#include <opencv2/core.hpp>

namespace evoq::eval {

struct NiqeModel {
  cv::Mat mu;      // 1x36 CV_64F, pristine mean
  cv::Mat cov;     // 36x36 CV_64F, pristine covariance
  cv::Mat window;  // 7x7 CV_64F Gaussian weights
  static NiqeModel load(const std::string& npz_path);  // data/niqe/niqe_pris_params.npz
};

struct AggdFit {
  double alpha = 0, beta_left = 0, beta_right = 0;
};
// Asymmetric generalised Gaussian fit by moment matching (BasicSR estimate_aggd_param).
AggdFit estimate_aggd(const cv::Mat& values);

// MATLAB imresize with bicubic kernel and antialiasing, CV_64F single channel.
cv::Mat matlab_imresize(const cv::Mat& src, double scale);

// Y channel in [16,235] rounded (step 1 above) from an 8-bit BGR or grey image.
cv::Mat niqe_luma(const cv::Mat& image);

// Block features (steps 1-4): one row of 36 per 96x96 block (blocks column by column), NaN where a fit
// had no data.
cv::Mat niqe_features(const cv::Mat& image, const NiqeModel& model);

// NIQE of an 8-bit BGR or grey image. Throws evoq::Error if it is smaller than one 96x96 block.
double niqe(const cv::Mat& image, const NiqeModel& model);

}  // namespace evoq::eval
