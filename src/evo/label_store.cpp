#include "evoq/evo/label_store.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <regex>
#include <tuple>

#include "evoq/core/error.h"
#include "evoq/core/settings_diff.h"
#include "evoq/io/h5.h"
#include "evoq/evo/majority_vote.h"

namespace fs = std::filesystem;

namespace evoq::evo {

namespace h5 = io::h5;

nlohmann::json LabelRunInfo::to_json() const {
  auto j = nlohmann::json{{"model_path", model_path}, {"model_checksum", model_checksum}, {"K", K},
                          {"sampling", sampling},     {"seed", seed},                     {"prompt", prompt},
                          {"early_stop", early_stop}, {"pairs_file", pairs_file},         {"num_pairs", num_pairs},
                          {"keep_responses", keep_responses}};
  if (!root.empty()) j["root"] = root;
  return j;
}

namespace {

// "labels-shard-r<rank>-<seq>.h5" (segments), or "labels-shard-r<rank>.h5" (single-file shards of
// earlier versions, read as segment -1).
const std::regex kShardPattern(R"(labels-shard-r(\d+)(?:-(\d+))?\.h5)");

bool same_label(const PairLabel& a, const PairLabel& b) {
  auto same_p = [](double x, double y) { return (std::isnan(x) && std::isnan(y)) || x == y; };
  return a.pair_index == b.pair_index && a.votes_i == b.votes_i && a.votes_j == b.votes_j && a.invalid == b.invalid &&
         a.samples_used == b.samples_used && same_p(a.p_star, b.p_star) && a.failed == b.failed &&
         a.fail_reason == b.fail_reason && a.answers == b.answers && a.swapped == b.swapped &&
         a.responses == b.responses;
}

// Columnar layout shared by shards and labels.h5 (per-pair columns plus CSR per-sample columns).
void write_records(H5::H5File& file, const std::vector<PairLabel>& records, bool with_responses) {
  std::vector<std::int64_t> index, offset{0};
  std::vector<std::int32_t> votes_i, votes_j, invalid, used;
  std::vector<double> p_star;
  std::vector<std::uint8_t> labelled, failed, swapped;
  std::vector<std::int8_t> answers;
  std::vector<std::string> reasons, responses;
  for (const auto& r : records) {
    EVOQ_CHECK(r.answers.size() == std::size_t(r.samples_used) && r.swapped.size() == r.answers.size(),
               "label of pair ", r.pair_index, ": per-sample arrays do not match samples_used");
    index.push_back(r.pair_index);
    votes_i.push_back(r.votes_i);
    votes_j.push_back(r.votes_j);
    invalid.push_back(r.invalid);
    used.push_back(r.samples_used);
    p_star.push_back(r.p_star);
    labelled.push_back(std::isnan(r.p_star) ? 0 : 1);
    failed.push_back(r.failed ? 1 : 0);
    reasons.push_back(r.fail_reason);
    answers.insert(answers.end(), r.answers.begin(), r.answers.end());
    swapped.insert(swapped.end(), r.swapped.begin(), r.swapped.end());
    offset.push_back(std::int64_t(answers.size()));
    if (with_responses) {
      EVOQ_CHECK(r.responses.size() == r.answers.size(), "label of pair ", r.pair_index, ": ", r.responses.size(),
                 " responses for ", r.answers.size(), " samples");
      responses.insert(responses.end(), r.responses.begin(), r.responses.end());
    }
  }
  h5::write_vector(file, "pair_index", index);
  h5::write_vector(file, "votes_i", votes_i);
  h5::write_vector(file, "votes_j", votes_j);
  h5::write_vector(file, "invalid", invalid);
  h5::write_vector(file, "samples_used", used);
  h5::write_vector(file, "p_star", p_star);
  h5::write_vector(file, "labelled", labelled);
  h5::write_vector(file, "failed", failed);
  h5::write_strings(file, "fail_reason", reasons);
  h5::write_vector(file, "sample_offset", offset);
  h5::write_vector(file, "sample_answer", answers);
  h5::write_vector(file, "sample_swapped", swapped);
  if (with_responses) h5::write_strings(file, "responses", responses);
}

std::vector<PairLabel> read_records(const H5::H5File& file) {
  const auto index = h5::read_vector<std::int64_t>(file, "pair_index");
  const auto votes_i = h5::read_vector<std::int32_t>(file, "votes_i");
  const auto votes_j = h5::read_vector<std::int32_t>(file, "votes_j");
  const auto invalid = h5::read_vector<std::int32_t>(file, "invalid");
  const auto used = h5::read_vector<std::int32_t>(file, "samples_used");
  const auto p_star = h5::read_vector<double>(file, "p_star");
  const auto failed = h5::read_vector<std::uint8_t>(file, "failed");
  const auto reasons = h5::read_strings(file, "fail_reason");
  const auto offset = h5::read_vector<std::int64_t>(file, "sample_offset");
  const auto answers = h5::read_vector<std::int8_t>(file, "sample_answer");
  const auto swapped = h5::read_vector<std::uint8_t>(file, "sample_swapped");
  std::vector<std::string> responses;
  if (h5::has_dataset(file, "responses")) responses = h5::read_strings(file, "responses");
  const std::size_t n = index.size();
  EVOQ_CHECK(votes_i.size() == n && votes_j.size() == n && invalid.size() == n && used.size() == n &&
                 p_star.size() == n && failed.size() == n && reasons.size() == n && offset.size() == n + 1,
             "per-pair datasets differ in length");
  EVOQ_CHECK(answers.size() == swapped.size() && std::size_t(offset.back()) == answers.size() &&
                 (responses.empty() || responses.size() == answers.size()),
             "per-sample datasets differ in length");
  std::vector<PairLabel> out(n);
  for (std::size_t p = 0; p < n; ++p) {
    auto& r = out[p];
    r.pair_index = index[p];
    r.votes_i = votes_i[p];
    r.votes_j = votes_j[p];
    r.invalid = invalid[p];
    r.samples_used = used[p];
    r.p_star = p_star[p];
    r.failed = failed[p] != 0;
    r.fail_reason = reasons[p];
    EVOQ_CHECK(offset[p] <= offset[p + 1] && offset[p + 1] - offset[p] == used[p], "sample_offset of pair ",
               index[p], " does not match samples_used");
    r.answers.assign(answers.begin() + offset[p], answers.begin() + offset[p + 1]);
    r.swapped.assign(swapped.begin() + offset[p], swapped.begin() + offset[p + 1]);
    if (!responses.empty()) r.responses.assign(responses.begin() + offset[p], responses.begin() + offset[p + 1]);
  }
  return out;
}

std::string describe_config_difference(const std::string& have, const std::string& want) {
  try {
    return describe_settings_differences(nlohmann::json::parse(have), nlohmann::json::parse(want));
  } catch (const std::exception&) {
    return "(unreadable run_config)";
  }
}

struct ShardFile {
  int rank;
  std::int64_t seq;
  std::string path;
  bool operator<(const ShardFile& o) const { return std::tie(rank, seq) < std::tie(o.rank, o.seq); }
};

std::vector<ShardFile> list_shards(const std::string& dir) {
  std::vector<ShardFile> shards;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return shards;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && std::regex_match(name, m, kShardPattern))
      shards.push_back({std::stoi(m[1].str()), m[2].matched ? std::stoll(m[2].str()) : -1, entry.path().string()});
  }
  std::sort(shards.begin(), shards.end());
  return shards;
}

