#pragma once
// The rollouts file of one GRPO step (docs/TRAINING.md "Rollouts file"): every rank's rollouts are
// gathered on rank 0 and written as one HDF5 file, crash-safely (temporary name, fsync, rename).
#include <string>
#include <vector>

#include "evoq/dist/communicator.h"
#include "evoq/train/rollout.h"

namespace evoq::train {

inline constexpr std::int64_t kRolloutsSchemaVersion = 1;

struct RolloutFileInfo {
  std::int64_t step = 0, epoch = 0, position = 0;
  std::uint64_t seed = 0;
  int samples = 0;
  std::string prompt, model_path, labels_path;
  std::string run_config;  // the training run's settings (JSON), an attribute of the file
};

// Collective: gathers `mine` (this rank's rollouts) from every rank; rank 0 writes `path`.
void write_rollouts(const std::string& path, const std::vector<ImageRollout>& mine, const TrainData& data,
                    const std::vector<std::size_t>& step_pairs, const RolloutFileInfo& info,
                    dist::Communicator& comm);

}  // namespace evoq::train
