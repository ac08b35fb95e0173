#pragma once
// `evoq evolve` as one collective call: T rounds of EvoQuality (paper Algorithm 1) in one run folder:
//   round t: pairs -> vote (with round t-1's model) -> train (GRPO) -> eval
// or, with method "evoestimate", the paper's ablation: pairs -> estimate -> train (reward estimate) -> eval.
//   RUN/round_<t>/{pairs.h5, labels.h5, labels.h5.shards/, train/, model -> train/checkpoints/<last>/model,
//                  eval/, eval.json},  RUN/round_0/eval (the initial model),  RUN/state.json,  RUN/summary.csv
// Each stage is the library entry point a user's `evoq vote|train|eval` also calls, with typed settings.
// state.json (written atomically by rank 0 after each stage) records the run's settings, every stage's
// included, and which stages are done; each stage resumes from its own files, so rerunning the same
// command after any crash continues where it stopped, and a rerun with any setting changed is refused
// with one line naming the keys and both values.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "evoq/dist/communicator.h"
#include "evoq/eval/eval_run.h"
#include "evoq/evo/estimate_stage.h"
#include "evoq/train/train_run.h"
#include "evoq/evo/vote_stage.h"

namespace evoq::train {

struct EvolveSettings {
  std::string run_dir;
  std::string initial_model;
  int rounds = 2;
  std::vector<std::string> images;  // image pool per round (the last one repeats)
  std::vector<std::string> modes;   // pair sampling per round; default round 1 random, later same-reference
  std::vector<std::string> roots;   // list-file roots per round
  long long pairs = 20000;
  std::uint64_t seed = 0;           // round t uses seed + t
  std::string method = "evoquality";  // evoquality | evoestimate
  std::string reference = "base";   // pi_ref: base (the initial model, every round) | round (round t-1's model)
  bool eval_initial = true;
  // Stage templates: the model, data paths, output paths and seed are set per round.
  evo::VoteSettings vote;
  evo::EstimateSettings estimate;
  TrainSettings train;
  eval::EvalSettings eval;          // eval.datasets empty: no evaluation

  void validate() const;  // UsageError naming the option
  // What state.json records and a rerun must match: the run's settings and every stage's settings that
  // change results (per-round paths, models and seeds left out, as they follow from these).
  nlohmann::json fingerprint() const;
};

// Collective. Returns 0, or dist::kExitStoppedBySignal (75) when a stage stopped on a signal; throws
// evoq::Error on every rank on failure.
int run_evolution(const EvolveSettings& settings, const std::shared_ptr<dist::Communicator>& world);

}  // namespace evoq::train