std::vector<PairLabel> read_shard(const std::string& path, const std::string& expected_config) {
  const std::string hint = " (a damaged segment: delete it and rerun the vote to redo its pairs)";
  H5::H5File file;
  try {
    file = h5::open_read(path);
  } catch (const Error& e) {
    fail("label shard: ", e.what(), hint);
  }
  std::string have;
  try {
    EVOQ_CHECK(h5::get_attr_int(file, "schema_version") == kLabelsSchemaVersion, "unknown shard schema_version");
    have = h5::get_attr_string(file, "run_config");
  } catch (const H5::Exception& e) {
    fail("label shard '", path, "': ", e.getDetailMsg(), hint);
  } catch (const Error& e) {
    fail("label shard '", path, "': ", e.what(), hint);
  }
  EVOQ_CHECK(expected_config.empty() || have == expected_config, "label shard '", path,
             "': written with different settings (", describe_config_difference(have, expected_config),
             "); rerun with the same settings or use a new output");
  try {
    return read_records(file);
  } catch (const H5::Exception& e) {
    fail("label shard '", path, "': ", e.getDetailMsg(), hint);
  } catch (const Error& e) {
    fail("label shard: ", e.what(), hint);
  }
}

}  // namespace

std::string LabelStore::segment_name(int rank, std::int64_t seq) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "labels-shard-r%d-%06lld.h5", rank, static_cast<long long>(seq));
  return buf;
}

