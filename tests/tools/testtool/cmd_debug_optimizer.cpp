// `evoq debug-optimizer`: internal entry points the Python oracle tests drive.
//  - `adamw --in STEPS.safetensors --out DIR --steps N ...`: runs DistributedAdamW for N steps on the
//    parameters "param/<name>" with gradients "grad/<step>/<name>" (or, with --per-rank-grads,
//    "grad/<step>/r<rank>/<name>"; a missing gradient is undefined) and writes the final parameters as
//    fp32 "param/<name>" into DIR/model.safetensors and one JSON line per step to DIR/report.jsonl
//    (rank 0). Runs under mpirun too (tests/python/test_train_optimizer.py compares with torch.optim.AdamW).
//  - `ckpt-loop --model DIR --run RUN --steps N [--resume]`: a fake training loop (seeded random
//    gradients per step and rank) over a real model that saves checkpoints and stops on SIGUSR1/SIGTERM
//    (exit 75), for the kill -9 / resume tests; the final weights go to --out (HF layout).
//  - `memory --model-config CONFIG ...`: parameter counts by component and the per-GPU memory estimate
//    as JSON on stdout (the table on stderr).
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/communicator.h"
#include "evoq/train/memory_estimate.h"
#include "evoq/train/optimizer.h"
#include "evoq/dist/stop_signal.h"
#include "evoq/train/train_checkpoint.h"
#include "evoq/train/trainable_scope.h"
#include "evoq/io/atomic_file.h"
#include "evoq/io/safetensors.h"
#include "evoq/model/config.h"
#include "evoq/model/weights.h"

