#pragma once
// The `evoq eval` pipeline without the command-line layer:
//   1. load every dataset and resolve its images; missing files are listed (first 20 per dataset on
//      stderr, all in OUT/missing.txt) and the run stops before scoring unless skip_missing is set;
//   2. score the images that OUT/scores.h5 does not hold yet (resumable; flushed every flush_every);
//   3. write OUT/results.json, OUT/results.csv, OUT/scores.csv (per image) and print the table.
#include <cstddef>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "evoq/eval/report.h"
#include "evoq/eval/scorer.h"

namespace evoq::eval {

struct EvalOptions {
  std::string model;                          // scorer name (brisque, niqe, or a registered model scorer)
  ScorerOptions scorer_options;
  std::vector<std::string> datasets;          // names as in datasets.h (KonIQ-10k:test, csv:FILE, ...)
  std::map<std::string, std::string> roots;   // dataset name or alias (any case) -> image root
  std::string labels_dir;                     // empty: default_labels_dir()
  bool skip_missing = false;
  std::string out_dir = "eval-out";
  std::size_t flush_every = 50;
  std::string baseline_json;                  // a previous results.json for the baseline column
};

// Parses "NAME=DIR" (throws evoq::UsageError naming the option otherwise).
std::pair<std::string, std::string> parse_root(const std::string& spec);

EvalResult run_eval(const EvalOptions& options, std::ostream& table_out);

}  // namespace evoq::eval
