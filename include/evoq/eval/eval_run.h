#pragma once
// The `evoq eval` pipeline without the command-line layer:
//   1. load every dataset and resolve its images; missing files are listed (first 20 per dataset on
//      stderr, all in OUT/missing.txt) and the run stops before scoring unless skip_missing is set;
//   2. score the images that OUT/scores.h5 does not hold yet (resumable; flushed every flush_every);
//   3. write OUT/results.json, OUT/results.csv, OUT/scores.csv (per image) and print the table.
//
// Sharding over ranks (world > 1): every rank reads all score files present at the start (OUT/scores.h5
// and OUT/scores.rank*.h5, whatever world size wrote them), then, after a barrier, scores the images
// i % world == rank of what is left into its own OUT/scores.rank<R>.h5. After a second barrier rank 0 merges
// every file into OUT/scores.h5 (atomically), removes the rank files and writes the outputs; the other
// ranks return an empty result. Finished work is never lost or scored twice, also when a resumed run
// uses another world size.
#include <cstddef>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "evoq/eval/report.h"
#include "evoq/eval/scorer.h"

namespace evoq::eval {

struct EvalSettings {
  std::string model;                          // scorer name (brisque, niqe, or a registered model scorer)
  ScorerSettings scorer;
  std::vector<std::string> datasets;          // names as in datasets.h (KonIQ-10k:test, csv:FILE, ...)
  std::map<std::string, std::string> roots;   // dataset name or alias (any case) -> image root
  std::string labels_dir;                     // empty: default_labels_dir()
  bool skip_missing = false;
  std::string out_dir = "eval-out";
  std::size_t flush_every = 50;
  std::string baseline_json;                  // a previous results.json for the baseline column
  int rank = 0, world = 1;                    // this process's shard
  std::function<void()> barrier;              // required when world > 1
  // Required when world > 1: every rank passes its error ("" for none) and gets back the same agreed
  // error (dist/agreement.h), so a failure on one rank ends every rank with the same message.
  std::function<std::string(const std::string&)> agree_on_error;
};

// Parses "NAME=DIR" (throws evoq::UsageError naming the option otherwise).
std::pair<std::string, std::string> parse_root(const std::string& spec);

EvalResult run_eval(const EvalSettings& settings, std::ostream& table_out);

}  // namespace evoq::eval
