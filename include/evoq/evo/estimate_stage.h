#pragma once
// The offline stage of the EvoEstimate ablation as one collective call (`evoq estimate`): K sampled
// c_score answers per image of a pairs file, their mean as pseudo score, written to estimates.h5 by
// rank 0 (docs/TRAINING.md "EvoEstimate").
#include <cstdint>
#include <string>

#include "evoq/dist/communicator.h"
#include "evoq/gen/sampling_settings.h"
#include "evoq/gen/vlm_session.h"

namespace evoq::evo {

struct EstimateSettings {
  std::string model_dir, pairs_path, out_path;
  std::string root;            // "" = the root stored in pairs.h5
  int K = 32;
  std::uint64_t seed = 0;
  bool reasoning = true;
  std::string prompt_file;     // "" = c_score
  bool keep_responses = true;
  int batch_images = 8;
  int max_batch_sequences = 64;
  gen::SamplingOverrides sampling;  // over vote_sampling_defaults
  gen::RuntimeSettings runtime;

  void validate() const;
};

// Collective; returns 0, throws evoq::Error on every rank on failure.
int run_estimate(const EstimateSettings& settings, dist::Communicator& comm);

}  // namespace evoq::evo
