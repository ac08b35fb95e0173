#pragma once
// Resumable training checkpoints (docs/FORMATS.md "Training checkpoints"):
//   <run_dir>/checkpoints/step-<8 digits>/
//     model/               the weights in the Hugging Face layout (save_model) + tokenizer, processor and
//                          generation config files copied from the source model folder
//     optimizer-r<rank>.h5 each rank's DistributedAdamW state
//     trainer_state.h5     (rank 0) step, epoch, position, seed, extra JSON, rank count, time, and the
//                          SHA-256 of the weights (model_sha256, checked on load)
//   <run_dir>/checkpoints/latest   text file: the name of the newest complete checkpoint folder
// A checkpoint is written into ".tmp-step-<8 digits>" (shared file system assumed for multi-node runs),
// every file fsynced, the folder renamed, then `latest` replaced atomically and old checkpoints pruned,
// so after a crash at any moment latest_checkpoint() names a complete checkpoint (or none).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace evoq::dist {
class Communicator;
}
namespace evoq::model {
class QwenVL;
}

namespace evoq::train {

class DistributedAdamW;

struct TrainProgress {
  int64_t step = 0;      // optimizer steps completed
  int64_t epoch = 0;     // current epoch
  int64_t position = 0;  // pairs of the current epoch already consumed
  uint64_t seed = 0;
  nlohmann::json extra = nlohmann::json::object();  // trainer-defined (RNG counters, options, ...)
};

// Collective: all ranks call it with the same progress. keep_last: newest checkpoints to keep (0 = all).
void save_checkpoint(const std::string& run_dir, model::QwenVL& model, const std::string& source_model_dir,
                     const DistributedAdamW& opt, const TrainProgress& progress, dist::Communicator& comm,
                     int keep_last = 2);

// Path of the newest complete checkpoint folder; nullopt when there is none. Temporary folders are
// ignored; a missing or stale `latest` falls back to the highest complete step-* folder.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);

// Collective: loads the weights into the existing model, this rank's optimizer state and the progress.
// Throws evoq::Error naming the file on a missing file or a rank-count/layout mismatch.
TrainProgress load_checkpoint(const std::string& checkpoint_dir, model::QwenVL& model, DistributedAdamW& opt,
                              dist::Communicator& comm);

// Complete checkpoint folders, newest step first.
std::vector<std::string> complete_checkpoints(const std::string& run_dir);

struct ResumePoint {
  std::string checkpoint_dir;
  TrainProgress progress;
};

// Collective: loads the newest checkpoint that reads back intact (trainer state, weights against their
// checksum, this rank's optimizer state with its checksums). When the newest one is corrupt or
// truncated, it says so (a warning naming it and the reason) and falls back to the previous one; nullopt
// when the run has no checkpoint; throws evoq::Error when none can be loaded.
std::optional<ResumePoint> resume_from_newest_readable(const std::string& run_dir, model::QwenVL& model,
                                                       DistributedAdamW& opt, dist::Communicator& comm);

// Folder name of a step ("step-00000042").
std::string checkpoint_dir_name(int64_t step);

}  // namespace evoq::train
