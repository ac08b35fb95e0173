// `evoq train`: the online stage of EvoQuality (paper section 3.2, Algorithm 1 lines 6-15): GRPO with
// fidelity rewards on the pseudo-labels of labels.h5, synchronous data parallel over the MPI ranks,
// resumable (docs/TRAINING.md).
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <iostream>
#include <sstream>

#include "evoq/core/cli.h"
#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/agreement.h"
#include "evoq/dist/communicator.h"
#include "evoq/evo/estimate_store.h"
#include "evoq/evo/grpo_step.h"
#include "evoq/evo/memory_estimate.h"
#include "evoq/evo/optimizer.h"
#include "evoq/evo/rollout_store.h"
#include "evoq/evo/stop_signal.h"
#include "evoq/evo/train_batches.h"
#include "evoq/evo/train_checkpoint.h"
#include "evoq/evo/trainable_scope.h"
#include "evoq/gen/prompts.h"
#include "evoq/gen/sampling_options.h"
#include "evoq/gen/vlm_session.h"
#include "evoq/io/atomic_file.h"
#include "evoq/model/activation_checkpoint.h"
#include "evoq/model/autocast.h"
#include "evoq/model/config.h"
#include "evoq/model/weights.h"

namespace {

using namespace evoq;
using nlohmann::json;
namespace po = boost::program_options;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

void add_options(po::options_description& o, po::positional_options_description&) {
  o.add_options()
      ("model", po::value<std::string>(), "policy checkpoint folder (also the frozen reference)")
      ("labels", po::value<std::string>(), "labels.h5 of the voting stage (--reward fidelity)")
      ("reward", po::value<std::string>()->default_value("fidelity"),
       "fidelity (EvoQuality, Eq. 2-3, needs --labels) | estimate (EvoEstimate ablation, needs --estimates)")
      ("estimates", po::value<std::string>(), "estimates.h5 of `evoq estimate` (--reward estimate)")
      ("estimate-threshold", po::value<double>()->default_value(0.35),
       "--reward estimate: reward 1 when |score - pseudo score| < this, else 0 (Q-Insight)")
      ("out", po::value<std::string>(), "run folder (metrics.jsonl, rollouts/, checkpoints/)")
      ("steps", po::value<std::int64_t>(), "global steps to train (default: --epochs)")
      ("epochs", po::value<double>()->default_value(1.0), "epochs over the usable pairs when --steps is not given")
      ("pairs-per-step", po::value<std::int64_t>()->default_value(8), "B: pairs per global step (all ranks)")
      ("samples", po::value<int>()->default_value(8), "K: answers per image")
      ("lr", po::value<double>()->default_value(3e-7), "peak learning rate (AdamW, linear decay to 0)")
      ("warmup", po::value<std::int64_t>()->default_value(0), "warmup updates (linear from 0)")
      ("weight-decay", po::value<double>()->default_value(0.01), "AdamW decoupled weight decay")
      ("grad-clip", po::value<double>()->default_value(1.0), "global gradient-norm clip (<= 0: off)")
      ("beta", po::value<double>()->default_value(0.05), "KL weight of Eq. 5 (0 skips the reference model)")
      ("gamma", po::value<double>()->default_value(1e-6), "gamma of Eq. 2")
      ("min-partner-valid", po::value<int>()->default_value(2), "valid samples a partner needs to enter P_i")
      ("absent-partners", po::value<std::string>()->default_value("off"),
       "off: P_i = partners in the step's pairs | running: every labelled partner, absent ones by a running estimate")
      ("running-momentum", po::value<double>()->default_value(0.9), "--absent-partners running: EMA momentum of the estimate")
      ("clip-low", po::value<double>()->default_value(0.2), "clip epsilon below 1 (Eq. 5)")
      ("clip-high", po::value<double>()->default_value(0.2), "clip epsilon above 1 (Eq. 5)")
      ("loss-agg", po::value<std::string>()->default_value("token-mean"), "token-mean | seq-mean-token-mean | constant")
      ("loss-divisor", po::value<double>()->default_value(1.0), "divisor per sequence for --loss-agg constant")
      ("adv-epsilon", po::value<double>()->default_value(1e-6), "epsilon added to the group std (Eq. 4)")
      ("no-std-division", "advantages r - mean(r) without dividing by the std")
      ("ppo-epochs", po::value<int>()->default_value(1), "optimizer updates per rollout batch")
      ("micro-batch", po::value<int>()->default_value(8), "sequences per forward/backward")
      ("trainable", po::value<std::string>()->default_value("all"), "all | lm | lm+merger")
      ("zero", "shard the optimizer state over the ranks (ZeRO-1 style)")
      ("activation-checkpointing", "recompute decoder layers (and trained vision blocks) in backward instead of storing their activations")
      ("autocast", po::value<std::string>()->default_value("off"),
       "off | bf16: policy/reference forwards under bf16 autocast with fp32 weights (needs --dtype fp32)")
      ("checkpoint-every", po::value<std::int64_t>()->default_value(50), "checkpoint every N steps (and at the end)")
      ("keep-checkpoints", po::value<int>()->default_value(2), "newest checkpoints kept (0 = all)")
      ("rollouts-every", po::value<std::int64_t>()->default_value(1), "write the rollouts file every N steps (0 = never)")
      ("seed", po::value<std::uint64_t>()->default_value(0), "seed of the pair shuffle and the rollout sampling")
      ("reasoning", po::value<bool>()->default_value(true), "append the paper's reasoning suffix to c_score")
      ("prompt-file", po::value<std::string>(), "custom scoring prompt instead of c_score")
      ("max-batch-sequences", po::value<int>()->default_value(64), "rollout sequences decoded together")
      ("resume", "continue the run in --out from its latest checkpoint")
      ("dry-run", "print the per-GPU memory estimate and exit")
      ("ranks", po::value<int>(), "--dry-run: ranks to plan for (default: this job's)");
  gen::add_sampling_options(o, 512);
  gen::add_runtime_options(o);
}

torch::Device pick_device(const po::variables_map& vm, const dist::Communicator& comm) {
  auto device = gen::runtime_device(vm);
  if (device.is_cuda() && !device.has_index()) device = torch::Device(torch::kCUDA, comm.local_rank());
  return device;
}

// --autocast: bf16 compute needs fp32 parameters to be the master weights.
model::Autocast training_autocast(const po::variables_map& vm) {
  const auto mode = model::parse_autocast(vm["autocast"].as<std::string>());
  if (mode == model::Autocast::bf16 && vm["dtype"].as<std::string>() != "fp32")
    throw UsageError("--autocast bf16 needs --dtype fp32 (the fp32 weights are the master copy; got --dtype " +
                     vm["dtype"].as<std::string>() + ")");
  return mode;
}

int dry_run(const po::variables_map& vm, const std::string& model_dir, int ranks) {
  const auto config = model::load_config(model_dir);
  evo::MemoryPlan plan;
  plan.ranks = vm.count("ranks") ? vm["ranks"].as<int>() : ranks;
  plan.bf16 = vm["dtype"].as<std::string>() != "fp32";
  plan.zero_stage = vm.count("zero") ? 1 : 0;
  plan.activation_checkpointing = vm.count("activation-checkpointing") > 0;
  plan.autocast_bf16 = training_autocast(vm) == model::Autocast::bf16;
  plan.micro_batch_sequences = vm["micro-batch"].as<int>();
  plan.response_tokens = vm["max-new-tokens"].as<std::int64_t>();
  plan.sequence_length = plan.prompt_tokens + plan.response_tokens;
  plan.reference_model = vm["beta"].as<double>() != 0.0;
  plan.trainable_scope = vm["trainable"].as<std::string>();
  plan.rollout_samples = vm["samples"].as<int>();
  std::cout << evo::format_memory_table(evo::estimate_training_memory(config, plan), plan);
  return 0;
}

// Keeps the metrics lines of steps < first_step (a resumed run rewrites the rest).
void truncate_metrics(const fs::path& path, std::int64_t first_step) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception&) {
      break;  // a torn last line from a crash
    }
    if (j.value("step", std::int64_t(-1)) >= first_step) break;
    kept += line + "\n";
  }
  io::write_file_atomic(path.string(), kept);
}

