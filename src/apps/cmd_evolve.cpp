// `evoq evolve`: T rounds of EvoQuality (paper Algorithm 1) in one run folder:
//   round t: pairs -> vote (with round t-1's model) -> train (GRPO) -> eval
// --method evoestimate runs the paper's ablation instead: pairs -> estimate (K c_score answers per image
// averaged into a pseudo score, RUN/round_<t>/estimates.h5) -> train --reward estimate -> eval.
//   RUN/round_<t>/{pairs.h5, labels.h5, labels.h5.shards/, train/, model -> train/checkpoints/<last>/model,
//                  eval/, eval.json},  RUN/round_0/eval (the initial model),  RUN/state.json,  RUN/summary.csv
// Every stage is the same command a user runs by hand (`evoq pairs|vote|train|eval`), run in this process
// on every rank of the job. state.json (written atomically by rank 0 after each stage) records which
// stages are done; each stage resumes from its own files (vote shards, train checkpoints, eval score
// files), so rerunning the same command after any crash continues where it stopped.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "evoq/core/cli.h"
#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/agreement.h"
#include "evoq/dist/communicator.h"
#include "evoq/evo/stop_signal.h"
#include "evoq/evo/vote_loop.h"
#include "evoq/io/atomic_file.h"

namespace {

namespace fs = std::filesystem;
namespace po = boost::program_options;
using namespace evoq;
using nlohmann::json;

// A metric of results.json: NaN when absent or null (e.g. no valid score at all).
double metric(const json& dataset, const char* key) {
  const auto it = dataset.find(key);
  return it != dataset.end() && it->is_number() ? it->get<double>() : NAN;
}

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::vector<std::string> strings(const po::variables_map& vm, const std::string& key) {
  return vm.count(key) ? vm[key].as<std::vector<std::string>>() : std::vector<std::string>{};
}

// The value for round t (1-based) of a per-round list: its t-th entry, or the last one.
std::string per_round(const std::vector<std::string>& values, int round, const std::string& fallback) {
  if (values.empty()) return fallback;
  return values[std::min<std::size_t>(std::size_t(round - 1), values.size() - 1)];
}

class Evolution {
 public:
  Evolution(const po::variables_map& vm, std::shared_ptr<dist::Communicator> comm) : vm_(vm), comm_(std::move(comm)) {
    run_ = fs::path(cli::require_string(vm, "run"));
    initial_model_ = cli::require_string(vm, "model");
    rounds_ = vm["rounds"].as<int>();
    if (rounds_ < 1) throw UsageError("--rounds must be >= 1");
    images_ = strings(vm, "images");
    if (images_.empty()) throw UsageError("--images: give the image pool (folder or list) of round 1 (and later rounds)");
    method_ = vm["method"].as<std::string>();
    if (method_ != "evoquality" && method_ != "evoestimate")
      throw UsageError("--method '" + method_ + "' is not evoquality or evoestimate");
    modes_ = strings(vm, "mode");
    for (const auto& m : modes_)
      if (m != "random" && m != "same-reference") throw UsageError("--mode '" + m + "' is not random or same-reference");
    dist::run_agreed(*comm_, "evolve", true, [&] { fs::create_directories(run_); });
    load_state();
  }

  int run() {
    if (vm_["eval-initial"].as<bool>() && !eval_datasets().empty()) {
      if (int s = stage(0, "eval", [&] { return eval(0, initial_model_); }); s) return s;
    }
    std::string model = initial_model_;
    for (int t = 1; t <= rounds_; ++t) {
      const fs::path dir = round_dir(t);
      dist::run_agreed(*comm_, "evolve", true, [&] { fs::create_directories(dir); });
      const char* offline = method_ == "evoestimate" ? "estimate" : "vote";
      for (const char* name : {"pairs", offline, "train"}) {
        const std::string s = name;
        int status = stage(t, s, [&] {
          if (s == "pairs") return pairs(t);
          if (s == "vote") return vote(t, model);
          if (s == "estimate") return estimate(t, model);
          return train(t, model);
        });
        if (status) return status;
      }
      model = (dir / "model").string();
      if (!eval_datasets().empty())
        if (int s = stage(t, "eval", [&] { return eval(t, model); }); s) return s;
    }
    dist::run_agreed(*comm_, "evolve: summary", true, [&] { print_summary(); });
    return 0;
  }

 private:
  fs::path round_dir(int t) const { return run_ / ("round_" + std::to_string(t)); }
  std::vector<std::string> eval_datasets() const { return strings(vm_, "eval-dataset"); }

