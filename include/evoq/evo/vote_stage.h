#pragma once
// The offline stage as one collective call (paper section 3.1, Algorithm 1 lines 2-5): every rank votes
// its share of the pairs into its crash-safe shard segments (vote_loop.h, label_store.h), the ranks
// agree on the outcome, and rank 0 merges the shards into labels.h5. `evoq vote` calls it with the VLM
// voter, the tests' fake model with a hash-based voter.
//
// Failures: an error on one rank (disk full, unreadable shard) does not abort the job mid-way: that rank
// stops voting (what it flushed stays on disk), the others finish their own pairs, and then EVERY rank
// throws the same evoq::Error (exit status 1), so no rank segfaults or is killed half-way and a rerun
// after fixing the cause continues from the shards.
#include <nlohmann/json.hpp>

#include <functional>
#include <string>

#include "evoq/dist/communicator.h"
#include "evoq/evo/label_store.h"
#include "evoq/gen/sampling_settings.h"
#include "evoq/gen/vlm_session.h"
#include "evoq/evo/pairs.h"
#include "evoq/evo/vote_loop.h"

namespace evoq::evo {

struct VoteStageConfig {
  VoteConfig loop;
  std::string shard_dir;   // segments of every rank (a rerun resumes from them)
  std::string out_path;    // labels.h5
  std::string stats_path;  // optional: per-rank statistics as JSON (rank 0 writes it)
  bool merge_only = false;
  bool allow_partial = false;
};

// Runs the stage on every rank of `comm`. `vote` is this rank's model; `rank_extras` (optional) adds
// figures of this rank (e.g. prefill seconds) to its statistics. Returns 0, kExitSomePairsFailed (3:
// finished, some pairs failed) or dist::kExitStoppedBySignal (75: stopped by SIGUSR1/SIGTERM after flushing;
// rerun to continue); throws evoq::Error on every rank on failure.
int run_vote_stage(const PairSet& pairs, const LabelRunInfo& info, const VoteStageConfig& config,
                   const BatchVoteFn& vote, dist::Communicator& comm,
                   const std::function<nlohmann::json()>& rank_extras = {});

// Everything `evoq vote` does, as typed settings (src/apps parses them from the command line or a config
// file; `evoq evolve` builds them for each round).
struct VoteSettings {
  std::string model_dir;     // the voting model (round t votes with round t-1's model)
  std::string pairs_path;    // pairs.h5
  std::string out_path;      // labels.h5
  std::string shard_dir;     // "" = out_path + ".shards"
  std::string root;          // image root; "" = the root stored in pairs.h5
  int K = 32;
  std::uint64_t seed = 0;
  bool early_stop = true;
  bool reasoning = true;     // the paper's reasoning suffix after c_compare
  std::string prompt_file;   // "" = c_compare
  bool keep_responses = false;
  int pairs_per_batch = 4;
  int max_batch_sequences = 64;
  RankSplit split = RankSplit::block;
  int flush_every = 16;
  double flush_seconds = 60.0;
  double progress_every = 10.0;
  bool merge_only = false;
  bool allow_partial = false;
  std::string stats_path;
  gen::SamplingOverrides sampling;   // over vote_sampling_defaults
  gen::RuntimeSettings runtime;

  void validate() const;  // UsageError naming the option
};

// Collective: `evoq vote`. Returns run_vote_stage's status.
int run_vote(const VoteSettings& settings, dist::Communicator& comm);

}  // namespace evoq::evo
