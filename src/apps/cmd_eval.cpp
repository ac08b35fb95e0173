// evoq eval: score benchmark datasets with a scorer (handcrafted baseline or a registered model) and report
// SRCC / KRCC / PLCC per dataset and their weighted average (Table 2 layout).
#include <boost/any.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "evoq/core/cli.h"
#include "evoq/core/log.h"
#include "evoq/dist/agreement.h"
#include "evoq/dist/communicator.h"
#include "evoq/eval/baselines.h"
#include "evoq/eval/eval_run.h"

namespace {

namespace po = boost::program_options;

void add_options(po::options_description& o, po::positional_options_description&) {
  o.add_options()
      ("model", po::value<std::string>(), "scorer: brisque | niqe, or a VLM checkpoint directory (scored with c_score)")
      ("dataset", po::value<std::vector<std::string>>(),
       "dataset to evaluate (repeatable): KonIQ-10k[:train|val|test], SPAQ, AGIQA-3K, LIVE-Challenge, KADID-10k, "
       "PIPAL, TID2013, TID2008, CSIQ, LIVE, or csv:FILE (columns path + score|mos|dmos)")
      ("root", po::value<std::vector<std::string>>(), "image root of a dataset: NAME=DIR (repeatable)")
      ("labels-dir", po::value<std::string>()->default_value(""), "label files (default: data/iqa-labels)")
      ("skip-missing", po::bool_switch(), "evaluate without the image files that are missing")
      ("out", po::value<std::string>()->default_value("eval-out"),
       "output directory: scores.h5 (resumable), scores.csv, results.json, results.csv")
      ("flush-every", po::value<std::size_t>()->default_value(50), "rewrite scores.h5 every N scored images")
      ("baseline", po::value<std::string>()->default_value(""), "results.json of a baseline for the Δ% columns")
      ("brisque-model", po::value<std::string>()->default_value(""), "BRISQUE SVR model (default data/brisque)")
      ("brisque-range", po::value<std::string>()->default_value(""), "BRISQUE feature range (default data/brisque)")
      ("niqe-params", po::value<std::string>()->default_value(""), "NIQE pristine parameters .npz (default data/niqe)")
      // VLM scorer settings (strings: they travel to the scorer factory with the other string options).
      ("samples", po::value<std::string>()->default_value("1"), "VLM: answers per image (1 = greedy; N = mean of N samples)")
      ("reasoning", po::value<std::string>()->default_value("off"), "VLM: on | off — add the paper's reasoning suffix")
      ("max-new-tokens", po::value<std::string>()->default_value("256"), "VLM: longest answer in tokens")
      ("seed", po::value<std::string>()->default_value("0"), "VLM: sampling seed")
      ("dtype", po::value<std::string>()->default_value("fp32"), "VLM: fp32 | bf16")
      ("device", po::value<std::string>()->default_value("cpu"), "VLM: cpu | cuda");
}

// True when started by mpirun/srun with more than one task: only then is MPI initialised, so a plain
// `evoq eval` needs no MPI runtime.
bool launched_in_parallel() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"})
    if (const char* v = std::getenv(var); v && std::atoi(v) > 1) return true;
  return false;
}

int run(const po::variables_map& vm) {
  evoq::eval::register_baseline_scorers();
  evoq::eval::EvalOptions opt;
  opt.model = evoq::cli::require_string(vm, "model");
  // A directory is a VLM checkpoint: the "vlm" scorer (src/apps/vlm_scorer.cpp) with that checkpoint.
  if (std::filesystem::is_directory(opt.model)) {
    opt.scorer_options["checkpoint"] = opt.model;
    opt.model = "vlm";
  }
  if (vm.count("dataset")) opt.datasets = vm["dataset"].as<std::vector<std::string>>();
  if (vm.count("root"))
    for (const auto& spec : vm["root"].as<std::vector<std::string>>()) {
      auto [name, dir] = evoq::eval::parse_root(spec);
      opt.roots[name] = dir;
    }
  opt.labels_dir = vm["labels-dir"].as<std::string>();
  opt.skip_missing = vm["skip-missing"].as<bool>();
  opt.out_dir = vm["out"].as<std::string>();
  opt.flush_every = vm["flush-every"].as<std::size_t>();
  opt.baseline_json = vm["baseline"].as<std::string>();
  // Every string option reaches the scorer factory (a model scorer reads its own, e.g. its model dir).
  for (const auto& [key, value] : vm)
    if (const auto* s = boost::any_cast<std::string>(&value.value()); s && key != "model") opt.scorer_options[key] = *s;
  std::shared_ptr<evoq::dist::Communicator> comm;
  if (launched_in_parallel()) {
    comm = evoq::dist::mpi_world();
    opt.rank = comm->rank();
    opt.world = comm->size();
    opt.barrier = [comm] { comm->barrier(); };
    opt.agree_on_error = [comm](const std::string& error) { return evoq::dist::agree_on_error(*comm, error); };
    evoq::log::set_rank(opt.rank);
  }
  evoq::eval::run_eval(opt, std::cout);
  return 0;
}

EVOQ_COMMAND("eval", "score IQA benchmarks and report SRCC/KRCC/PLCC (Table 2 layout)", add_options, run,
             "evoq eval --model niqe --dataset CSIQ --root CSIQ=/data/CSIQ [--dataset csv:FILE ...] --out DIR");

}  // namespace