  std::vector<std::string> with_config(std::vector<std::string> args, const std::string& extra_key) const {
    if (vm_.count("stage-config")) {
      args.push_back("--config");
      args.push_back(vm_["stage-config"].as<std::string>());
    }
    for (auto& w : split_words(vm_[extra_key].as<std::string>())) args.push_back(std::move(w));
    return args;
  }

  std::uint64_t round_seed(int t) const { return vm_["seed"].as<std::uint64_t>() + std::uint64_t(t); }

  // Runs one stage unless state.json says it is done; records it when it succeeds.
  int stage(int t, const std::string& name, const std::function<int()>& body) {
    const std::string key = std::to_string(t);
    const json& rounds = state_["rounds"];
    if (rounds.contains(key) && rounds[key].value(name, false)) {
      log::info("evolve: round ", t, " ", name, ": done earlier");
      return 0;
    }
    log::info("evolve: round ", t, " ", name, " ...");
    const int status = body();
    if (status == evo::kExitStoppedBySignal) {
      log::info("evolve: round ", t, " ", name, " stopped on a signal after a checkpoint; rerun the same command");
      return status;
    }
    if (status == evo::kExitSomePairsFailed && name == "vote") {
      log::warn("evolve: round ", t, " vote: some pairs failed (see labels.h5); training uses the others");
    } else if (status != 0) {
      throw Error("round " + std::to_string(t) + " stage " + name + " failed with exit status " + std::to_string(status));
    }
    comm_->barrier();
    state_["rounds"][key][name] = true;
    save_state();
    return 0;
  }

  int pairs(int t) {
    int status = 0;
    dist::run_agreed(*comm_, "evolve: round " + std::to_string(t) + " pairs", true, [&] {
      std::vector<std::string> args{"--manifest", per_round(images_, t, ""), "--mode",
                                    per_round(modes_, t, t == 1 ? "random" : "same-reference"), "-n",
                                    std::to_string(vm_["pairs"].as<long long>()), "--seed",
                                    std::to_string(round_seed(t)), "-o", (round_dir(t) / "pairs.h5").string()};
      if (vm_.count("root")) args.insert(args.end(), {"--root", per_round(strings(vm_, "root"), t, "")});
      status = cli::run_command("pairs", args);
    });
    return status;
  }

  int vote(int t, const std::string& model) {
    return cli::run_command("vote", with_config({"--model", model, "--pairs", (round_dir(t) / "pairs.h5").string(),
                                                 "--out", (round_dir(t) / "labels.h5").string(), "--seed",
                                                 std::to_string(round_seed(t))},
                                                "vote-args"));
  }

  int estimate(int t, const std::string& model) {
    return cli::run_command("estimate", with_config({"--model", model, "--pairs", (round_dir(t) / "pairs.h5").string(),
                                                     "--out", (round_dir(t) / "estimates.h5").string(), "--seed",
                                                     std::to_string(round_seed(t))},
                                                    "estimate-args"));
  }

