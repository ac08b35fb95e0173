#pragma once
// Per-image scores of one `evoq eval` run, kept in an HDF5 file so an interrupted run resumes where it
// stopped. HDF5 is not crash-safe, so the whole file is rewritten under a temporary name, fsynced and
// renamed over the old one every `flush_every` new scores (and at the end): a crash loses at most the
// scores since the last flush, never the file.
//
// Layout (readable with h5py), schema_version 1:
//   attributes: schema_version (int), model (string), run_config (string, JSON of the scorer's settings),
//               created_by (string)
//   /dataset        vlen utf-8 string [n]   dataset name (e.g. "CSIQ")
//   /image          vlen utf-8 string [n]   image id as in the label file
//   /score          float64 [n]             raw scorer output; NaN when invalid
//   /invalid_reason vlen utf-8 string [n]   "" when valid
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace evoq::eval {

struct ScoreRecord {
  std::string dataset, image;
  double score = 0;             // NaN when invalid
  std::string invalid_reason;   // empty when valid
  bool valid() const { return invalid_reason.empty(); }
};

class ScoreStore {
 public:
  // Opens `path`: loads its records when it exists (throws evoq::Error if it was made by another model
  // or with other settings: `run_config` is the scorer's settings JSON), otherwise starts empty. Nothing
  // is written until add()/flush().
  ScoreStore(std::string path, std::string model, std::string run_config, std::size_t flush_every);

  bool contains(const std::string& dataset, const std::string& image) const;
  const ScoreRecord* find(const std::string& dataset, const std::string& image) const;
  void add(ScoreRecord record);  // replaces an earlier record of the same image; flushes every N adds
  void flush();                  // rewrites the file atomically (no-op when nothing changed)
  const std::vector<ScoreRecord>& records() const { return records_; }
  std::size_t size() const { return records_.size(); }

  // Low-level: writes / reads a score file (used by flush and the constructor; exposed for tests).
  static void write_file(const std::string& path, const std::string& model, const std::string& run_config,
                         const std::vector<ScoreRecord>& records);
  // run_config receives "" for files of earlier versions.
  static std::vector<ScoreRecord> read_file(const std::string& path, std::string* model,
                                            std::string* run_config = nullptr);

 private:
  std::string path_, model_, run_config_;
  std::size_t flush_every_, pending_ = 0;
  std::vector<ScoreRecord> records_;
  std::map<std::pair<std::string, std::string>, std::size_t> index_;
};

// Throws UsageError naming `path` and each differing key when a score file's recorded settings differ
// from this run's (both JSON; "" skips the check: files of earlier versions).
void check_same_settings(const std::string& path, const std::string& stored, const std::string& now);

}  // namespace evoq::eval
