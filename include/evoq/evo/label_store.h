#pragma once
// Crash-safe, resumable store of voting results (issue 5).
//
// Each rank keeps ONE shard file "<dir>/labels-shard-r<rank>.h5" holding every pair that rank has
// finished so far (across runs). A flush rewrites the whole shard under a temporary name, fsyncs it
// and renames it over the old one, so after kill -9 at any moment the shard on disk is either the
// previous or the new complete file: nothing flushed is lost, nothing is duplicated.
//
// On start every rank reads ALL shards of the folder: the finished set is their union, so a rerun
// skips finished pairs, also with a different rank count (old shards of ranks that no longer exist
// are kept and merged). A shard written with different run settings (the `run_config` JSON: K,
// seed, model checksum, prompt, sampling, pairs file...) is refused with a message naming the
// differing keys. merge_labels() assembles labels.h5 (docs/FORMATS.md "labels.h5").
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <unordered_set>
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
  nlohmann::json to_json() const;
};

class LabelStore {
 public:
  // Opens (creating) the shard folder for `rank`, loads every shard there and checks its run_config.
  LabelStore(std::string dir, int rank, const LabelRunInfo& info);

  bool finished(std::int64_t pair_index) const { return finished_.count(pair_index) > 0; }
  std::size_t finished_count() const { return finished_.size(); }
  // Records a finished pair (kept in memory until flush()). Adding a finished pair is an error.
  void add(PairLabel label);
  std::size_t pending() const { return pending_; }
  // Rewrites this rank's shard with every pair it holds (crash-safe). No-op when nothing is pending.
  void flush();

  const std::string& shard_path() const { return shard_path_; }
  static std::string shard_name(int rank);

 private:
  std::string dir_, shard_path_, config_text_;
  int rank_;
  std::vector<PairLabel> mine_;  // this rank's shard contents
  std::unordered_set<std::int64_t> finished_;
  std::size_t pending_ = 0;
};

// Reads every shard file of a folder (sorted by name). Throws evoq::Error on a corrupt shard or a
// run_config that differs from `expected_config` (unless it is empty).
std::vector<PairLabel> read_shards(const std::string& dir, const std::string& expected_config = "");

struct MergeSummary {
  std::size_t pairs = 0, labelled = 0, no_label = 0, failed = 0, missing = 0;
};

// Merges the shards of `dir` into labels.h5 at out_path (crash-safe). Pairs are written in pair
// order. Refuses when pairs are missing unless allow_partial; a pair present twice with different
// content is an error.
MergeSummary merge_labels(const std::string& dir, const PairSet& pairs, const LabelRunInfo& info,
                          const std::string& out_path, bool allow_partial = false);

// Reads labels.h5 back (records in file order) — for tests and the training stage.
std::vector<PairLabel> read_labels_h5(const std::string& path);

}  // namespace evoq::evo
