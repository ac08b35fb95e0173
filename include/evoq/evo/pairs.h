#pragma once
// Image pairs for a voting round: seeded sampling (round 1: uniform distinct unordered pairs;
// round 2: pairs under the same reference id), user pair lists, and the pairs.h5 file
// (schema in docs/FORMATS.md "pairs.h5").
#include <cstdint>
#include <string>
#include <vector>

#include "evoq/evo/manifest.h"

namespace evoq::evo {

inline constexpr std::int64_t kPairsSchemaVersion = 1;

struct PairSet {
  std::vector<std::string> image_paths;    // relative to root
  std::vector<std::string> reference_ids;  // parallel to image_paths ("" = none)
  std::string root;
  std::vector<std::int64_t> first, second;  // image indices of pair p: (first[p], second[p])
  // Provenance (attributes of pairs.h5).
  std::uint64_t seed = 0;
  std::string mode;  // "random" | "same-reference" | "list"
  std::string manifest;
  std::string creation_time;

  std::size_t size() const { return first.size(); }
  // root / image_paths[image] (the path itself when absolute).
  std::string resolve(std::int64_t image) const;
};

// Counter-based 64-bit hash of (seed, a, b): SplitMix64 finaliser applied in a chain,
//   h = mix(mix(mix(seed) ^ a) ^ b),  mix(z) = SplitMix64 output function of z + 0x9E3779B97F4A7C15.
// Pure function of its inputs: used for per-sample order swaps and test answers (docs/FORMATS.md).
std::uint64_t counter_hash(std::uint64_t seed, std::uint64_t a, std::uint64_t b);

// Number of distinct unordered pairs available in each mode.
std::uint64_t count_random_pairs(std::size_t n_images);
std::uint64_t count_same_reference_pairs(const std::vector<std::string>& reference_ids);

// n distinct unordered pairs (no self-pairs), uniform over all pairs, order shuffled, stored with
// first < second. Throws evoq::Error when n exceeds the number of possible pairs.
PairSet sample_random_pairs(const Manifest& manifest, std::uint64_t n, std::uint64_t seed);
// As above but only pairs of images sharing a non-empty reference id.
PairSet sample_same_reference_pairs(const Manifest& manifest, std::uint64_t n, std::uint64_t seed);
// Pairs from a file, one per line `path_a,path_b` (paths as in the manifest, or 0-based indices);
// '#' comments and blank lines skipped. Self-pairs, duplicates (either order) and unknown images
// are errors naming the line. The order within a pair is kept.
PairSet read_pair_list(const Manifest& manifest, const std::string& list_file);

void write_pairs_h5(const std::string& path, const PairSet& pairs);
PairSet read_pairs_h5(const std::string& path);

}  // namespace evoq::evo
