#pragma once
// Batches of labelled pairs for the online stage (paper Algorithm 1 line 6): the usable pairs of
// labels.h5, a seeded shuffle per epoch, B pairs per global step, and the split of a step's
// images across ranks.
//
// Resumability: the batch of global step s is a pure function of (labels, seed, B, s): epoch
// e = s / steps_per_epoch, position (s mod steps_per_epoch) * B in epoch e's permutation, which
// is drawn from a generator seeded by (seed, e). The last incomplete batch of an epoch is dropped
// (every step has exactly B pairs), so a resumed run needs nothing but the step number.
#include <cstdint>
#include <string>
#include <vector>

namespace evoq::train {

struct TrainPair {
  std::int64_t pair_index = -1;  // row in pairs.h5
  std::int64_t i = -1, j = -1;   // image indices into TrainData::image_paths
  double p_star = 0.5;           // Eq. 1 label of (x_i, x_j)
};

struct TrainData {
  std::vector<std::string> image_paths;  // resolved (root / path); index = image id of labels.h5
  std::vector<TrainPair> pairs;          // usable pairs in file order
  std::size_t skipped_failed = 0;        // pairs the vote could not process
  std::size_t skipped_unlabelled = 0;    // pairs without a label (p* NaN: every answer invalid)
  std::string labels_path;
};

// Reads labels.h5 (docs/FORMATS.md "labels.h5"); relative image paths are joined to its `root`
// attribute. Throws evoq::Error naming the file when it has no usable pair.
TrainData load_train_data(const std::string& labels_path);

struct StepLocation {
  std::int64_t epoch = 0;
  std::int64_t position = 0;  // index of the step's first pair in the epoch's permutation
};

class TrainBatches {
 public:
  TrainBatches(const TrainData& data, std::int64_t pairs_per_step, std::uint64_t seed);

  std::int64_t steps_per_epoch() const { return steps_per_epoch_; }
  StepLocation locate(std::int64_t step) const;
  // Indices into data.pairs of global step `step`'s B pairs.
  std::vector<std::size_t> step_pairs(std::int64_t step) const;
  // The permutation of data.pairs used in `epoch` (seeded by (seed, epoch)).
  std::vector<std::size_t> epoch_order(std::int64_t epoch) const;

 private:
  const TrainData& data_;
  std::int64_t B_;
  std::uint64_t seed_;
  std::int64_t steps_per_epoch_;
  mutable std::int64_t cached_epoch_ = -1;
  mutable std::vector<std::size_t> cached_order_;
};

// The distinct images of a set of pairs, ascending image id.
std::vector<std::int64_t> step_images(const TrainData& data, const std::vector<std::size_t>& pairs);

// Training data of EvoEstimate (estimates.h5 of `evoq estimate`): one unit per image with a pseudo score,
// stored as a TrainPair with i == j (the batching, rank split and rollouts files are shared with
// EvoQuality; B = images per step). pseudo_scores receives one entry per image id (NaN for images without
// one). Throws evoq::Error naming the file when no image has a pseudo score.
TrainData load_estimate_data(const std::string& path, std::vector<double>& pseudo_scores);

}  // namespace evoq::train
