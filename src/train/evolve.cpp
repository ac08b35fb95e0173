#include "evoq/train/evolve.h"

#include <cmath>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/core/settings_diff.h"
#include "evoq/dist/agreement.h"
#include "evoq/evo/manifest.h"
#include "evoq/evo/pairs.h"
#include "evoq/dist/stop_signal.h"
#include "evoq/evo/vote_loop.h"
#include "evoq/io/atomic_file.h"

namespace evoq::train {

using namespace evoq::evo;  // the method's equations and stores this layer trains with

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The value for round t (1-based) of a per-round list: its t-th entry, or the last one.
std::string per_round(const std::vector<std::string>& values, int round, const std::string& fallback) {
  if (values.empty()) return fallback;
  return values[std::min<std::size_t>(std::size_t(round - 1), values.size() - 1)];
}

// A metric of results.json: NaN when absent or null (e.g. no valid score at all).
double metric(const json& dataset, const char* key) {
  const auto it = dataset.find(key);
  return it != dataset.end() && it->is_number() ? it->get<double>() : NAN;
}

json vote_fingerprint(const VoteSettings& v) {
  return {{"K", v.K},           {"early_stop", v.early_stop},         {"reasoning", v.reasoning},
          {"prompt_file", v.prompt_file}, {"keep_responses", v.keep_responses}, {"root", v.root},
          {"sampling", gen::to_json(v.sampling)}, {"dtype", v.runtime.dtype_name()}};
}

json estimate_fingerprint(const EstimateSettings& e) {
  return {{"K", e.K},           {"reasoning", e.reasoning},     {"prompt_file", e.prompt_file},
          {"keep_responses", e.keep_responses}, {"root", e.root}, {"sampling", gen::to_json(e.sampling)},
          {"dtype", e.runtime.dtype_name()}};
}

json train_fingerprint(const TrainSettings& t) {
  json f = training_fingerprint(t, "", gen::SamplingParams{});
  for (const char* per_round_key : {"model", "reference_model", "data", "seed", "prompt", "sampling"})
    f.erase(per_round_key);
  f["prompt_file"] = t.prompt_file;
  f["reasoning"] = t.reasoning;
  f["sampling"] = gen::to_json(t.sampling);
  f["allow_near_greedy"] = t.allow_near_greedy;
  return f;
}

json eval_fingerprint(const eval::EvalSettings& e) {
  json scorer = e.scorer.fingerprint("vlm");
  scorer.erase("checkpoint");
  return {{"datasets", e.datasets}, {"roots", e.roots}, {"labels_dir", e.labels_dir},
          {"skip_missing", e.skip_missing}, {"scorer", scorer}};
}

class Evolution {
 public:
  Evolution(const EvolveSettings& s, std::shared_ptr<dist::Communicator> comm)
      : s_(s), comm_(std::move(comm)), run_(s.run_dir) {
    dist::run_agreed(*comm_, "evolve", true, [&] { fs::create_directories(run_); });
    load_state();
  }

  int run() {
    if (s_.eval_initial && evaluates())
      if (int status = stage(0, "eval", [&] { return evaluate(0, s_.initial_model); }); status) return status;
    std::string model = s_.initial_model;
    for (int t = 1; t <= s_.rounds; ++t) {
      dist::run_agreed(*comm_, "evolve", true, [&] { fs::create_directories(round_dir(t)); });
      if (int status = stage(t, "pairs", [&] { return draw_pairs(t); }); status) return status;
      if (s_.method == "evoestimate") {
        if (int status = stage(t, "estimate", [&] { return estimate(t, model); }); status) return status;
      } else {
        if (int status = stage(t, "vote", [&] { return vote(t, model); }); status) return status;
      }
      if (int status = stage(t, "train", [&] { return train(t, model); }); status) return status;
      model = (round_dir(t) / "model").string();
      if (evaluates())
        if (int status = stage(t, "eval", [&] { return evaluate(t, model); }); status) return status;
    }
    dist::run_agreed(*comm_, "evolve: summary", true, [&] { print_summary(); });
    return 0;
  }

 private:
  fs::path round_dir(int t) const { return run_ / ("round_" + std::to_string(t)); }
  bool evaluates() const { return !s_.eval.datasets.empty(); }
  std::uint64_t round_seed(int t) const { return s_.seed + std::uint64_t(t); }

