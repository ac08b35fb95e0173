#pragma once
// estimates.h5: the offline stage of EvoEstimate (`evoq estimate`), one pseudo score per image
// (docs/FORMATS.md "estimates.h5"), read for `evoq train --reward estimate` by train/train_batches.h.
#include <cstdint>
#include <string>
#include <vector>


namespace evoq::evo {

inline constexpr std::int64_t kEstimatesSchemaVersion = 1;

struct Estimates {
  std::vector<std::string> image_path;    // relative to root (or absolute), as in pairs.h5
  std::vector<std::string> reference_id;  // "" when none
  std::vector<double> pseudo_score;       // mean of the valid sampled scores; NaN when none was valid
  std::vector<std::int32_t> valid;        // valid answers per image
  std::int64_t K = 0;                     // samples per image
  std::vector<double> sample_score;       // [N*K] row-major: sample k of image n; NaN when invalid
  std::vector<std::string> responses;     // [N*K] raw answers (empty when not kept)
  // Provenance.
  std::string root, model_path, model_checksum, prompt, sampling, pairs_file;
  std::uint64_t seed = 0;
};

void write_estimates_h5(const std::string& path, const Estimates& e);
Estimates read_estimates_h5(const std::string& path);


}  // namespace evoq::evo
