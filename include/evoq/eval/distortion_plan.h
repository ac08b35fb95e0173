#pragma once
// Which distorted variants to make from a set of reference images, and the manifest that records them.
//   grid:   every reference x every chosen type x every chosen level;
//   round2: the paper's round-2 recipe (You et al. 2024 as used by EvoQuality): per reference, `variants`
//           (default 10) distinct types drawn at random from the 25, each at a random level 1..5.
// The draws for one reference depend only on the seed and the reference id, so adding references does not
// change the variants of the others.
#include <cstdint>
#include <string>
#include <vector>

#include "evoq/eval/distortions.h"

namespace evoq::eval {

struct PlannedVariant {
  std::string reference_id;    // file stem of the reference
  std::string reference_path;
  Distortion type;
  int level;
  std::uint64_t seed;          // passed to apply_distortion (per reference and type)
  std::string output_name;     // "<reference_id>__<type>_<level>.png"
};

std::uint64_t reference_seed(std::uint64_t seed, const std::string& reference_id);

std::vector<PlannedVariant> plan_grid(const std::vector<std::string>& references, const std::vector<Distortion>& types,
                                      const std::vector<int>& levels, std::uint64_t seed);
std::vector<PlannedVariant> plan_round2(const std::vector<std::string>& references, int variants, std::uint64_t seed);

// Manifest CSV: path,reference_id,reference_path,type,type_id,level
std::string manifest_csv(const std::vector<PlannedVariant>& plan, const std::string& out_dir);

}  // namespace evoq::eval
