#include "evoq/eval/score_store.h"

#include <cmath>
#include <filesystem>

#include "evoq/core/error.h"
#include "evoq/core/settings_diff.h"
#include "evoq/io/h5.h"

namespace evoq::eval {
namespace {

constexpr std::int64_t kSchemaVersion = 1;
namespace h5 = io::h5;

}  // namespace

void check_same_settings(const std::string& path, const std::string& stored, const std::string& now) {
  if (stored.empty() || now.empty() || stored == now) return;
  std::string differences;
  try {
    differences = describe_settings_differences(nlohmann::json::parse(stored), nlohmann::json::parse(now));
  } catch (const std::exception&) {
    differences = "(unreadable run_config)";
  }
  if (!differences.empty())
    throw UsageError(path + ": holds scores made with other settings: " + differences +
                     "; use another --out directory");
}

void ScoreStore::write_file(const std::string& path, const std::string& model, const std::string& run_config,
                            const std::vector<ScoreRecord>& records) {
  std::vector<std::string> datasets, images, reasons;
  std::vector<double> scores;
  for (const auto& r : records) {
    datasets.push_back(r.dataset);
    images.push_back(r.image);
    reasons.push_back(r.invalid_reason);
    scores.push_back(r.valid() ? r.score : std::nan(""));
  }
  h5::write_file_atomic(path, [&](H5::H5File& file) {
    h5::set_attr(file, "schema_version", kSchemaVersion);
    h5::set_attr(file, "model", model);
    h5::set_attr(file, "run_config", run_config);
    h5::set_attr(file, "created_by", std::string("evoq eval"));
    h5::write_strings(file, "dataset", datasets);
    h5::write_strings(file, "image", images);
    h5::write_strings(file, "invalid_reason", reasons);
    h5::write_vector(file, "score", scores);
  });
}

std::vector<ScoreRecord> ScoreStore::read_file(const std::string& path, std::string* model, std::string* run_config) {
  auto file = h5::open_read(path);
  EVOQ_CHECK(h5::has_attr(file, "schema_version"), path, ": no schema_version (not a score file)");
  const auto version = h5::get_attr_int(file, "schema_version");
  EVOQ_CHECK(version == kSchemaVersion, path, ": score file schema_version ", version, ", expected ", kSchemaVersion);
  if (model) *model = h5::get_attr_string(file, "model");
  if (run_config) *run_config = h5::has_attr(file, "run_config") ? h5::get_attr_string(file, "run_config") : "";
  const auto datasets = h5::read_strings(file, "dataset"), images = h5::read_strings(file, "image"),
             reasons = h5::read_strings(file, "invalid_reason");
  const auto scores = h5::read_vector<double>(file, "score");
  EVOQ_CHECK(images.size() == datasets.size() && reasons.size() == datasets.size() && scores.size() == datasets.size(),
             path, ": datasets of unequal length");
  std::vector<ScoreRecord> out(datasets.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = {datasets[i], images[i], scores[i], reasons[i]};
  return out;
}

ScoreStore::ScoreStore(std::string path, std::string model, std::string run_config, std::size_t flush_every)
    : path_(std::move(path)), model_(std::move(model)), run_config_(std::move(run_config)),
      flush_every_(flush_every ? flush_every : 1) {
  if (!std::filesystem::exists(path_)) return;
  std::string stored_model, stored_config;
  for (auto& r : read_file(path_, &stored_model, &stored_config)) {
    index_[{r.dataset, r.image}] = records_.size();
    records_.push_back(std::move(r));
  }
  EVOQ_CHECK(stored_model == model_, path_, ": holds scores of model '", stored_model, "', not '", model_,
             "'; use another --out directory");
  check_same_settings(path_, stored_config, run_config_);
}

bool ScoreStore::contains(const std::string& dataset, const std::string& image) const {
  return index_.contains({dataset, image});
}

const ScoreRecord* ScoreStore::find(const std::string& dataset, const std::string& image) const {
  const auto it = index_.find({dataset, image});
  return it == index_.end() ? nullptr : &records_[it->second];
}

void ScoreStore::add(ScoreRecord record) {
  const auto key = std::make_pair(record.dataset, record.image);
  if (const auto it = index_.find(key); it != index_.end()) {
    records_[it->second] = std::move(record);
  } else {
    index_[key] = records_.size();
    records_.push_back(std::move(record));
  }
  if (++pending_ >= flush_every_) flush();
}

void ScoreStore::flush() {
  if (pending_ == 0 && std::filesystem::exists(path_)) return;
  write_file(path_, model_, run_config_, records_);
  pending_ = 0;
}

}  // namespace evoq::eval
