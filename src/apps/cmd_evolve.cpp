// `evoq evolve`: T rounds of pairs -> vote -> train -> eval (paper Algorithm 1) in one resumable run
// folder; the work is train::run_evolution (evo/evolve.h). Each stage's settings come from its section of
// --stage-config ([vote], [estimate], [train], [eval], with the same keys as the stage command), and the
// options below override the most used ones.
#include "evoq/cli/cli.h"
#include "evoq/core/log.h"
#include "evoq/dist/communicator.h"
#include "evoq/train/evolve.h"
#include "stage_options.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;

std::vector<std::string> strings(const po::variables_map& vm, const char* key) {
  return vm.count(key) ? vm[key].as<std::vector<std::string>>() : std::vector<std::string>{};
}

template <typename T>
void override_from(const po::variables_map& vm, const char* key, T& target) {
  if (vm.count(key)) target = vm[key].as<T>();
}

train::EvolveSettings evolve_settings(const po::variables_map& vm) {
  train::EvolveSettings s;
  s.run_dir = vm.count("run") ? vm["run"].as<std::string>() : "";
  s.initial_model = vm.count("model") ? vm["model"].as<std::string>() : "";
  s.rounds = vm["rounds"].as<int>();
  s.images = strings(vm, "images");
  s.modes = strings(vm, "mode");
  s.roots = strings(vm, "root");
  s.pairs = vm["pairs"].as<long long>();
  s.seed = vm["seed"].as<std::uint64_t>();
  s.method = vm["method"].as<std::string>();
  s.reference = vm["reference"].as<std::string>();
  s.eval_initial = vm["eval-initial"].as<bool>();

  const std::string config = vm.count("stage-config") ? vm["stage-config"].as<std::string>() : "";
  s.vote = apps::vote_settings(apps::stage_config("vote", config));
  s.estimate = apps::estimate_settings(apps::stage_config("estimate", config));
  s.train = apps::train_settings(apps::stage_config("train", config));
  s.eval = apps::eval_settings(apps::stage_config("eval", config));

  // Evolve's own options win over the stage sections.
  override_from(vm, "vote-samples", s.vote.K);
  override_from(vm, "vote-samples", s.estimate.K);
  override_from(vm, "train-samples", s.train.samples);
  override_from(vm, "beta", s.train.beta);
  override_from(vm, "lr", s.train.lr);
  if (vm.count("steps")) s.train.steps = vm["steps"].as<std::int64_t>();
  override_from(vm, "pairs-per-step", s.train.pairs_per_step);
  override_from(vm, "trainable", s.train.trainable);
  if (vm.count("eval-dataset")) s.eval.datasets = strings(vm, "eval-dataset");
  for (const auto& spec : strings(vm, "eval-root")) {
    auto [name, dir] = eval::parse_root(spec);
    s.eval.roots[name] = dir;
  }
  for (gen::RuntimeSettings* r : {&s.vote.runtime, &s.estimate.runtime, &s.train.runtime}) {
    override_from(vm, "dtype", r->dtype);
    override_from(vm, "device", r->device);
    override_from(vm, "threads", r->threads);
  }
  override_from(vm, "dtype", s.eval.scorer.dtype);
  override_from(vm, "device", s.eval.scorer.device);
  override_from(vm, "threads", s.eval.scorer.threads);
  return s;
}

int run(const po::variables_map& vm) {
  const auto settings = evolve_settings(vm);
  auto comm = dist::mpi_world();
  log::set_rank(comm->rank());
  return train::run_evolution(settings, comm);
}

void add_options(po::options_description& o, po::positional_options_description&) {
  o.add_options()
      ("run", po::value<std::string>(), "run folder (state.json, round_<t>/...); rerun the same command to continue")
      ("model", po::value<std::string>(), "initial model (checkpoint folder); round t votes with round t-1's model")
      ("rounds", po::value<int>()->default_value(2), "evolution rounds T (a rerun may add rounds)")
      ("images", po::value<std::vector<std::string>>(),
       "image pool of a round (folder or list file `path[,reference_id]`); repeat per round, the last one repeats")
      ("mode", po::value<std::vector<std::string>>(),
       "pair sampling of a round: random | same-reference; repeat per round (default, the paper's schedule: "
       "round 1 random over authentic images, later rounds same-reference over distorted ones)")
      ("root", po::value<std::vector<std::string>>(), "folder the list file's paths are relative to; per round")
      ("pairs", po::value<long long>()->default_value(20000), "pairs voted per round")
      ("seed", po::value<std::uint64_t>()->default_value(0), "base seed (round t's stages use seed + t)")
      ("method", po::value<std::string>()->default_value("evoquality"),
       "evoquality (vote on pairs, fidelity reward) | evoestimate (the paper's ablation: averaged c_score pseudo "
       "scores, reward 1 when within the estimate threshold)")
      ("reference", po::value<std::string>()->default_value("base"),
       "pi_ref of Eq. 5-6: base (the initial model in every round, the paper's fixed reference) | round (round t-1's model)")
      ("eval-dataset", po::value<std::vector<std::string>>(), "evaluation after each round (`evoq eval --dataset`), repeatable")
      ("eval-root", po::value<std::vector<std::string>>(), "`evoq eval --root NAME=DIR`, repeatable")
      ("eval-initial", po::value<bool>()->default_value(true)->implicit_value(true), "also evaluate the initial model (round 0)")
      ("stage-config", po::value<std::string>(),
       "config file of the stages: [vote], [estimate], [train] and [eval] sections with the keys of the stage "
       "commands (e.g. [train] samples = 32); keys before any section apply to every stage that has them")
      ("vote-samples", po::value<int>(), "K of the vote (or estimate) stage (overrides [vote] samples)")
      ("train-samples", po::value<int>(), "K rollouts per image in training (overrides [train] samples)")
      ("beta", po::value<double>(), "KL weight of Eq. 5 (overrides [train] beta)")
      ("lr", po::value<double>(), "learning rate (overrides [train] lr)")
      ("steps", po::value<std::int64_t>(), "training steps per round (overrides [train] steps)")
      ("pairs-per-step", po::value<std::int64_t>(), "B (overrides [train] pairs-per-step)")
      ("trainable", po::value<std::string>(), "all | lm | lm+merger (overrides [train] trainable)")
      ("dtype", po::value<std::string>(), "every stage's dtype (overrides the sections)")
      ("device", po::value<std::string>(), "every stage's device (overrides the sections)")
      ("threads", po::value<int>(), "every stage's torch threads (overrides the sections)");
}

EVOQ_COMMAND("evolve", "T rounds of pairs -> vote -> train -> eval in one resumable run folder (Algorithm 1)",
             add_options, run,
             "mpirun -np R evoq evolve --run RUN --model INIT --images POOL1 [--images POOL2] [--rounds 2]\n"
             "    [--eval-dataset SPEC ...] [--stage-config jobs/evolve.cfg] [--vote-samples K] [--beta B] ...\n"
             "  state.json records every stage's settings; a rerun with any of them changed is refused, naming them.\n"
             "  Exit status 75: a stage stopped on SIGUSR1/SIGTERM after checkpointing; rerun the same command.");

}  // namespace