  // Runs one stage unless state.json says it is done; records it when it succeeds.
  int stage(int t, const std::string& name, const std::function<int()>& body) {
    const std::string key = std::to_string(t);
    const json& rounds = state_["rounds"];
    if (rounds.contains(key) && rounds[key].value(name, false)) {
      if (comm_->is_root()) log::info("evolve: round ", t, " ", name, ": done earlier");
      return 0;
    }
    if (comm_->is_root()) log::info("evolve: round ", t, " ", name, " ...");
    const int status = body();
    if (status == dist::kExitStoppedBySignal) {
      if (comm_->is_root())
        log::info("evolve: round ", t, " ", name, " stopped on a signal after a checkpoint; rerun the same command");
      return status;
    }
    if (status == kExitSomePairsFailed && name == "vote") {
      if (comm_->is_root())
        log::warn("evolve: round ", t, " vote: some pairs failed (see labels.h5); training uses the others");
    } else if (status != 0) {
      throw Error("round " + std::to_string(t) + " stage " + name + " failed with exit status " +
                  std::to_string(status));
    }
    comm_->barrier();
    state_["rounds"][key][name] = true;
    dist::run_agreed(*comm_, "evolve", true,
                     [&] { io::write_file_atomic((run_ / "state.json").string(), state_.dump(2) + "\n"); });
    return 0;
  }

  int draw_pairs(int t) {
    dist::run_agreed(*comm_, "evolve: round " + std::to_string(t) + " pairs", true, [&] {
      const auto manifest = load_manifest(per_round(s_.images, t, ""), per_round(s_.roots, t, ""));
      const std::string mode = per_round(s_.modes, t, t == 1 ? "random" : "same-reference");
      const auto n = std::uint64_t(s_.pairs);
      const PairSet pairs = mode == "random" ? sample_random_pairs(manifest, n, round_seed(t))
                                             : sample_same_reference_pairs(manifest, n, round_seed(t));
      write_pairs_h5((round_dir(t) / "pairs.h5").string(), pairs);
      log::info("evolve: round ", t, ": ", pairs.size(), " ", mode, " pairs of ", pairs.image_paths.size(), " images");
    });
    return 0;
  }

  int vote(int t, const std::string& model) {
    VoteSettings v = s_.vote;
    v.model_dir = model;
    v.pairs_path = (round_dir(t) / "pairs.h5").string();
    v.out_path = (round_dir(t) / "labels.h5").string();
    v.shard_dir.clear();
    v.seed = round_seed(t);
    return run_vote(v, *comm_);
  }

  int estimate(int t, const std::string& model) {
    EstimateSettings e = s_.estimate;
    e.model_dir = model;
    e.pairs_path = (round_dir(t) / "pairs.h5").string();
    e.out_path = (round_dir(t) / "estimates.h5").string();
    e.seed = round_seed(t);
    return run_estimate(e, *comm_);
  }

  int train(int t, const std::string& model) {
    const fs::path dir = round_dir(t);
    TrainSettings ts = s_.train;
    ts.model_dir = model;
    ts.reference_model = s_.reference == "base" ? s_.initial_model : model;
    ts.out_dir = (dir / "train").string();
    ts.seed = round_seed(t);
    ts.resume = true;
    if (s_.method == "evoestimate") {
      ts.reward = "estimate";
      ts.estimates_path = (dir / "estimates.h5").string();
    } else {
      ts.reward = "fidelity";
      ts.labels_path = (dir / "labels.h5").string();
    }
    const int status = run_training(ts, comm_);
    if (status != 0) return status;
    dist::run_agreed(*comm_, "evolve: round " + std::to_string(t) + " model link", true, [&] {
      // round_t/model -> train/checkpoints/<newest>/model (the final checkpoint of the run).
      std::string latest = io::read_file((dir / "train" / "checkpoints" / "latest").string());
      while (!latest.empty() && std::isspace(static_cast<unsigned char>(latest.back()))) latest.pop_back();
      const fs::path target = fs::path("train") / "checkpoints" / latest / "model";
      EVOQ_CHECK(fs::is_directory(dir / target), "round ", t, ": no final model in ", (dir / target).string());
      std::error_code ec;
      fs::remove(dir / "model.tmp", ec);
      fs::create_directory_symlink(target, dir / "model.tmp");
      fs::rename(dir / "model.tmp", dir / "model");
    });
    return 0;
  }

  int evaluate(int t, const std::string& model) {
    const fs::path dir = round_dir(t);
    eval::EvalSettings e = s_.eval;
    e.model = "vlm";
    e.scorer.checkpoint = model;
    e.scorer.local_rank = comm_->local_rank();
    e.out_dir = (dir / "eval").string();
    e.rank = comm_->rank();
    e.world = comm_->size();
    auto comm = comm_;
    e.barrier = [comm] { comm->barrier(); };
    e.agree_on_error = [comm](const std::string& error) { return dist::agree_on_error(*comm, error); };
    std::ostringstream table;
    eval::run_eval(e, table);
    if (comm_->is_root()) std::cout << table.str();
    dist::run_agreed(*comm_, "evolve", true, [&] {
      io::write_file_atomic((dir / "eval.json").string(), io::read_file((dir / "eval" / "results.json").string()));
    });
    return 0;
  }

