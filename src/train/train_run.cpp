#include "evoq/train/train_run.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/core/settings_diff.h"
#include "evoq/dist/agreement.h"
#include "evoq/evo/estimate_store.h"
#include "evoq/train/grpo_step.h"
#include "evoq/train/memory_estimate.h"
#include "evoq/train/optimizer.h"
#include "evoq/train/rollout_store.h"
#include "evoq/dist/stop_signal.h"
#include "evoq/train/train_batches.h"
#include "evoq/train/train_checkpoint.h"
#include "evoq/train/trainable_scope.h"
#include "evoq/gen/prompts.h"
#include "evoq/io/atomic_file.h"
#include "evoq/io/checkpoint_summary.h"
#include "evoq/model/activation_checkpoint.h"
#include "evoq/model/autocast.h"
#include "evoq/model/config.h"
#include "evoq/model/weights.h"

namespace evoq::train {

using namespace evoq::evo;  // the method's equations and stores this layer trains with

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string format_eta(double seconds) {
  char buf[32];
  const long s = long(std::max(0.0, seconds));
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
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

model::Autocast training_autocast(const TrainSettings& s) {
  if (s.autocast == "auto")
    return s.runtime.dtype == "fp32" && (s.runtime.on_cuda() || gen::cpu_has_native_bf16())
               ? model::Autocast::bf16
               : model::Autocast::off;
  const auto mode = model::parse_autocast(s.autocast);
  if (mode == model::Autocast::bf16 && s.runtime.dtype != "fp32")
    throw UsageError("--autocast bf16 needs --dtype fp32 (the fp32 weights are the master copy; got --dtype " +
                     s.runtime.dtype + ")");
  return mode;
}

int dry_run(const TrainSettings& s, int ranks) {
  const auto config = model::load_config(s.model_dir);
  MemoryPlan plan;
  plan.ranks = s.dry_run_ranks.value_or(ranks);
  plan.bf16 = s.runtime.dtype != "fp32";
  plan.zero_stage = s.zero ? 1 : 0;
  plan.activation_checkpointing = s.activation_checkpointing;
  plan.autocast_bf16 = training_autocast(s) == model::Autocast::bf16;
  plan.micro_batch_sequences = s.micro_batch;
  plan.response_tokens = s.sampling.max_new_tokens.value_or(512);
  plan.sequence_length = plan.prompt_tokens + plan.response_tokens;
  plan.reference_model = s.beta != 0.0;
  plan.trainable_scope = s.trainable;
  plan.rollout_samples = s.samples;
  std::cout << format_memory_table(estimate_training_memory(config, plan), plan);
  return 0;
}

// The runtime settings of a run (not compared on resume).
json runtime_json(const TrainSettings& s) {
  return {{"device", s.runtime.device},
          {"threads", s.runtime.threads},
          {"micro_batch", s.micro_batch},
          {"max_batch_sequences", s.max_batch_sequences},
          {"activation_checkpointing", s.activation_checkpointing},
          {"checkpoint_every", s.checkpoint_every},
          {"keep_checkpoints", s.keep_checkpoints},
          {"rollouts_every", s.rollouts_every},
          {"zero_signal_steps", s.zero_signal_steps}};
}

// Counts the steps in which most groups (images) had no reward spread: their advantages are 0 and they
// give no gradient. A run where that lasts learns nothing, silently, so it is said loudly.
class ZeroSignalGuard {
 public:
  explicit ZeroSignalGuard(int patience) : patience_(std::max(1, patience)) {}
  void observe(const StepMetrics& m, bool root) {
    const double fraction = m.images > 0 ? double(m.zero_variance_groups) / double(m.images) : 1.0;
    if (fraction <= 0.5) {
      streak_ = 0;
      return;
    }
    ++silent_steps_;
    if (++streak_ % patience_ == 0 && root)
      log::warn("train: WARNING: for ", streak_, " consecutive steps more than half of the images had K answers "
                "with equal rewards (this step: ", m.zero_variance_groups, " of ", m.images,
                "): no gradient comes from them. Check the rollout sampling (--temperature, --top-k, --top-p), "
                "the answer format (invalid rate ", m.invalid_rate, ") and K (--samples)");
  }
  std::int64_t silent_steps() const { return silent_steps_; }

 private:
  int patience_;
  int streak_ = 0;
  std::int64_t silent_steps_ = 0;
};

}  // namespace

void TrainSettings::validate() const {
  if (model_dir.empty()) throw UsageError("the option '--model' is required");
  if (dry_run) return;
  if (out_dir.empty()) throw UsageError("the option '--out' is required");
  if (samples < 2) throw UsageError("--samples must be >= 2 (group advantages need K >= 2)");
  if (pairs_per_step < 1) throw UsageError("--pairs-per-step must be >= 1");
  if (steps && *steps < 1) throw UsageError("--steps must be >= 1");
  if (!(epochs > 0)) throw UsageError("--epochs must be > 0");
  if (micro_batch < 1) throw UsageError("--micro-batch must be >= 1");
  if (ppo_epochs < 1) throw UsageError("--ppo-epochs must be >= 1");
  if (checkpoint_every < 1) throw UsageError("--checkpoint-every must be >= 1");
  if (max_batch_sequences < 1) throw UsageError("--max-batch-sequences must be >= 1");
  if (absent_partners != "off" && absent_partners != "running")
    throw UsageError("--absent-partners must be 'off' or 'running' (got '" + absent_partners + "')");
  if (reward == "fidelity") {
    if (labels_path.empty()) throw UsageError("the option '--labels' is required (--reward fidelity)");
  } else if (reward == "estimate") {
    if (estimates_path.empty()) throw UsageError("the option '--estimates' is required (--reward estimate)");
    if (absent_partners != "off")
      throw UsageError("--absent-partners applies to --reward fidelity only (EvoEstimate has no partners)");
    if (!(estimate_threshold > 0)) throw UsageError("--estimate-threshold must be > 0");
  } else {
    throw UsageError("--reward '" + reward + "' is not fidelity or estimate");
  }
  if (!(lr >= 0)) throw UsageError("--lr must be >= 0");
  if (!(beta >= 0)) throw UsageError("--beta must be >= 0");
  parse_loss_aggregation(loss_agg);
}

json training_fingerprint(const TrainSettings& s, const std::string& prompt, const gen::SamplingParams& sampling) {
  json f{{"model", s.model_dir},
         {"reference_model", s.reference_model.empty() ? s.model_dir : s.reference_model},
         {"reward", s.reward},
         {"data", s.reward == "fidelity" ? s.labels_path : s.estimates_path},
         {"pairs_per_step", s.pairs_per_step},
         {"samples", s.samples},
         {"lr", s.lr},
         {"warmup", s.warmup},
         {"weight_decay", s.weight_decay},
         {"grad_clip", s.grad_clip},
         {"trainable", s.trainable},
         {"zero", s.zero},
         {"beta", s.beta},
         {"gamma", s.gamma},
         {"min_partner_valid", s.min_partner_valid},
         {"absent_partners", s.absent_partners},
         {"clip_low", s.clip_low},
         {"clip_high", s.clip_high},
         {"loss_agg", s.loss_agg},
         {"adv_epsilon", s.adv_epsilon},
         {"std_division", s.std_division},
         {"ppo_epochs", s.ppo_epochs},
         {"autocast", model::autocast_name(training_autocast(s))},
         {"dtype", s.runtime.dtype},
         {"seed", s.seed},
         {"prompt", prompt},
         {"sampling", gen::to_json(sampling)}};
  if (s.steps) f["steps"] = *s.steps;
  else f["epochs"] = s.epochs;
  if (s.reward == "estimate") f["estimate_threshold"] = s.estimate_threshold;
  if (s.absent_partners == "running") f["running_momentum"] = s.running_momentum;
  if (s.loss_agg == "constant") f["loss_divisor"] = s.loss_divisor;
  return f;
}

int run_training(const TrainSettings& s, const std::shared_ptr<dist::Communicator>& world) {
  dist::Communicator& comm = *world;
  s.validate();
  const auto device = s.runtime.torch_device(comm.local_rank());
  const auto dtype = s.runtime.torch_dtype(device);
  s.runtime.apply(device);
  if (s.dry_run) return comm.is_root() ? dry_run(s, comm.size()) : 0;
  const fs::path run_dir = s.out_dir;

  // Objective and rollouts.
  GrpoStepConfig step_config;
  auto& rc = step_config.rollout;
  rc.samples = s.samples;
  rc.prompt = gen::with_reasoning_suffix(
      s.prompt_file.empty() ? std::string(gen::kScorePrompt) : gen::read_prompt_file(s.prompt_file, 1), s.reasoning);
  rc.reward.gamma = s.gamma;
  rc.reward.min_partner_valid = s.min_partner_valid;
  rc.advantage.epsilon = s.adv_epsilon;
  rc.advantage.divide_by_std = s.std_division;
  auto& lc = step_config.loss;
  lc.beta = s.beta;
  lc.clip_low = s.clip_low;
  lc.clip_high = s.clip_high;
  lc.aggregation = parse_loss_aggregation(s.loss_agg);
  lc.constant_divisor = s.loss_divisor;
  step_config.micro_batch = s.micro_batch;
  step_config.ppo_epochs = s.ppo_epochs;
  step_config.autocast = training_autocast(s);
  model::set_activation_checkpointing(s.activation_checkpointing);

  // Rollout sampling: training's own defaults (never a chat model's near-greedy generation_config).
  auto sampling = gen::with_overrides(gen::rollout_sampling_defaults(gen::model_sampling_defaults(s.model_dir)),
                                      s.sampling, "rollout sampling");
  if (const auto why = gen::near_greedy_reason(sampling); !why.empty()) {
    if (!s.allow_near_greedy)
      throw UsageError("rollout sampling is near-deterministic (" + why +
                       "): the K answers of an image would be equal and GRPO would learn nothing; raise "
                       "--temperature/--top-k/--top-p or pass --allow-near-greedy");
    if (comm.is_root())
      log::warn("train: rollout sampling is near-deterministic (", why, "), allowed by --allow-near-greedy");
  }
  lc.temperature = sampling.temperature;  // log-probs under the distribution the rollouts come from

  // Data: labelled pairs (EvoQuality) or images with pseudo scores (EvoEstimate; one unit per image).
  TrainData data;
  if (s.reward == "fidelity") {
    data = load_train_data(s.labels_path);
  } else {
    rc.reward_kind = RewardKind::kEstimate;
    rc.estimate_threshold = s.estimate_threshold;
    data = load_estimate_data(s.estimates_path, rc.pseudo_scores);
  }
  const TrainBatches batches(data, s.pairs_per_step, s.seed);
  std::optional<RunningPartnerStats> running;
  if (s.absent_partners == "running") running.emplace(data, s.running_momentum);
  const std::int64_t total_steps =
      s.steps ? *s.steps : std::int64_t(std::llround(s.epochs * double(batches.steps_per_epoch())));
  if (total_steps < 1) throw UsageError("--steps/--epochs give no step to train");
  if (comm.is_root())
    log::info("train: ", data.pairs.size(), " usable pairs (", data.skipped_failed, " failed, ",
              data.skipped_unlabelled, " without a label skipped), ", data.image_paths.size(), " images, ",
              batches.steps_per_epoch(), " steps per epoch, ", total_steps, " steps, ", comm.size(), " rank(s), ",
              s.runtime.describe(device), ", autocast ", model::autocast_name(training_autocast(s)),
              s.autocast == "auto" ? " (--autocast auto)" : "", "; rollouts: temperature ", sampling.temperature,
              ", top_p ", sampling.top_p, ", top_k ", sampling.top_k, ", K = ", s.samples);

  // Settings: recorded by a fresh run, enforced on resume.
  const std::string reference_dir = s.reference_model.empty() ? s.model_dir : s.reference_model;
  json fingerprint = training_fingerprint(s, rc.prompt, sampling);
  fingerprint["model_checksum"] = dist::shared_weights_checksum(comm, "train", s.model_dir);
  fingerprint["reference_checksum"] = reference_dir == s.model_dir
                                          ? fingerprint["model_checksum"]
                                          : json(dist::shared_weights_checksum(comm, "train", reference_dir));
  const auto config_path = run_dir / "run_config.json";
  // Decided by rank 0 alone and refused alike on every rank: rank 0 writes run_config.json just below, so a
  // rank checking the folder itself could find it already written, refuse alone and leave rank 0 waiting in
  // the next collective for ever (a hang seen in CI with 2 ranks).
  dist::refuse_alike(comm, "train", [&]() -> std::string {
    if (!s.resume && (fs::exists(config_path) || latest_checkpoint(run_dir.string())))
      return "'" + run_dir.string() +
             "' already holds a training run: pass --resume to continue it or choose another --out";
    if (s.resume && fs::exists(config_path)) {
      json recorded;
      try {
        recorded = json::parse(io::read_file(config_path.string()));
      } catch (const json::exception& e) {
        fail(config_path.string(), ": not valid JSON (", e.what(), ")");
      }
      const auto differences = describe_settings_differences(recorded.value("settings", recorded), fingerprint);
      if (!differences.empty())
        return "--resume: settings differ from the run in '" + run_dir.string() + "': " + differences +
               " (use the run's settings, or another --out for a new run)";
    }
    return "";
  });
  dist::run_agreed(comm, "train", true, [&] {
    fs::create_directories(run_dir / "rollouts");
    if (!fs::exists(config_path))
      io::write_file_atomic(config_path.string(),
                            json{{"settings", fingerprint}, {"runtime", runtime_json(s)}}.dump(2) + "\n");
  });

  // Models and optimizer.
  // Gradients travel over NCCL on GPUs (this communicator is destroyed before MPI ends), over MPI on CPU.
  const auto device_comm_owner = device.is_cuda() ? dist::for_device(device) : world;
  dist::Communicator& device_comm = *device_comm_owner;
  auto session = gen::VlmSession::load(s.model_dir, dtype, device);
  std::shared_ptr<model::QwenVL> reference;
  if (lc.beta != 0.0) {
    reference = model::load_model(reference_dir, dtype, device);
    reference->eval();
    for (auto& p : reference->parameters()) p.set_requires_grad(false);
  }
  auto params = trainable_parameters(*session.model, s.trainable);
  OptimizerConfig oc;
  oc.lr = s.lr;
  oc.weight_decay = s.weight_decay;
  oc.max_grad_norm = s.grad_clip;
  oc.warmup_steps = s.warmup;
  oc.total_steps = total_steps * step_config.ppo_epochs;
  oc.shard_state = s.zero;
  DistributedAdamW opt(params, oc, device_comm_owner);
  rc.engine.sampling = sampling;
  rc.engine.stop_ids = session.stop_ids;
  rc.engine.seed = s.seed;
  rc.engine.max_batch_sequences = s.max_batch_sequences;

  std::int64_t start_step = 0;
  if (s.resume) {
    if (auto resumed = resume_from_newest_readable(run_dir.string(), *session.model, opt, device_comm)) {
      const auto& progress = resumed->progress;
      start_step = progress.step;
      if (running && progress.extra.contains("running_partner_stats"))
        running->load_json(progress.extra["running_partner_stats"]);
      if (comm.is_root()) log::info("train: resuming from ", resumed->checkpoint_dir, " at step ", start_step);
    } else if (comm.is_root()) {
      log::info("train: --resume with no checkpoint in '", run_dir.string(), "': starting at step 0");
    }
  }
  const auto metrics_path = run_dir / "metrics.jsonl";
  dist::run_agreed(comm, "train", true, [&] { truncate_metrics(metrics_path, start_step); });
  if (start_step >= total_steps) {
    if (comm.is_root()) log::info("train: the run is already complete (", start_step, " of ", total_steps, " steps)");
    return 0;
  }

  dist::install_stop_handlers();
  auto update = [&]() {
    const auto report = opt.step();
    if (report.nonfinite && comm.is_root()) log::warn("train: non-finite gradient, update skipped on every rank");
    return UpdateOutcome{!report.applied, report.grad_norm, report.lr};
  };
  const std::string run_config = json{{"settings", fingerprint}}.dump();
  auto progress_of = [&](std::int64_t next_step) {
    TrainProgress p;
    p.step = next_step;
    const auto loc = batches.locate(next_step);
    p.epoch = loc.epoch;
    p.position = loc.position;
    p.seed = s.seed;
    p.extra = {{"total_steps", total_steps}, {"settings", fingerprint}};
    if (running) p.extra["running_partner_stats"] = running->to_json();
    return p;
  };
  ZeroSignalGuard guard(s.zero_signal_steps);
  const auto t_start = Clock::now();
  for (std::int64_t step = start_step; step < total_steps; ++step) {
    const auto pairs = batches.step_pairs(step);
    const auto loc = batches.locate(step);
    auto result = grpo_step(session, reference.get(), data, pairs, step, step_config, comm, update,
                            running ? &*running : nullptr);
    auto& m = result.metrics;
    m.epoch = loc.epoch;
    m.position = loc.position;
    if (s.rollouts_every > 0 && (step + 1) % s.rollouts_every == 0) {
      char name[64];
      std::snprintf(name, sizeof name, "step-%08lld.h5", static_cast<long long>(step));
      RolloutFileInfo info{step, loc.epoch, loc.position, s.seed, rc.samples, rc.prompt, s.model_dir,
                           s.reward == "fidelity" ? s.labels_path : s.estimates_path, run_config};
      write_rollouts((run_dir / "rollouts" / name).string(), result.rollouts, data, pairs, info, comm);
    }
    dist::run_agreed(comm, "train", true, [&] { io::append_file(metrics_path.string(), m.to_json().dump() + "\n"); });
    guard.observe(m, comm.is_root());
    if (comm.is_root()) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - t_start).count();
      const double per_step = elapsed / double(step + 1 - start_step);
      log::info("train: step ", step + 1, "/", total_steps, " epoch ", loc.epoch, " reward ", m.reward_mean, " (std ",
                m.reward_std, ") no-spread ", m.zero_variance_groups, "/", m.images, " invalid ", m.invalid_rate,
                " kl ", m.kl, " grad ", m.grad_norm, " lr ", m.lr, " | ", m.step_seconds, " s/step (rollout ",
                m.rollout_seconds, ", ref ", m.reference_seconds, ", update ", m.update_seconds, ") ETA ",
                format_eta(per_step * double(total_steps - step - 1)));
    }
    const bool stop = dist::stop_requested_anywhere(comm);
    const bool last = step + 1 == total_steps;
    if (stop || last || (step + 1) % s.checkpoint_every == 0)
      save_checkpoint(run_dir.string(), *session.model, s.model_dir, opt, progress_of(step + 1), device_comm,
                      s.keep_checkpoints);
    if (stop && !last) {
      if (comm.is_root())
        log::info("train: stop requested: checkpoint written after step ", step + 1, "; rerun with --resume");
      return dist::kExitStoppedBySignal;
    }
  }
  if (comm.is_root()) {
    log::info("train: done, ", total_steps, " steps; final checkpoint in ", (run_dir / "checkpoints").string());
    if (guard.silent_steps() > 0)
      log::warn("train: ", guard.silent_steps(), " of ", total_steps - start_step,
                " steps had more than half of their images without reward spread (no gradient from them)");
  }
  return 0;
}

}  // namespace evoq::train
