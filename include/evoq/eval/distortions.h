#pragma once
// Synthetic distortions after KADID-10k (Lin, Hosu, Saupe 2019): 25 types x 5 levels, implemented with
// OpenCV. Deterministic: the same image, type, level and seed give identical bytes. docs/DISTORTIONS.md
// lists each type's parameters per level and where it deviates from the KADID-10k definition.
//
// For a given (image, type, seed) the random draws are shared by all five levels (the same noise field
// scaled up, the same block positions with more blocks...), so the severity order within a reference
// and type is the level order for every type marked monotonic.
#include <array>
#include <cstdint>
#include <string>

#include <opencv2/core.hpp>

namespace evoq::eval {

enum class Distortion : int {
  gaussian_blur = 1, lens_blur, motion_blur, color_diffusion, color_shift, color_quantization,
  color_saturation_hsv, color_saturation_lab, jpeg2000, jpeg, white_noise, white_noise_ycbcr, impulse_noise,
  multiplicative_noise, denoise, brighten, darken, mean_shift, jitter, non_eccentricity_patch, pixelate,
  quantization, color_block, high_sharpen, contrast_change
};

struct DistortionInfo {
  Distortion type;
  const char* name;       // snake_case name used in manifests and on the command line
  bool monotonic;         // quality falls with level (false: mean shift, contrast change)
};

constexpr int kDistortionCount = 25;
constexpr int kDistortionLevels = 5;
const std::array<DistortionInfo, kDistortionCount>& distortion_types();
const DistortionInfo& distortion_info(Distortion type);
// Parses a name (or its KADID number 1..25); throws evoq::Error naming the bad value.
Distortion parse_distortion(const std::string& name);

// Applies `type` at `level` (1..5) to an 8-bit BGR image. Throws evoq::Error for a bad level or image.
cv::Mat apply_distortion(const cv::Mat& bgr, Distortion type, int level, std::uint64_t seed);

double psnr(const cv::Mat& a, const cv::Mat& b);  // 8-bit images, dB (inf when identical)

}  // namespace evoq::eval
