#pragma once
// Model-agnostic voting loop of the offline stage (paper section 3.1, Algorithm 1 lines 2-5).
//
// The model is injected as a VoteFn, so the loop (rank split, order swaps, Eq. 1, lossless early
// stop, crash-safe shards, resume, progress) is tested without one.
//
// Determinism: sample k of pair p is shown swapped (x_j first) iff
// gen::compare_sample_swapped(seed, p, k) — a pure function of (seed, pair, sample), the same rule
// as `evoq compare`, decided PER SAMPLE so that position bias averages out within a pair. A VoteFn that draws its
// sampling randomness from (seed, pair, sample) as well makes the labels independent of the rank count and of resumes.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "evoq/evo/label_store.h"
#include "evoq/evo/pairs.h"

namespace evoq::evo {

// The answer as shown to the model: 0 = first shown image better, 1 = second shown, invalid.
enum class ShownAnswer : std::int8_t { first = 0, second = 1, invalid = -1 };

struct SampleRequest {
  int sample_index;  // 0..K-1
  bool swapped;      // true: x_j is shown first
};

struct SampleResult {
  ShownAnswer answer = ShownAnswer::invalid;
  std::string response;  // raw text (stored only with keep_responses)
};

struct PairTask {
  std::int64_t pair_index;
  std::int64_t image_i, image_j;
  const PairSet* pairs;
};

// Produces one result per request, in order. Throwing evoq::Error marks the pair as failed with the
// message as reason (e.g. an unreadable image) and the loop goes on; other exceptions propagate.
using VoteFn = std::function<std::vector<SampleResult>(const PairTask&, const std::vector<SampleRequest>&)>;

// Adapts a one-sample function vote(pair, sample_index, swapped).
VoteFn per_sample(std::function<SampleResult(const PairTask&, int sample_index, bool swapped)> vote);

// Batched form: the next samples of several pairs at once (one model call for all of them).
struct PairWave {
  const PairTask* task;
  std::vector<SampleRequest> requests;
};
struct WaveResult {
  std::vector<SampleResult> results;  // one per request, in order (ignored when failed)
  bool failed = false;                // the pair cannot be voted (e.g. unreadable image)
  std::string fail_reason;
};
using BatchVoteFn = std::function<std::vector<WaveResult>(const std::vector<PairWave>&)>;

// Runs a per-pair VoteFn pair by pair; its evoq::Error marks that pair failed.
BatchVoteFn batched(VoteFn vote);

bool sample_swapped(std::uint64_t seed, std::int64_t pair_index, int sample_index);

// Maps a shown answer back to the original order (x_i, x_j).
SampleAnswer to_original_order(ShownAnswer answer, bool swapped);

// Exit status of `evoq vote` when it finished but some pairs failed (their reasons are in labels.h5).
inline constexpr int kExitSomePairsFailed = 3;

enum class RankSplit { block, strided };
RankSplit parse_rank_split(const std::string& name);  // block | strided

// Pair indices of `rank` out of `size` (core/rank_partition.h): block_range or strided_indices.
std::vector<std::int64_t> pairs_of_rank(std::size_t num_pairs, int rank, int size, RankSplit split);

struct VoteConfig {
  int K = 32;
  bool early_stop = true;
  std::uint64_t seed = 0;
  // Samples requested per pair between two early-stop checks; 0 = adaptive: the fewest samples
  // that could decide Eq. 1 (samples_that_could_decide), i.e. the largest lossless wave.
  int samples_per_call = 0;
  int pairs_per_batch = 1;          // pairs voted together (their waves go to one BatchVoteFn call)
  int flush_every_pairs = 16;       // flush the shard after this many new pairs...
  double flush_every_seconds = 60;  // ...or this much time, whichever comes first
  double progress_every_seconds = 10;
  bool keep_responses = false;
  RankSplit split = RankSplit::block;
};

struct VoteStats {
  std::size_t assigned = 0;        // pairs of this rank
  std::size_t skipped = 0;         // already finished before this run
  std::size_t done = 0;            // finished in this run
  std::size_t failed = 0;
  std::size_t samples = 0;         // samples drawn in this run
  std::size_t samples_saved = 0;   // K * done(non-failed) - samples
  std::size_t invalid = 0;
  double seconds = 0.0;
  bool stopped = false;            // a stop signal ended the loop early (everything finished is flushed)
  std::vector<double> flush_seconds;  // wall time of each shard flush, in order (benchmarks: bench/)
};

struct ProgressInfo {
  const VoteStats* stats;
  std::size_t remaining;  // pairs of this rank still to do
  int K;
  double elapsed_seconds;
};
// "vote: 120/500 pairs (+20 resumed), 3.2 pairs/s, early stop saved 41.0% of samples, invalid 2.1%, ETA 2m05s"
std::string format_progress(const ProgressInfo& info);

// Runs the vote for this rank's pairs, skipping pairs the store already holds. After each batch of
// pairs it checks stop_signal.h's flag (SIGUSR1/SIGTERM): when set it flushes and returns with
// stats.stopped, so a pre-empted job loses nothing it finished. `progress` (may be
// empty) receives a line every progress_every_seconds and at the end; its counts are this rank's
// (no collective runs inside the loop, so ranks never wait on each other; rank 0's line is
// representative with a balanced split, and a caller can all_gather the VoteStats at the end). Flushes the store at the
// end.
VoteStats run_voting(const PairSet& pairs, int rank, int size, const BatchVoteFn& vote, LabelStore& store,
                     const VoteConfig& config, const std::function<void(const std::string&)>& progress = {});
inline VoteStats run_voting(const PairSet& pairs, int rank, int size, const VoteFn& vote, LabelStore& store,
                            const VoteConfig& config, const std::function<void(const std::string&)>& progress = {}) {
  return run_voting(pairs, rank, size, batched(vote), store, config, progress);
}

// Votes one pair: requests samples until K are drawn or (with early stop) Eq. 1 is decided.
PairLabel vote_pair(const PairTask& task, const VoteFn& vote, const VoteConfig& config);

// Votes several pairs together, wave by wave, until each has K samples or is decided; labels in
// the order of `tasks`. Gives the same labels as vote_pair on each task alone.
std::vector<PairLabel> vote_pairs(const std::vector<PairTask>& tasks, const BatchVoteFn& vote,
                                  const VoteConfig& config);

}  // namespace evoq::evo
