#pragma once
// Crash-safe, resumable store of voting results (issue 5; append-only since issue 15).
//
// Each flush of a rank writes the pairs it finished since the last flush into a NEW segment file
// "<dir>/labels-shard-r<rank>-<seq>.h5" (seq = 000000, 000001, ...), built in memory and put in place
// by temporary name + fsync + rename (io/h5.h). A flush therefore costs O(new pairs), whatever the
// shard has already grown to, and after kill -9 at any moment every segment on disk is complete:
// nothing flushed is lost, nothing is duplicated. Segments carry checksums (Fletcher32 on the numeric
// columns, a SHA-256 over the rest) and are verified whenever they are read.
//
// On start every rank reads ALL segments of the folder: the finished set is their union, so a rerun
// skips finished pairs, also with a different rank count. A segment written with different run
// settings (the `run_config` JSON: K, seed, model checksum, prompt, sampling, pairs file...) is
// refused with a message naming the differing keys. merge_labels() checks every pair against Eq. 1
// (p* and the vote counts recomputed from the stored per-sample answers) and assembles labels.h5
// (docs/FORMATS.md "labels.h5"). The single-file shards of earlier versions ("labels-shard-r<rank>.h5")
// are read as well.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "evoq/evo/pairs.h"

namespace evoq::evo {

inline constexpr std::int64_t kLabelsSchemaVersion = 1;

// Per-sample answer in the ORIGINAL pair order.
enum SampleAnswer : std::int8_t { answer_first = 0, answer_second = 1, answer_invalid = -1 };

struct PairLabel {
  std::int64_t pair_index = -1;
  std::int32_t votes_i = 0, votes_j = 0, invalid = 0, samples_used = 0;
  double p_star = 0.0;  // Eq. 1; NaN when the pair has no label (all answers invalid) or failed
  bool failed = false;
  std::string fail_reason;
  std::vector<std::int8_t> answers;   // per sample (SampleAnswer), samples_used entries
  std::vector<std::uint8_t> swapped;  // per sample: 1 when x_j was shown first
  std::vector<std::string> responses; // raw responses (empty unless kept)
};

// Provenance written as attributes of labels.h5; to_json() is the run fingerprint.
struct LabelRunInfo {
  std::string model_path;
  std::string model_checksum;
  int K = 0;
  nlohmann::json sampling = nlohmann::json::object();  // temperature, top_p, ... as the caller sets them
  std::uint64_t seed = 0;
  std::string prompt;
  bool early_stop = true;
  std::string pairs_file;
  std::uint64_t num_pairs = 0;
  bool keep_responses = false;
  std::string root;  // the folder the pair images were read from ("" in runs of earlier versions)
  nlohmann::json to_json() const;
};

class LabelStore {
 public:
  // Opens (creating) the shard folder for `rank`, loads every segment there and checks its run_config.
  LabelStore(std::string dir, int rank, const LabelRunInfo& info);

  bool finished(std::int64_t pair_index) const { return finished_.count(pair_index) > 0; }
  std::size_t finished_count() const { return finished_.size(); }
  // Records a finished pair (kept in memory until flush()). Adding a finished pair is an error.
  void add(PairLabel label);
  std::size_t pending() const { return pending_.size(); }
  // Writes the pending pairs as this rank's next segment (crash-safe). No-op when nothing is pending.
  // On failure (disk full...) it throws evoq::Error naming the segment and the reason; the pending
  // pairs are kept, so a later flush may still write them.
  void flush();

  const std::string& dir() const { return dir_; }
  // Name of segment `seq` of `rank`.
  static std::string segment_name(int rank, std::int64_t seq);

 private:
  std::string dir_, config_text_;
  int rank_;
  std::int64_t next_segment_ = 0;
  std::vector<PairLabel> pending_;
  std::unordered_set<std::int64_t> finished_;
};

// Eq. 1 consistency of one record: vote counts equal the counts of its per-sample answers and p* is
// majority_vote's value (NaN for no label or a failed pair). Returns "" when consistent, else why not.
std::string label_inconsistency(const PairLabel& label);

// Reads every shard file of a folder (sorted by name). Throws evoq::Error on a corrupt shard or a
// run_config that differs from `expected_config` (unless it is empty).
std::vector<PairLabel> read_shards(const std::string& dir, const std::string& expected_config = "");

struct MergeSummary {
  std::size_t pairs = 0, labelled = 0, no_label = 0, failed = 0, missing = 0;
};

// Merges the shards of `dir` into labels.h5 at out_path (crash-safe). Pairs are written in pair
// order. Refuses when pairs are missing unless allow_partial; a pair present twice with different
// content, or a pair whose p* or vote counts do not follow from its stored answers (Eq. 1), is an
// error naming the pair and its segment.
MergeSummary merge_labels(const std::string& dir, const PairSet& pairs, const LabelRunInfo& info,
                          const std::string& out_path, bool allow_partial = false);

struct LabelCounts {
  std::size_t failed = 0, missing = 0;
};

// Writes labels.h5 (docs/FORMATS.md "labels.h5") for `records` (each naming a pair of `pairs`),
// crash-safe. Used by merge_labels and by labels made from scores (score_labels.h); extra_attrs are
// written as string attributes (e.g. where the labels came from).
void write_labels_h5(const std::string& out_path, const PairSet& pairs, const std::vector<PairLabel>& records,
                     const LabelRunInfo& info, const LabelCounts& counts, bool with_responses,
                     const std::vector<std::pair<std::string, std::string>>& extra_attrs = {});

// Reads labels.h5 back (records in file order) — for tests and the training stage.
std::vector<PairLabel> read_labels_h5(const std::string& path);

}  // namespace evoq::evo
