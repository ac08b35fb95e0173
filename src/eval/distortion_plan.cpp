#include "evoq/eval/distortion_plan.h"

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>

#include "evoq/core/error.h"
#include "evoq/eval/csv.h"

namespace evoq::eval {
namespace fs = std::filesystem;
namespace {

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

PlannedVariant make(const std::string& path, Distortion type, int level, std::uint64_t seed) {
  PlannedVariant v;
  v.reference_path = path;
  v.reference_id = fs::path(path).stem().string();
  v.type = type;
  v.level = level;
  v.seed = reference_seed(seed, v.reference_id);
  v.output_name = v.reference_id + "__" + distortion_info(type).name + "_" + std::to_string(level) + ".png";
  return v;
}

}  // namespace

std::uint64_t reference_seed(std::uint64_t seed, const std::string& reference_id) {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a of the id, mixed with the seed
  for (unsigned char c : reference_id) h = (h ^ c) * 1099511628211ULL;
  return splitmix(h ^ splitmix(seed));
}

std::vector<PlannedVariant> plan_grid(const std::vector<std::string>& references, const std::vector<Distortion>& types,
                                      const std::vector<int>& levels, std::uint64_t seed) {
  std::vector<PlannedVariant> plan;
  for (const auto& ref : references)
    for (Distortion t : types)
      for (int l : levels) plan.push_back(make(ref, t, l, seed));
  return plan;
}

std::vector<PlannedVariant> plan_round2(const std::vector<std::string>& references, int variants, std::uint64_t seed) {
  EVOQ_CHECK(variants >= 1 && variants <= kDistortionCount, "--variants ", variants, " must be in 1..",
             kDistortionCount);
  std::vector<PlannedVariant> plan;
  for (const auto& ref : references) {
    // std::mt19937_64 output is fixed by the standard; the draws below use it directly (no distributions,
    // whose algorithms differ between standard libraries).
    std::mt19937_64 rng(reference_seed(seed ^ 0x5eed2ULL, fs::path(ref).stem().string()));
    std::vector<int> order(kDistortionCount);
    std::iota(order.begin(), order.end(), 1);
    for (int i = kDistortionCount - 1; i > 0; --i)
      std::swap(order[i], order[rng() % static_cast<std::uint64_t>(i + 1)]);
    for (int k = 0; k < variants; ++k) {
      const int level = 1 + static_cast<int>(rng() % kDistortionLevels);
      plan.push_back(make(ref, static_cast<Distortion>(order[k]), level, seed));
    }
  }
  return plan;
}

std::string manifest_csv(const std::vector<PlannedVariant>& plan, const std::string& out_dir) {
  std::string out = "path,reference_id,reference_path,type,type_id,level\n";
  for (const auto& v : plan)
    out += csv_field((fs::path(out_dir) / v.output_name).string()) + "," + csv_field(v.reference_id) + "," +
           csv_field(v.reference_path) + "," + distortion_info(v.type).name + "," +
           std::to_string(static_cast<int>(v.type)) + "," + std::to_string(v.level) + "\n";
  return out;
}

}  // namespace evoq::eval