  int train(int t, const std::string& model) {
    const fs::path dir = round_dir(t);
    std::vector<std::string> args{"--model", model, "--out", (dir / "train").string(), "--seed",
                                  std::to_string(round_seed(t)), "--resume"};
    if (method_ == "evoestimate")
      args.insert(args.end(), {"--reward", "estimate", "--estimates", (dir / "estimates.h5").string()});
    else
      args.insert(args.end(), {"--labels", (dir / "labels.h5").string()});
    const int status = cli::run_command("train", with_config(args, "train-args"));
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

  int eval(int t, const std::string& model) {
    const fs::path dir = round_dir(t);
    std::vector<std::string> args{"--model", model, "--out", (dir / "eval").string()};
    for (const auto& d : eval_datasets()) args.insert(args.end(), {"--dataset", d});
    for (const auto& r : strings(vm_, "eval-root")) args.insert(args.end(), {"--root", r});
    const int status = cli::run_command("eval", with_config(args, "eval-args"));
    if (status == 0)
      dist::run_agreed(*comm_, "evolve", true, [&] {
        io::write_file_atomic((dir / "eval.json").string(), io::read_file((dir / "eval" / "results.json").string()));
      });
    return status;
  }

  // The settings a rerun must share with the run it continues.
  json fingerprint() const {
    json f{{"model", initial_model_}, {"images", images_}, {"modes", modes_},
           {"pairs", vm_["pairs"].as<long long>()}, {"seed", vm_["seed"].as<std::uint64_t>()}};
    if (method_ != "evoquality") f["method"] = method_;  // EvoQuality runs keep their original state files
    return f;
  }

  void load_state() {
    const fs::path file = run_ / "state.json";
    if (!fs::exists(file)) {
      state_ = json{{"settings", fingerprint()}, {"rounds", json::object()}};
      return;
    }
    try {
      state_ = json::parse(io::read_file(file.string()));
    } catch (const json::exception& e) {
      throw Error(file.string() + ": not a valid state file (" + e.what() + ")");
    }
    if (state_["settings"] != fingerprint())
      throw UsageError("'" + run_.string() + "' holds a run with other settings (" + state_["settings"].dump() +
                       "); use another --run or the same --model/--images/--mode/--pairs/--seed");
    log::info("evolve: continuing the run in ", run_.string());
  }

  void save_state() {
    dist::run_agreed(*comm_, "evolve", true,
                     [&] { io::write_file_atomic((run_ / "state.json").string(), state_.dump(2) + "\n"); });
  }

  // Paper Table 2 layout: one row per round (0 = the initial model), SRCC / PLCC per dataset.
  void print_summary() const {
    std::vector<std::pair<int, json>> rows;
    for (int t = 0; t <= rounds_; ++t) {
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
    std::cout << "\n" << (method_ == "evoestimate" ? "EvoEstimate" : "EvoQuality") << " rounds (SRCC / PLCC against the dataset labels):\n" << table.str();
    io::write_file_atomic((run_ / "summary.csv").string(), csv.str());
  }

  const po::variables_map& vm_;
  std::shared_ptr<dist::Communicator> comm_;
  fs::path run_;
  std::string initial_model_;
  int rounds_ = 1;
  std::vector<std::string> images_, modes_;
  std::string method_;
  json state_;
};

int run(const po::variables_map& vm) {
  auto comm = dist::mpi_world();
  log::set_rank(comm->rank());
  return Evolution(vm, comm).run();
}

void add_options(po::options_description& o, po::positional_options_description&) {
  o.add_options()
      ("run", po::value<std::string>(), "run folder (state.json, round_<t>/...); rerun the same command to continue")
      ("model", po::value<std::string>(), "initial model (checkpoint folder); round t votes with round t-1's model")
      ("rounds", po::value<int>()->default_value(2), "evolution rounds T")
      ("images", po::value<std::vector<std::string>>(),
       "image pool of a round (folder or list file `path[,reference_id]`); repeat per round, the last one repeats")
      ("mode", po::value<std::vector<std::string>>(),
       "pair sampling of a round: random | same-reference; repeat per round (default, the paper's schedule: "
       "round 1 random over authentic images, later rounds same-reference over distorted ones)")
      ("root", po::value<std::vector<std::string>>(), "folder the list file's paths are relative to; per round")
      ("pairs", po::value<long long>()->default_value(20000), "pairs voted per round")
      ("seed", po::value<std::uint64_t>()->default_value(0), "base seed (round t uses seed + t)")
      ("eval-dataset", po::value<std::vector<std::string>>(), "evaluation after each round (`evoq eval --dataset`), repeatable")
      ("eval-root", po::value<std::vector<std::string>>(), "`evoq eval --root NAME=DIR`, repeatable")
      ("eval-initial", po::value<bool>()->default_value(true)->implicit_value(true), "also evaluate the initial model (round 0)")
      ("stage-config", po::value<std::string>(), "config file given to every stage ([vote], [train], [eval] sections)")
      ("method", po::value<std::string>()->default_value("evoquality"),
       "evoquality (vote on pairs, fidelity reward) | evoestimate (the paper's ablation: averaged c_score pseudo "
       "scores, reward 1 when within --estimate-threshold)")
      ("vote-args", po::value<std::string>()->default_value(""), "extra `evoq vote` options, space-separated")
      ("estimate-args", po::value<std::string>()->default_value(""), "extra `evoq estimate` options (evoestimate)")
      ("train-args", po::value<std::string>()->default_value(""), "extra `evoq train` options, space-separated")
      ("eval-args", po::value<std::string>()->default_value(""), "extra `evoq eval` options, space-separated");
}

EVOQ_COMMAND("evolve", "T rounds of pairs -> vote -> train -> eval in one resumable run folder (Algorithm 1)",
             add_options, run,
             "mpirun -np R evoq evolve --run RUN --model INIT --images POOL1 [--images POOL2] [--rounds 2]\n"
             "    [--eval-dataset SPEC ...] [--stage-config jobs/evolve.cfg]\n"
             "  Exit status 75: a stage stopped on SIGUSR1/SIGTERM after checkpointing; rerun the same command.");

}  // namespace