json run_settings(const po::variables_map& vm, const std::string& prompt, const std::string& data_path) {
  json settings{{"model", vm["model"].as<std::string>()},
          {"labels", data_path},
          {"pairs_per_step", vm["pairs-per-step"].as<std::int64_t>()},
          {"samples", vm["samples"].as<int>()},
          {"seed", vm["seed"].as<std::uint64_t>()},
          {"prompt", prompt},
          {"absent_partners", vm["absent-partners"].as<std::string>()}};
  if (vm["reward"].as<std::string>() != "fidelity") {  // fidelity runs keep their original settings
    settings["reward"] = vm["reward"].as<std::string>();
    settings["estimate_threshold"] = vm["estimate-threshold"].as<double>();
  }
  return settings;
}

std::string format_eta(double seconds) {
  char buf[32];
  const long s = long(std::max(0.0, seconds));
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

int run(const po::variables_map& vm) {
  gen::apply_runtime_options(vm);
  const auto model_dir = cli::require_string(vm, "model");
  auto comm = dist::mpi_world();
  log::set_rank(comm->rank());
  if (vm.count("dry-run")) return comm->is_root() ? dry_run(vm, model_dir, comm->size()) : 0;
  const fs::path run_dir = cli::require_string(vm, "out");
  const bool resume = vm.count("resume") > 0;

  // Settings.
  const std::string base_prompt = vm.count("prompt-file")
                                      ? gen::read_prompt_file(vm["prompt-file"].as<std::string>(), 1)
                                      : std::string(gen::kScorePrompt);
  evo::GrpoStepConfig step_config;
  auto& rc = step_config.rollout;
  rc.samples = vm["samples"].as<int>();
  if (rc.samples < 2) throw UsageError("--samples must be >= 2 (group advantages need K >= 2)");
  rc.prompt = gen::with_reasoning_suffix(base_prompt, vm["reasoning"].as<bool>());
  rc.reward.gamma = vm["gamma"].as<double>();
  rc.reward.min_partner_valid = vm["min-partner-valid"].as<int>();
  rc.advantage.epsilon = vm["adv-epsilon"].as<double>();
  rc.advantage.divide_by_std = vm.count("no-std-division") == 0;
  auto& lc = step_config.loss;
  lc.beta = vm["beta"].as<double>();
  lc.clip_low = vm["clip-low"].as<double>();
  lc.clip_high = vm["clip-high"].as<double>();
  lc.aggregation = evo::parse_loss_aggregation(vm["loss-agg"].as<std::string>());
  lc.constant_divisor = vm["loss-divisor"].as<double>();
  step_config.micro_batch = vm["micro-batch"].as<int>();
  step_config.ppo_epochs = vm["ppo-epochs"].as<int>();
  if (step_config.micro_batch < 1) throw UsageError("--micro-batch must be >= 1");
  if (step_config.ppo_epochs < 1) throw UsageError("--ppo-epochs must be >= 1");
  step_config.autocast = training_autocast(vm);
  model::set_activation_checkpointing(vm.count("activation-checkpointing") > 0);
  const auto absent = vm["absent-partners"].as<std::string>();
  if (absent != "off" && absent != "running")
    throw UsageError("--absent-partners must be 'off' or 'running' (got '" + absent + "')");
  const auto seed = vm["seed"].as<std::uint64_t>();
  const auto checkpoint_every = vm["checkpoint-every"].as<std::int64_t>();
  const auto rollouts_every = vm["rollouts-every"].as<std::int64_t>();
  if (checkpoint_every < 1) throw UsageError("--checkpoint-every must be >= 1");

  // Data: labelled pairs (EvoQuality) or images with pseudo scores (EvoEstimate; one unit per image).
  const auto reward = vm["reward"].as<std::string>();
  std::string labels_path;
  evo::TrainData data;
  if (reward == "fidelity") {
    labels_path = cli::require_string(vm, "labels");
    data = evo::load_train_data(labels_path);
  } else if (reward == "estimate") {
    if (absent != "off") throw UsageError("--absent-partners applies to --reward fidelity only (EvoEstimate has no partners)");
    labels_path = cli::require_string(vm, "estimates");
    rc.reward_kind = evo::RewardKind::kEstimate;
    rc.estimate_threshold = vm["estimate-threshold"].as<double>();
    if (!(rc.estimate_threshold > 0)) throw UsageError("--estimate-threshold must be > 0");
    data = evo::load_estimate_data(labels_path, rc.pseudo_scores);
  } else {
    throw UsageError("--reward '" + reward + "' is not fidelity or estimate");
  }
  const evo::TrainBatches batches(data, vm["pairs-per-step"].as<std::int64_t>(), seed);
  std::optional<evo::RunningPartnerStats> running;
  if (absent == "running") running.emplace(data, vm["running-momentum"].as<double>());
  const std::int64_t total_steps =
      vm.count("steps") ? vm["steps"].as<std::int64_t>()
                        : std::int64_t(std::llround(vm["epochs"].as<double>() * double(batches.steps_per_epoch())));
  if (total_steps < 1) throw UsageError("--steps/--epochs give no step to train");
  log::info("train: ", data.pairs.size(), " usable pairs (", data.skipped_failed, " failed, ", data.skipped_unlabelled,
            " without a label skipped), ", data.image_paths.size(), " images, ", batches.steps_per_epoch(),
            " steps per epoch, ", total_steps, " steps, ", comm->size(), " rank(s)");

  // Run folder: a fresh run refuses a folder that already holds one.
  const auto settings = run_settings(vm, rc.prompt, labels_path);
  const auto settings_path = run_dir / "run_config.json";
  const auto latest = evo::latest_checkpoint(run_dir.string());
  if (!resume && (fs::exists(settings_path) || latest))
    throw UsageError("'" + run_dir.string() + "' already holds a training run: pass --resume to continue it or choose another --out");
  if (resume && fs::exists(settings_path)) {
    std::ifstream in(settings_path);
    const auto old = json::parse(in);
    for (const auto& [key, value] : settings.items())
      if (old.contains(key) && old[key] != value)
        throw UsageError("--resume: '" + key + "' differs from the run in '" + run_dir.string() + "' (was " +
                         old[key].dump() + ", now " + value.dump() + ")");
  }
  dist::run_agreed(*comm, "train", true, [&] {
    fs::create_directories(run_dir / "rollouts");
    if (!fs::exists(settings_path)) io::write_file_atomic(settings_path.string(), settings.dump(2) + "\n");
  });

  // Models and optimizer.
  const auto device = pick_device(vm, *comm);
  auto device_comm = device.is_cuda() ? dist::for_device(device) : comm;
  const auto dtype = gen::runtime_dtype(vm);
  auto session = gen::VlmSession::load(model_dir, dtype, device);
  std::shared_ptr<model::QwenVL> reference;
  if (lc.beta != 0.0) {
    reference = model::load_model(model_dir, dtype, device);
    reference->eval();
    for (auto& p : reference->parameters()) p.set_requires_grad(false);
  }
  auto params = evo::trainable_parameters(*session.model, vm["trainable"].as<std::string>());
  evo::OptimizerConfig oc;
  oc.lr = vm["lr"].as<double>();
  oc.weight_decay = vm["weight-decay"].as<double>();
  oc.max_grad_norm = vm["grad-clip"].as<double>();
  oc.warmup_steps = vm["warmup"].as<std::int64_t>();
  oc.total_steps = total_steps * step_config.ppo_epochs;
  oc.shard_state = vm.count("zero") > 0;
  evo::DistributedAdamW opt(params, oc, device_comm);

  rc.engine.sampling = session.defaults;
  rc.engine.sampling.do_sample = true;  // GRPO needs a spread of answers
  gen::apply_sampling_options(vm, rc.engine.sampling);
  rc.engine.stop_ids = session.stop_ids;
  rc.engine.seed = seed;
  rc.engine.max_batch_sequences = vm["max-batch-sequences"].as<int>();

  std::int64_t start_step = 0;
  if (resume) {
    if (auto resumed = evo::resume_from_newest_readable(run_dir.string(), *session.model, opt, *device_comm)) {
      const auto& progress = resumed->progress;
      start_step = progress.step;
      if (running && progress.extra.contains("running_partner_stats"))
        running->load_json(progress.extra["running_partner_stats"]);
      log::info("train: resuming from ", resumed->checkpoint_dir, " at step ", start_step);
    } else {
      log::info("train: --resume with no checkpoint in '", run_dir.string(), "': starting at step 0");
    }
  }
  const auto metrics_path = run_dir / "metrics.jsonl";
  dist::run_agreed(*comm, "train", true, [&] { truncate_metrics(metrics_path, start_step); });
  if (start_step >= total_steps) {
    log::info("train: the run is already complete (", start_step, " of ", total_steps, " steps)");
    return 0;
  }

  evo::install_stop_handlers();
  auto update = [&]() {
    const auto report = opt.step();
    if (report.nonfinite) log::warn("train: non-finite gradient, update skipped on every rank");
    return evo::UpdateOutcome{!report.applied, report.grad_norm, report.lr};
  };
  auto progress_of = [&](std::int64_t next_step) {
    evo::TrainProgress p;
    p.step = next_step;
    const auto loc = batches.locate(next_step);
    p.epoch = loc.epoch;
    p.position = loc.position;
    p.seed = seed;
    p.extra = {{"total_steps", total_steps}, {"settings", settings}};
    if (running) p.extra["running_partner_stats"] = running->to_json();
    return p;
  };
  const auto t_start = Clock::now();
  for (std::int64_t step = start_step; step < total_steps; ++step) {
    const auto pairs = batches.step_pairs(step);
    const auto loc = batches.locate(step);
    auto result = evo::grpo_step(session, reference.get(), data, pairs, step, step_config, *comm, update,
                                 running ? &*running : nullptr);
    result.metrics.epoch = loc.epoch;
    result.metrics.position = loc.position;
    if (rollouts_every > 0 && (step + 1) % rollouts_every == 0) {
      char name[64];
      std::snprintf(name, sizeof name, "step-%08lld.h5", static_cast<long long>(step));
      evo::RolloutFileInfo info{step, loc.epoch, loc.position, seed, rc.samples, rc.prompt, model_dir, labels_path};
      evo::write_rollouts((run_dir / "rollouts" / name).string(), result.rollouts, data, pairs, info, *comm);
    }
    dist::run_agreed(*comm, "train", true, [&] { io::append_file(metrics_path.string(), result.metrics.to_json().dump() + "\n"); });
    if (comm->is_root()) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - t_start).count();
      const double per_step = elapsed / double(step + 1 - start_step);
      const auto& m = result.metrics;
      log::info("train: step ", step + 1, "/", total_steps, " epoch ", loc.epoch, " reward ", m.reward_mean, " (std ",
                m.reward_std, ") invalid ", m.invalid_rate, " kl ", m.kl, " grad ", m.grad_norm, " lr ", m.lr, " | ",
                m.step_seconds, " s/step (rollout ", m.rollout_seconds, ", ref ", m.reference_seconds, ", update ",
                m.update_seconds, ") ETA ", format_eta(per_step * double(total_steps - step - 1)));
    }
    const bool stop = evo::stop_requested_anywhere(*comm);
    const bool last = step + 1 == total_steps;
    if (stop || last || (step + 1) % checkpoint_every == 0)
      evo::save_checkpoint(run_dir.string(), *session.model, model_dir, opt, progress_of(step + 1), *device_comm,
                           vm["keep-checkpoints"].as<int>());
    if (stop && !last) {
      log::info("train: stop requested: checkpoint written after step ", step + 1, "; rerun with --resume");
      return evo::kExitStoppedBySignal;
    }
  }
  log::info("train: done, ", total_steps, " steps; final checkpoint in ", (run_dir / "checkpoints").string());
  return 0;
}

EVOQ_COMMAND("train", "online stage: GRPO with fidelity rewards on labels.h5 (paper section 3.2)", add_options, run,
             "evoq train --model DIR --labels labels.h5 --out RUN_DIR [--steps N | --epochs E] [--resume] [--dry-run]\n"
             "evoq train --model DIR --reward estimate --estimates estimates.h5 --out RUN_DIR ...  (EvoEstimate;\n"
             "  --pairs-per-step is then images per step)");

}  // namespace