LabelStore::LabelStore(std::string dir, int rank, const LabelRunInfo& info)
    : dir_(std::move(dir)), config_text_(info.to_json().dump()), rank_(rank) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  EVOQ_CHECK(fs::is_directory(dir_), "cannot create the label shard folder '", dir_, "': ", ec.message());
  // Temporary files of this rank left by a killed run are incomplete by definition.
  const std::string own_prefix = "labels-shard-r" + std::to_string(rank_) + "-";
  const std::string old_prefix = "labels-shard-r" + std::to_string(rank_) + ".h5";
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const auto name = entry.path().filename().string();
    if ((name.rfind(own_prefix, 0) == 0 || name.rfind(old_prefix, 0) == 0) && name.find(".tmp.") != std::string::npos)
      fs::remove(entry.path(), ec);
  }
  for (const auto& shard : list_shards(dir_)) {
    for (const auto& r : read_shard(shard.path, config_text_))
      EVOQ_CHECK(finished_.insert(r.pair_index).second, "label shard '", shard.path, "': pair ", r.pair_index,
                 " is also in another shard");
    if (shard.rank == rank_) next_segment_ = std::max(next_segment_, shard.seq + 1);
  }
}

void LabelStore::add(PairLabel label) {
  EVOQ_CHECK(finished_.insert(label.pair_index).second, "pair ", label.pair_index, " was already labelled");
  pending_.push_back(std::move(label));
}

void LabelStore::flush() {
  if (pending_.empty()) return;
  const bool with_responses =
      std::all_of(pending_.begin(), pending_.end(),
                  [](const PairLabel& r) { return r.responses.size() == r.answers.size(); }) &&
      std::any_of(pending_.begin(), pending_.end(), [](const PairLabel& r) { return !r.responses.empty(); });
  const std::string path = (fs::path(dir_) / segment_name(rank_, next_segment_)).string();
  h5::write_file_atomic(path, [&](H5::H5File& file) {
    h5::set_attr(file, "schema_version", kLabelsSchemaVersion);
    h5::set_attr(file, "format", std::string("evoq-label-shard"));
    h5::set_attr(file, "rank", std::int64_t(rank_));
    h5::set_attr(file, "segment", next_segment_);
    h5::set_attr(file, "run_config", config_text_);
    write_records(file, pending_, with_responses);
  });
  ++next_segment_;
  pending_.clear();
}

std::string label_inconsistency(const PairLabel& label) {
  const auto same = [](double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; };
  if (label.failed) return std::isnan(label.p_star) ? "" : "a failed pair has p* = " + std::to_string(label.p_star);
  int votes_i = 0, votes_j = 0, invalid = 0;
  for (auto a : label.answers) {
    if (a == answer_first) ++votes_i;
    else if (a == answer_second) ++votes_j;
    else if (a == answer_invalid) ++invalid;
    else return "an answer is neither 0, 1 nor -1";
  }
  if (votes_i != label.votes_i || votes_j != label.votes_j || invalid != label.invalid)
    return detail::concat("vote counts ", label.votes_i, ":", label.votes_j, " (", label.invalid,
                          " invalid) differ from its answers ", votes_i, ":", votes_j, " (", invalid, " invalid)");
  const auto p = preference_value(majority_vote(votes_i, votes_j));  // Eq. 1
  const double want = p ? *p : std::numeric_limits<double>::quiet_NaN();
  if (!same(want, label.p_star))
    return detail::concat("p* = ", label.p_star, " does not follow from its votes ", votes_i, ":", votes_j,
                          " (Eq. 1 gives ", want, ")");
  return "";
}

std::vector<PairLabel> read_shards(const std::string& dir, const std::string& expected_config) {
  std::vector<PairLabel> all;
  for (const auto& shard : list_shards(dir)) {
    auto records = read_shard(shard.path, expected_config);
    all.insert(all.end(), std::make_move_iterator(records.begin()), std::make_move_iterator(records.end()));
  }
  return all;
}