  void load_state() {
    const fs::path file = run_ / "state.json";
    const json settings = s_.fingerprint();
    if (!fs::exists(file)) {
      state_ = json{{"settings", settings}, {"rounds", json::object()}};
      return;
    }
    try {
      state_ = json::parse(io::read_file(file.string()));
    } catch (const json::exception& e) {
      throw Error(file.string() + ": not a valid state file (" + e.what() + ")");
    }
    const auto differences = describe_settings_differences(state_.value("settings", json::object()), settings);
    if (!differences.empty())
      throw UsageError("'" + run_.string() + "' holds a run with other settings: " + differences +
                       " (rerun with the run's settings, or use another --run)");
    if (comm_->is_root()) log::info("evolve: continuing the run in ", run_.string());
  }

  // Paper Table 2 layout: one row per round (0 = the initial model), SRCC / PLCC per dataset.
  void print_summary() const {
    std::vector<std::pair<int, json>> rows;
    for (int t = 0; t <= s_.rounds; ++t) {
      const fs::path f = round_dir(t) / "eval.json";
      if (fs::exists(f)) rows.emplace_back(t, json::parse(io::read_file(f.string())));
    }
    if (rows.empty()) return;
    std::vector<std::string> names;
    for (const auto& d : rows.front().second["datasets"]) names.push_back(d["name"].get<std::string>());
    std::ostringstream table, csv;
    table << std::left << std::setw(10) << "round";
    csv << "round";
    for (const auto& n : names) {
      table << std::setw(20) << (n + " SRCC/PLCC");
      csv << "," << n << "_srcc," << n << "_plcc";
    }
    table << "\n";
    csv << "\n";
    for (const auto& [t, results] : rows) {
      table << std::setw(10) << (t == 0 ? std::string("initial") : std::to_string(t));
      csv << t;
      for (const auto& n : names) {
        std::string cell = "-";
        for (const auto& d : results["datasets"])
          if (d["name"] == n) {
            std::ostringstream c;
            c << std::fixed << std::setprecision(3) << metric(d, "srcc") << " / " << metric(d, "plcc");
            cell = c.str();
            csv << "," << metric(d, "srcc") << "," << metric(d, "plcc");
          }
        table << std::setw(20) << cell;
      }
      table << "\n";
      csv << "\n";
    }
    std::cout << "\n" << (s_.method == "evoestimate" ? "EvoEstimate" : "EvoQuality")
              << " rounds (SRCC / PLCC against the dataset labels):\n" << table.str();
    io::write_file_atomic((run_ / "summary.csv").string(), csv.str());
  }

  const EvolveSettings& s_;
  std::shared_ptr<dist::Communicator> comm_;
  fs::path run_;
  json state_;
};

}  // namespace

void EvolveSettings::validate() const {
  if (run_dir.empty()) throw UsageError("the option '--run' is required");
  if (initial_model.empty()) throw UsageError("the option '--model' is required");
  if (rounds < 1) throw UsageError("--rounds must be >= 1");
  if (images.empty()) throw UsageError("--images: give the image pool (folder or list) of round 1 (and later rounds)");
  if (pairs < 1) throw UsageError("--pairs must be >= 1");
  if (method != "evoquality" && method != "evoestimate")
    throw UsageError("--method '" + method + "' is not evoquality or evoestimate");
  if (reference != "base" && reference != "round")
    throw UsageError("--reference '" + reference + "' is not base or round");
  for (const auto& m : modes)
    if (m != "random" && m != "same-reference") throw UsageError("--mode '" + m + "' is not random or same-reference");
}

json EvolveSettings::fingerprint() const {
  json f{{"model", initial_model}, {"images", images}, {"modes", modes}, {"roots", roots},
         {"pairs", pairs},         {"seed", seed},     {"method", method}, {"reference", reference}};
  if (method == "evoestimate") f["estimate"] = estimate_fingerprint(estimate);
  else f["vote"] = vote_fingerprint(vote);
  f["train"] = train_fingerprint(train);
  if (!eval.datasets.empty()) f["eval"] = eval_fingerprint(eval);
  return f;
}

int run_evolution(const EvolveSettings& settings, const std::shared_ptr<dist::Communicator>& world) {
  settings.validate();
  return Evolution(settings, world).run();
}

}  // namespace evoq::train
