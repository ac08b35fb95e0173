#include "evoq/eval/eval_run.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <set>

#include "evoq/core/error.h"
#include "evoq/core/rank_partition.h"
#include "evoq/core/log.h"
#include "evoq/eval/csv.h"
#include "evoq/eval/datasets.h"
#include "evoq/eval/score_store.h"

namespace evoq::eval {
namespace fs = std::filesystem;
namespace {


// Keys under which a dataset's --root may be given.
std::set<std::string> root_keys(const Dataset& d, const std::string& requested) {
  std::set<std::string> keys = {to_lower(d.name), to_lower(requested)};
  const std::string base = to_lower(d.name.substr(0, d.name.find(':')));
  keys.insert(base);
  for (const auto& info : known_datasets())
    if (to_lower(info.name) == base)
      for (const auto& a : info.aliases) keys.insert(a);
  return keys;
}

// OUT/scores.h5 first, then OUT/scores.rank*.h5 in name order.
std::vector<std::string> score_files(const std::string& out_dir) {
  std::vector<std::string> files;
  if (fs::exists(fs::path(out_dir) / "scores.h5")) files.push_back((fs::path(out_dir) / "scores.h5").string());
  std::vector<std::string> ranks;
  for (const auto& e : fs::directory_iterator(out_dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("scores.rank", 0) == 0 && n.size() > 3 && n.substr(n.size() - 3) == ".h5")
      ranks.push_back(e.path().string());
  }
  std::sort(ranks.begin(), ranks.end());
  files.insert(files.end(), ranks.begin(), ranks.end());
  return files;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  EVOQ_CHECK(out, "cannot write ", path.string());
  out << text;
  EVOQ_CHECK(out.good(), "cannot write ", path.string());
}

// Rank 0's part: merges the score files into scores.h5, writes the result files, prints the table.
EvalResult write_outputs(const EvalSettings& opt, const std::vector<Dataset>& datasets,
                         const std::vector<std::size_t>& missing_counts, const Scorer& scorer_ref,
                         const fs::path& merged_path, std::ostream& table_out);

}  // namespace

std::pair<std::string, std::string> parse_root(const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
    throw UsageError("--root '" + spec + "': expected NAME=DIR");
  return {spec.substr(0, eq), spec.substr(eq + 1)};
}

EvalResult run_eval(const EvalSettings& opt, std::ostream& table_out) {
  if (opt.datasets.empty()) throw UsageError("--dataset: give at least one dataset");
  const std::string labels_dir = opt.labels_dir.empty() ? default_labels_dir() : opt.labels_dir;
  fs::create_directories(opt.out_dir);

  // 1. Manifests and missing files, before any scoring.
  std::vector<Dataset> datasets;
  std::vector<std::size_t> missing_counts;
  std::set<std::string> used_roots;
  std::string missing_report;
  std::size_t missing_total = 0;
  for (const auto& name : opt.datasets) {
    Dataset d = load_dataset(name, labels_dir);
    std::string root;
    for (const auto& [key, dir] : opt.roots)
      if (root_keys(d, name).contains(to_lower(key))) {
        root = dir;
        used_roots.insert(key);
      }
    if (root.empty() && d.layout != PathLayout::relative)
      throw UsageError("dataset " + d.name + " needs its image root: --root " + d.name + "=DIR");
    const auto missing = resolve_images(d, root);
    if (!missing.empty()) {
      std::cerr << d.name << ": " << missing.size() << " of " << d.images.size() << " image files missing under "
                << d.root << (missing.size() > 20 ? " (first 20):" : ":") << "\n";
      for (std::size_t i = 0; i < missing.size(); ++i) {
        if (i < 20) std::cerr << "  " << missing[i] << "\n";
        missing_report += d.name + "," + csv_field(missing[i]) + "\n";
      }
      missing_total += missing.size();
      if (opt.skip_missing) remove_images(d, missing);
    }
    missing_counts.push_back(missing.size());
    datasets.push_back(std::move(d));
  }
  for (const auto& [key, dir] : opt.roots)
    if (!used_roots.contains(key)) throw UsageError("--root " + key + "=" + dir + ": no such dataset among --dataset");
  if (missing_total) {
    write_text(fs::path(opt.out_dir) / "missing.txt", "dataset,image\n" + missing_report);
    if (!opt.skip_missing)
      fail(missing_total, " image files are missing (listed above and in ",
           (fs::path(opt.out_dir) / "missing.txt").string(), "); fix --root or pass --skip-missing");
  }

  // 2. Scoring, resumable and sharded.
  EVOQ_CHECK(opt.world >= 1 && opt.rank >= 0 && opt.rank < opt.world, "bad shard: rank ", opt.rank, " of ", opt.world);
  EVOQ_CHECK(opt.world == 1 || (opt.barrier && opt.agree_on_error), "sharded eval needs a barrier and an agreement");
  auto scorer = make_scorer(opt.model, opt.scorer);
  const std::string run_config = opt.scorer.fingerprint(opt.model).dump();
  const fs::path merged_path = fs::path(opt.out_dir) / "scores.h5";
  std::set<std::pair<std::string, std::string>> done;
  for (const auto& file : score_files(opt.out_dir)) {
    std::string model, stored_config;
    for (const auto& r : ScoreStore::read_file(file, &model, &stored_config)) done.insert({r.dataset, r.image});
    EVOQ_CHECK(model == scorer->name(), file, ": holds scores of model '", model, "', not '", scorer->name(),
               "'; use another --out directory");
    check_same_settings(file, stored_config, run_config);
  }
  if (opt.world > 1) opt.barrier();  // everyone has read the files before anyone writes
  const std::string own_path =
      opt.world == 1 ? merged_path.string()
                     : (fs::path(opt.out_dir) / ("scores.rank" + std::to_string(opt.rank) + ".h5")).string();
  // A failure on one rank (disk full...) is agreed on by all ranks before anyone goes on, so every rank
  // ends with the same error instead of waiting in a barrier for a rank that is gone.
  auto agreed = [&](const std::function<void()>& work) {
    std::string error;
    try {
      work();
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (opt.world > 1) error = opt.agree_on_error(error);
    if (!error.empty()) fail(error);
  };
  agreed([&] {
    {
      ScoreStore store(own_path, scorer->name(), run_config, opt.flush_every);
      const std::size_t batch = std::max<std::size_t>(1, scorer->batch_size());
      std::size_t position = 0;  // index in the global to-do list, for the shard
      for (const auto& d : datasets) {
        std::vector<const LabelledImage*> todo;
        std::size_t left = 0;
        for (const auto& im : d.images)
          if (!done.contains({d.name, im.id})) {
            if (core::strided_owner(position++, opt.rank, opt.world))
              todo.push_back(&im);
            ++left;
          }
        log::info(d.name, ": ", d.images.size() - left, " of ", d.images.size(), " images already scored, ", left,
                  " to go", opt.world > 1 ? " (" + std::to_string(todo.size()) + " on this rank)" : std::string());
        for (std::size_t start = 0; start < todo.size(); start += batch) {
          const std::size_t end = std::min(todo.size(), start + batch);
          std::vector<std::string> paths;
          for (std::size_t i = start; i < end; ++i) paths.push_back(todo[i]->path);
          const auto results = scorer->score_batch(paths);
          EVOQ_CHECK(results.size() == paths.size(), "scorer ", scorer->name(), " returned ", results.size(),
                     " results for ", paths.size(), " images");
          for (std::size_t i = start; i < end; ++i) {
            const ScoreResult& r = results[i - start];
            ScoreRecord rec{d.name, todo[i]->id, r.score.value_or(std::nan("")), ""};
            if (!r.score || !std::isfinite(*r.score))
              rec.invalid_reason = r.invalid_reason.empty() ? "no score" : r.invalid_reason;
            store.add(std::move(rec));
          }
        }
      }
      store.flush();
    }
  });
  EvalResult result;
  agreed([&] {
    if (opt.rank == 0) result = write_outputs(opt, datasets, missing_counts, *scorer, merged_path, table_out);
  });
  return result;
}

namespace {

EvalResult write_outputs(const EvalSettings& opt, const std::vector<Dataset>& datasets,
                         const std::vector<std::size_t>& missing_counts, const Scorer& scorer_ref,
                         const fs::path& merged_path, std::ostream& table_out) {
  const auto* scorer = &scorer_ref;
  // Merge every score file into scores.h5 (a no-op with one rank and no leftovers of a sharded run).
  const auto files = score_files(opt.out_dir);
  ScoreStore store(merged_path.string(), scorer->name(), opt.scorer.fingerprint(opt.model).dump(),
                   std::numeric_limits<std::size_t>::max());
  bool merged_any = false;
  for (const auto& file : files) {
    if (fs::path(file) == merged_path) continue;
    for (auto& r : ScoreStore::read_file(file, nullptr))
      if (!store.contains(r.dataset, r.image)) store.add(std::move(r));
    merged_any = true;
  }
  store.flush();
  if (merged_any)
    for (const auto& file : files)
      if (fs::path(file) != merged_path) fs::remove(file);

  // 3. Metrics and outputs.
  EvalResult result;
  result.model = scorer->name();
  for (std::size_t k = 0; k < datasets.size(); ++k) {
    DatasetResult r = evaluate_dataset(datasets[k], store, scorer->higher_is_better());
    r.missing = missing_counts[k];
    result.datasets.push_back(r);
  }
  result.weighted = weighted_average(result.datasets);

  std::string per_image = "dataset,image,path,human_score,model_score,invalid_reason\n";
  for (const auto& d : datasets)
    for (const auto& im : d.images) {
      const ScoreRecord* rec = store.find(d.name, im.id);
      char human[32], model[32] = "";
      std::snprintf(human, sizeof human, "%.10g", im.score);
      if (rec && rec->valid()) std::snprintf(model, sizeof model, "%.10g", rec->score);
      per_image += csv_field(d.name) + "," + csv_field(im.id) + "," + csv_field(im.path) + "," + human + "," + model +
                   "," + csv_field(rec ? rec->invalid_reason : "not scored") + "\n";
    }
  write_text(fs::path(opt.out_dir) / "scores.csv", per_image);
  write_text(fs::path(opt.out_dir) / "results.json", to_json(result).dump(2) + "\n");
  write_text(fs::path(opt.out_dir) / "results.csv", to_csv(result));

  EvalResult baseline;
  if (!opt.baseline_json.empty()) {
    std::ifstream in(opt.baseline_json);
    EVOQ_CHECK(in, "--baseline: cannot open ", opt.baseline_json);
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      fail("--baseline: ", opt.baseline_json, " is not JSON: ", e.what());
    }
    baseline = from_json(j, opt.baseline_json);
  }
  table_out << format_table(result, opt.baseline_json.empty() ? nullptr : &baseline);
  return result;
}

}  // namespace

}  // namespace evoq::eval