MergeSummary merge_labels(const std::string& dir, const PairSet& pairs, const LabelRunInfo& info,
                          const std::string& out_path, bool allow_partial) {
  const std::string config = info.to_json().dump();
  std::map<std::int64_t, PairLabel> by_pair;
  for (const auto& shard : list_shards(dir))
    for (auto& r : read_shard(shard.path, config)) {
      EVOQ_CHECK(r.pair_index >= 0 && std::size_t(r.pair_index) < pairs.size(), "label shard '", shard.path,
                 "' holds pair ", r.pair_index, " but the pairs file has ", pairs.size(), " pairs");
      const auto why = label_inconsistency(r);
      EVOQ_CHECK(why.empty(), "label shard '", shard.path, "': pair ", r.pair_index, ": ", why,
                 " — the segment is corrupt; delete it and rerun the vote to redo its pairs");
      auto [it, inserted] = by_pair.emplace(r.pair_index, r);
      EVOQ_CHECK(inserted || same_label(it->second, r), "label shards in '", dir, "' disagree about pair ",
                 r.pair_index, " ('", shard.path, "')");
    }
  MergeSummary summary;
  summary.missing = pairs.size() - by_pair.size();
  EVOQ_CHECK(allow_partial || summary.missing == 0, "label shards in '", dir, "' miss ", summary.missing, " of ",
             pairs.size(), " pairs: finish the vote (rerun it to resume) before merging");
  std::vector<PairLabel> records;
  records.reserve(by_pair.size());
  for (auto& [p, r] : by_pair) {
    records.push_back(std::move(r));
    const auto& last = records.back();
    if (last.failed) ++summary.failed;
    else if (std::isnan(last.p_star)) ++summary.no_label;
    else ++summary.labelled;
  }
  summary.pairs = records.size();
  const bool with_responses =
      info.keep_responses && std::all_of(records.begin(), records.end(),
                                         [](const PairLabel& r) { return r.responses.size() == r.answers.size(); });
  LabelCounts counts;
  counts.failed = summary.failed;
  counts.missing = summary.missing;
  write_labels_h5(out_path, pairs, records, info, counts, with_responses);
  return summary;
}

void write_labels_h5(const std::string& out_path, const PairSet& pairs, const std::vector<PairLabel>& records,
                     const LabelRunInfo& info, const LabelCounts& counts, bool with_responses,
                     const std::vector<std::pair<std::string, std::string>>& extra_attrs) {
  std::vector<std::int64_t> pi, pj;
  std::vector<std::string> path_i, path_j;
  for (const auto& r : records) {
    pi.push_back(pairs.first[r.pair_index]);
    pj.push_back(pairs.second[r.pair_index]);
    path_i.push_back(pairs.image_paths[pairs.first[r.pair_index]]);
    path_j.push_back(pairs.image_paths[pairs.second[r.pair_index]]);
  }
  const std::string config = info.to_json().dump();
  h5::write_file_atomic(out_path, [&](H5::H5File& file) {
    h5::set_attr(file, "schema_version", kLabelsSchemaVersion);
    h5::set_attr(file, "format", std::string("evoq-labels"));
    h5::set_attr(file, "model_path", info.model_path);
    h5::set_attr(file, "model_checksum", info.model_checksum);
    h5::set_attr(file, "K", std::int64_t(info.K));
    h5::set_attr(file, "sampling", info.sampling.dump());
    h5::set_attr_u64(file, "seed", info.seed);
    h5::set_attr(file, "prompt", info.prompt);
    h5::set_attr(file, "early_stop", std::int64_t(info.early_stop ? 1 : 0));
    h5::set_attr(file, "pairs_file", info.pairs_file);
    h5::set_attr(file, "root", pairs.root);
    h5::set_attr(file, "creation_time", h5::utc_now());
    h5::set_attr(file, "run_config", config);
    h5::set_attr(file, "num_pairs", std::int64_t(records.size()));
    h5::set_attr(file, "num_failed", std::int64_t(counts.failed));
    h5::set_attr(file, "num_missing", std::int64_t(counts.missing));
    for (const auto& [key, value] : extra_attrs) h5::set_attr(file, key, value);
    h5::write_strings(file, "image_path", pairs.image_paths);
    h5::write_vector(file, "pair_i", pi);
    h5::write_vector(file, "pair_j", pj);
    h5::write_strings(file, "path_i", path_i);
    h5::write_strings(file, "path_j", path_j);
    write_records(file, records, with_responses);
  });
}

std::vector<PairLabel> read_labels_h5(const std::string& path) {
  auto file = h5::open_read(path);
  try {
    const auto version = h5::get_attr_int(file, "schema_version");
    EVOQ_CHECK(version == kLabelsSchemaVersion, "labels schema_version ", version, " (this evoq reads ",
               kLabelsSchemaVersion, ")");
    return read_records(file);
  } catch (const H5::Exception& e) {
    fail("'", path, "': ", e.getDetailMsg());
  } catch (const Error& e) {
    fail("'", path, "': ", e.what());
  }
}

}  // namespace evoq::evo