namespace {

using namespace evoq;
using nlohmann::json;
namespace po = boost::program_options;

int run_adamw(const po::variables_map& vm) {
  auto comm = dist::mpi_world();
  const std::string in = cli::require_string(vm, "in");
  const std::string out = cli::require_string(vm, "out");
  const int steps = vm["steps"].as<int>();
  const auto dtype = model::parse_torch_dtype(vm["dtype"].as<std::string>());
  const bool per_rank = vm.count("per-rank-grads") > 0;

  train::OptimizerConfig config;
  config.lr = vm["lr"].as<double>();
  config.beta1 = vm["beta1"].as<double>();
  config.beta2 = vm["beta2"].as<double>();
  config.eps = vm["eps"].as<double>();
  config.weight_decay = vm["weight-decay"].as<double>();
  config.max_grad_norm = vm["max-grad-norm"].as<double>();
  config.warmup_steps = vm["warmup-steps"].as<long long>();
  config.total_steps = vm["total-steps"].as<long long>();
  config.shard_state = vm.count("shard") > 0;
  config.bucket_mb = vm["bucket-mb"].as<double>();

  auto checkpoint = io::Checkpoint::open(in);
  std::map<std::string, torch::Tensor> by_name;  // sorted: the parameter order
  for (const auto& key : checkpoint.names())
    if (key.rfind("param/", 0) == 0)
      by_name[key.substr(6)] = model::to_torch(checkpoint.get(key)).to(dtype).clone().set_requires_grad(true);
  EVOQ_CHECK(!by_name.empty(), in, ": no param/<name> tensors");
  std::vector<std::pair<std::string, torch::Tensor>> params(by_name.begin(), by_name.end());
  train::DistributedAdamW opt(params, config, comm);
  if (vm.count("load-state")) opt.load_state(vm["load-state"].as<std::string>());
  const int first = int(opt.steps_taken());

  std::filesystem::create_directories(out);
  std::ofstream report;
  if (comm->is_root()) report.open(std::filesystem::path(out) / "report.jsonl");
  for (int s = first; s < first + steps; ++s) {
    for (auto& [name, p] : params) {
      const std::string key = "grad/" + std::to_string(s) + "/" +
                              (per_rank ? "r" + std::to_string(comm->rank()) + "/" : std::string()) + name;
      if (checkpoint.contains(key)) p.mutable_grad() = model::to_torch(checkpoint.get(key)).to(dtype).clone();
    }
    const auto r = opt.step();
    if (comm->is_root())
      report << json{{"step", r.step}, {"applied", r.applied}, {"nonfinite", r.nonfinite},
                     {"grad_norm", std::isfinite(r.grad_norm) ? json(r.grad_norm) : json(nullptr)}, {"lr", r.lr}}
                    .dump()
             << "\n";
  }
  if (vm.count("save-state"))
    opt.save_state(vm["save-state"].as<std::string>() + ".r" + std::to_string(comm->rank()) + ".h5");
  if (comm->is_root()) {
    std::vector<torch::Tensor> keep;
    std::vector<io::TensorToWrite> tensors;
    for (auto& [name, p] : params) {
      keep.push_back(p.detach().to(torch::kFloat32).contiguous());
      io::TensorToWrite w;
      w.name = "param/" + name;
      w.dtype = io::DType::F32;
      w.shape.assign(keep.back().sizes().begin(), keep.back().sizes().end());
      w.data = keep.back().data_ptr();
      w.nbytes = keep.back().numel() * 4;
      tensors.push_back(std::move(w));
    }
    io::write_checkpoint(out, tensors);
  }
  comm->barrier();
  return 0;
}

int run_ckpt_loop(const po::variables_map& vm) {
  auto comm = dist::mpi_world();
  const std::string model_dir = cli::require_string(vm, "model");
  const std::string run_dir = cli::require_string(vm, "run");
  const int64_t steps = vm["steps"].as<int>();
  const int save_every = vm["save-every"].as<int>();
  const int sleep_ms = vm["sleep-ms"].as<int>();
  EVOQ_CHECK(save_every >= 1, "--save-every must be >= 1");
  dist::install_stop_handlers();
  auto model = model::load_model(model_dir, model::parse_torch_dtype(vm["dtype"].as<std::string>()), torch::kCPU);
  auto params = train::trainable_parameters(*model, vm["trainable"].as<std::string>());
  train::OptimizerConfig config;
  config.lr = vm["lr"].as<double>();
  config.weight_decay = vm["weight-decay"].as<double>();
  config.max_grad_norm = vm["max-grad-norm"].as<double>();
  config.warmup_steps = vm["warmup-steps"].as<long long>();
  config.total_steps = steps;
  config.shard_state = vm.count("shard") > 0;
  config.bucket_mb = vm["bucket-mb"].as<double>();
  train::DistributedAdamW opt(params, config, comm);
  train::TrainProgress progress;
  progress.seed = 7;
  if (vm.count("resume")) {
    if (auto resumed = train::resume_from_newest_readable(run_dir, *model, opt, *comm)) {
      progress = resumed->progress;
      log::info("resumed from ", resumed->checkpoint_dir, " at step ", progress.step);
    }
  }
  for (int64_t s = progress.step; s < steps; ++s) {
    torch::manual_seed(uint64_t(1000003) * uint64_t(s + 1) + uint64_t(comm->rank()));
    for (auto& [name, p] : params) p.mutable_grad() = torch::randn_like(p) * 0.05;
    opt.step();
    progress.step = s + 1;
    progress.epoch = (s + 1) / 4;
    progress.position = (s + 1) % 4;
    progress.extra = {{"last_lr", opt.lr_at(s)}};
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    const bool stop = dist::stop_requested_anywhere(*comm);
    if ((s + 1) % save_every == 0 || stop || s + 1 == steps)
      train::save_checkpoint(run_dir, *model, model_dir, opt, progress, *comm, vm["keep-last"].as<int>());
    if (stop) {
      log::info("stopped by signal after step ", s + 1);
      return dist::kExitStoppedBySignal;
    }
  }
  if (vm.count("out") && comm->is_root()) model::save_model(*model, vm["out"].as<std::string>());
  comm->barrier();
  return 0;
}

int run_memory(const po::variables_map& vm) {
  const auto config = model::load_config(cli::require_string(vm, "model-config"));
  train::MemoryPlan plan;
  plan.ranks = vm["ranks"].as<int>();
  plan.bf16 = vm["dtype"].as<std::string>() != "fp32";
  plan.zero_stage = vm["zero"].as<int>();
  plan.activation_checkpointing = vm.count("activation-checkpointing") > 0;
  plan.micro_batch_sequences = vm["micro-batch"].as<long long>();
  plan.sequence_length = vm["seq-len"].as<long long>();
  plan.reference_model = vm.count("no-reference") == 0;
  plan.trainable_scope = vm["trainable"].as<std::string>();
  const auto e = train::estimate_training_memory(config, plan);
  std::cerr << train::format_memory_table(e, plan);
  json j{{"params",
          {{"vision", e.params.vision}, {"merger", e.params.merger}, {"decoder", e.params.decoder},
           {"lm_head", e.params.lm_head}, {"total", e.params.total()}}},
         {"trainable", e.trainable},
         {"bytes",
          {{"weights", e.weights}, {"reference_weights", e.reference_weights}, {"grads", e.grads},
           {"optimizer_state", e.optimizer_state}, {"comm_buffers", e.comm_buffers}, {"activations", e.activations},
           {"logits", e.logits}, {"rollout_kv", e.rollout_kv}, {"total", e.total()}}}};
  std::cout << j.dump() << "\n";
  return 0;
}

void add_options(po::options_description& o, po::positional_options_description& pos) {
  o.add_options()
      ("what", po::value<std::string>(), "adamw | ckpt-loop | memory")
      ("in", po::value<std::string>(), "adamw: safetensors file with param/<name> and grad/<step>/<name>")
      ("out", po::value<std::string>(), "adamw: output folder")
      ("steps", po::value<int>()->default_value(1), "adamw: optimizer steps to run")
      ("dtype", po::value<std::string>()->default_value("fp32"), "parameter dtype (fp32 | bf16)")
      ("per-rank-grads", "adamw: gradients are grad/<step>/r<rank>/<name>")
      ("lr", po::value<double>()->default_value(1e-3), "adamw: base learning rate")
      ("beta1", po::value<double>()->default_value(0.9), "adamw: beta1")
      ("beta2", po::value<double>()->default_value(0.999), "adamw: beta2")
      ("eps", po::value<double>()->default_value(1e-8), "adamw: epsilon")
      ("weight-decay", po::value<double>()->default_value(0.0), "adamw: decoupled weight decay")
      ("max-grad-norm", po::value<double>()->default_value(1.0), "adamw: global norm clip (<= 0: off)")
      ("warmup-steps", po::value<long long>()->default_value(0), "adamw: linear warmup steps")
      ("total-steps", po::value<long long>()->default_value(1), "adamw: schedule length")
      ("shard", "adamw: shard the optimizer state across ranks")
      ("bucket-mb", po::value<double>()->default_value(25.0), "adamw: communication bucket (MiB)")
      ("save-state", po::value<std::string>(), "adamw: write the state to PREFIX.r<rank>.h5 at the end")
      ("load-state", po::value<std::string>(), "adamw: start from this state file")
      ("model", po::value<std::string>(), "ckpt-loop: model folder (HF layout)")
      ("run", po::value<std::string>(), "ckpt-loop: run folder (checkpoints/ inside)")
      ("save-every", po::value<int>()->default_value(1), "ckpt-loop: checkpoint every N steps")
      ("keep-last", po::value<int>()->default_value(2), "ckpt-loop: checkpoints to keep")
      ("sleep-ms", po::value<int>()->default_value(0), "ckpt-loop: sleep per step (kill tests)")
      ("resume", "ckpt-loop: continue from the latest checkpoint")
      ("model-config", po::value<std::string>(), "memory: config.json (or its folder)")
      ("ranks", po::value<int>()->default_value(1), "memory: GPUs")
      ("zero", po::value<int>()->default_value(0), "memory: ZeRO stage 0 | 1 | 2")
      ("activation-checkpointing", "memory: recompute decoder layers in backward")
      ("micro-batch", po::value<long long>()->default_value(1), "memory: sequences per micro-batch")
      ("seq-len", po::value<long long>()->default_value(1024), "memory: tokens per sequence")
      ("no-reference", "memory: beta = 0 (no reference model)")
      ("trainable", po::value<std::string>()->default_value("all"), "memory, ckpt-loop: all | lm | lm+merger");
  pos.add("what", 1);
}

int run(const po::variables_map& vm) {
  const std::string what = cli::require_string(vm, "what");
  if (what == "adamw") return run_adamw(vm);
  if (what == "ckpt-loop") return run_ckpt_loop(vm);
  if (what == "memory") return run_memory(vm);
  throw UsageError("unknown debug-optimizer action '" + what + "' (adamw | ckpt-loop | memory)");
}

EVOQ_COMMAND("debug-optimizer", "internal: run DistributedAdamW on gradients from a file / print the memory estimate",
             add_options, run, "evoq-testtool debug-optimizer adamw --in STEPS.safetensors --out DIR --steps N | memory --model-config C",
             /*hidden=*/false);

}  // namespace
