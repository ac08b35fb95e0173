#include "stage_options.h"

#include <filesystem>
#include <sstream>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/eval/baselines.h"

namespace evoq::apps {

namespace {

template <typename T>
std::optional<T> optional_value(const po::variables_map& vm, const char* key) {
  if (!vm.count(key)) return std::nullopt;
  return vm[key].as<T>();
}

std::string string_or_empty(const po::variables_map& vm, const char* key) {
  return vm.count(key) ? vm[key].as<std::string>() : std::string();
}

po::typed_value<bool>* flag(bool default_value) {
  return po::value<bool>()->default_value(default_value)->implicit_value(true);
}

// A double option whose default reads as written (0.35, not 0.34999999999999998).
po::typed_value<double>* real(double default_value) {
  std::ostringstream text;
  text << default_value;
  return po::value<double>()->default_value(default_value, text.str());
}

}  // namespace

void add_runtime_options(po::options_description& o, const gen::RuntimeSettings& d) {
  o.add_options()
      ("dtype", po::value<std::string>()->default_value(d.dtype),
       "model dtype: fp32 | bf16 | fp16 | auto (bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, else fp32; "
       "the line printed at start says which)")
      ("device", po::value<std::string>()->default_value("cpu"),
       "cpu | cuda (the GPU of the node-local rank) | cuda:N")
      ("threads", po::value<int>()->default_value(0), "torch intra-op threads (0 = torch's default)")
      ("tf32", flag(true), "CUDA: TF32 for fp32 matmuls (--tf32=0 for full fp32)");
}

gen::RuntimeSettings runtime_settings(const po::variables_map& vm) {
  gen::RuntimeSettings r;
  r.dtype = vm["dtype"].as<std::string>();
  if (r.dtype != "fp32" && r.dtype != "bf16" && r.dtype != "fp16" && r.dtype != "auto")
    throw UsageError("--dtype must be fp32, bf16, fp16 or auto (got '" + r.dtype + "')");
  r.device = vm["device"].as<std::string>();
  r.threads = vm["threads"].as<int>();
  if (r.threads < 0) throw UsageError("--threads must be >= 0");
  r.tf32 = vm["tf32"].as<bool>();
  return r;
}

gen::VlmSession open_session(const po::variables_map& vm, const std::string& command) {
  const auto runtime = runtime_settings(vm);
  const auto device = runtime.torch_device();
  runtime.apply(device);
  log::info(command, ": ", runtime.describe(device));
  return gen::VlmSession::load(cli::require_string(vm, "model"), runtime.torch_dtype(device), device);
}

void add_sampling_options(po::options_description& o, std::int64_t default_max_new_tokens, const std::string& defaults) {
  const std::string from = " (default: " + defaults + ")";
  o.add_options()
      ("temperature", po::value<double>(), ("sampling temperature" + from).c_str())
      ("top-p", po::value<double>(), ("nucleus sampling mass in (0, 1]" + from).c_str())
      ("top-k", po::value<std::int64_t>(), ("keep the k most likely tokens, 0 = off" + from).c_str())
      ("repetition-penalty", po::value<double>(), ("HF repetition penalty, 1 = off" + from).c_str())
      ("max-new-tokens", po::value<std::int64_t>()->default_value(default_max_new_tokens), "generated tokens at most");
}

gen::SamplingOverrides sampling_overrides(const po::variables_map& vm) {
  gen::SamplingOverrides s;
  s.temperature = optional_value<double>(vm, "temperature");
  s.top_p = optional_value<double>(vm, "top-p");
  s.top_k = optional_value<std::int64_t>(vm, "top-k");
  s.repetition_penalty = optional_value<double>(vm, "repetition-penalty");
  s.max_new_tokens = optional_value<std::int64_t>(vm, "max-new-tokens");
  return s;
}

void add_vote_options(po::options_description& o) {
  const evo::VoteSettings d;
  o.add_options()
      ("model", po::value<std::string>(), "checkpoint directory of the voting model (round t votes with round t-1's model)")
      ("pairs", po::value<std::string>(), "pairs.h5 from `evoq pairs`")
      ("out,o", po::value<std::string>(), "labels.h5 to write (merged from the shards at the end)")
      ("shards", po::value<std::string>(), "folder of the per-rank crash-safe shards (default: OUT.shards); a rerun resumes from it")
      ("root", po::value<std::string>(), "folder the pair images are relative to (default: the root stored in pairs.h5)")
      ("samples,K", po::value<int>()->default_value(d.K), "samples per pair (K of Eq. 1)")
      ("seed", po::value<std::uint64_t>()->default_value(d.seed), "seed of the sampled answers and of the per-sample order swaps")
      ("early-stop", flag(d.early_stop),
       "stop a pair once the remaining samples cannot change p* (lossless; --early-stop=0 draws all K)")
      ("reasoning", flag(d.reasoning), "append the paper's reasoning suffix to c_compare (--reasoning=0 to leave it out)")
      ("prompt-file", po::value<std::string>(), "custom compare prompt instead of c_compare")
      ("keep-responses", flag(d.keep_responses), "store every raw response in labels.h5")
      ("pairs-per-batch", po::value<int>()->default_value(d.pairs_per_batch), "pairs voted together (their samples share one decode batch)")
      ("max-batch-sequences", po::value<int>()->default_value(d.max_batch_sequences), "live sequences decoded together")
      ("split", po::value<std::string>()->default_value("block"), "how ranks split the pairs: block | strided")
      ("flush-every", po::value<int>()->default_value(d.flush_every), "flush the shard after this many finished pairs...")
      ("flush-seconds", real(d.flush_seconds), "...or this many seconds, whichever comes first")
      ("progress-every", real(d.progress_every), "seconds between progress lines (rank 0)")
      ("merge", "only merge the existing shards into OUT (no voting)")
      ("allow-partial", flag(false), "merge even when pairs are missing")
      ("stats", po::value<std::string>(), "write per-rank statistics (pairs, samples, seconds) to this JSON file");
  add_sampling_options(o, 256, "voting's own: temperature 1, top_p 1, top_k 50, penalty 1, not generation_config");
  add_runtime_options(o);
}

evo::VoteSettings vote_settings(const po::variables_map& vm) {
  evo::VoteSettings s;
  s.model_dir = string_or_empty(vm, "model");
  s.pairs_path = string_or_empty(vm, "pairs");
  s.out_path = string_or_empty(vm, "out");
  s.shard_dir = string_or_empty(vm, "shards");
  s.root = string_or_empty(vm, "root");
  s.K = vm["samples"].as<int>();
  s.seed = vm["seed"].as<std::uint64_t>();
  s.early_stop = vm["early-stop"].as<bool>();
  s.reasoning = vm["reasoning"].as<bool>();
  s.prompt_file = string_or_empty(vm, "prompt-file");
  s.keep_responses = vm["keep-responses"].as<bool>();
  s.pairs_per_batch = vm["pairs-per-batch"].as<int>();
  s.max_batch_sequences = vm["max-batch-sequences"].as<int>();
  s.split = evo::parse_rank_split(vm["split"].as<std::string>());
  s.flush_every = vm["flush-every"].as<int>();
  s.flush_seconds = vm["flush-seconds"].as<double>();
  s.progress_every = vm["progress-every"].as<double>();
  s.merge_only = vm.count("merge") > 0;
  s.allow_partial = vm["allow-partial"].as<bool>();
  s.stats_path = string_or_empty(vm, "stats");
  s.sampling = sampling_overrides(vm);
  s.runtime = runtime_settings(vm);
  return s;
}

void add_estimate_options(po::options_description& o) {
  const evo::EstimateSettings d;
  o.add_options()
      ("model", po::value<std::string>(), "checkpoint directory of the estimating model")
      ("pairs", po::value<std::string>(), "pairs.h5: the images of its pairs are estimated")
      ("out,o", po::value<std::string>(), "estimates.h5 to write")
      ("root", po::value<std::string>(), "folder the images are relative to (default: the root stored in pairs.h5)")
      ("samples,K", po::value<int>()->default_value(d.K), "sampled c_score answers per image")
      ("seed", po::value<std::uint64_t>()->default_value(d.seed), "seed of the sampled answers")
      ("reasoning", flag(d.reasoning), "append the paper's reasoning suffix to c_score (--reasoning=0 to leave it out)")
      ("prompt-file", po::value<std::string>(), "custom score prompt instead of c_score")
      ("keep-responses", flag(d.keep_responses), "store every raw answer")
      ("batch-images", po::value<int>()->default_value(d.batch_images), "images generated together")
      ("max-batch-sequences", po::value<int>()->default_value(d.max_batch_sequences), "live sequences decoded together");
  add_sampling_options(o, 256, "as `evoq vote`: temperature 1, top_p 1, top_k 50");
  add_runtime_options(o);
}

evo::EstimateSettings estimate_settings(const po::variables_map& vm) {
  evo::EstimateSettings s;
  s.model_dir = string_or_empty(vm, "model");
  s.pairs_path = string_or_empty(vm, "pairs");
  s.out_path = string_or_empty(vm, "out");
  s.root = string_or_empty(vm, "root");
  s.K = vm["samples"].as<int>();
  s.seed = vm["seed"].as<std::uint64_t>();
  s.reasoning = vm["reasoning"].as<bool>();
  s.prompt_file = string_or_empty(vm, "prompt-file");
  s.keep_responses = vm["keep-responses"].as<bool>();
  s.batch_images = vm["batch-images"].as<int>();
  s.max_batch_sequences = vm["max-batch-sequences"].as<int>();
  s.sampling = sampling_overrides(vm);
  s.runtime = runtime_settings(vm);
  return s;
}

void add_train_options(po::options_description& o) {
  const train::TrainSettings d;
  o.add_options()
      ("model", po::value<std::string>(), "policy checkpoint folder at the start of this run")
      ("reference-model", po::value<std::string>(),
       "pi_ref of Eq. 5-6 (default: --model; `evoq evolve` passes the base model of the evolution)")
      ("labels", po::value<std::string>(), "labels.h5 of the voting stage (--reward fidelity)")
      ("reward", po::value<std::string>()->default_value(d.reward),
       "fidelity (EvoQuality, Eq. 2-3, needs --labels) | estimate (EvoEstimate ablation, needs --estimates)")
      ("estimates", po::value<std::string>(), "estimates.h5 of `evoq estimate` (--reward estimate)")
      ("estimate-threshold", real(d.estimate_threshold),
       "--reward estimate: reward 1 when |score - pseudo score| < this, else 0 (Q-Insight)")
      ("out", po::value<std::string>(), "run folder (run_config.json, metrics.jsonl, rollouts/, checkpoints/)")
      ("steps", po::value<std::int64_t>(), "global steps to train (default: --epochs)")
      ("epochs", real(d.epochs), "epochs over the usable pairs when --steps is not given")
      ("pairs-per-step", po::value<std::int64_t>()->default_value(d.pairs_per_step),
       "B: pairs per global step over all ranks (paper: 8 GPUs x 4 images = 16 pairs)")
      ("samples,K", po::value<int>()->default_value(d.samples), "K: rollouts per image (paper: 32)")
      ("lr", real(d.lr), "peak learning rate (AdamW, linear decay to 0)")
      ("warmup", po::value<std::int64_t>()->default_value(d.warmup), "warmup updates (linear from 0)")
      ("weight-decay", real(d.weight_decay), "AdamW decoupled weight decay")
      ("grad-clip", real(d.grad_clip), "global gradient-norm clip (<= 0: off)")
      ("beta", real(d.beta), "KL weight of Eq. 5 (0 skips the reference model)")
      ("gamma", real(d.gamma), "gamma of Eq. 2")
      ("min-partner-valid", po::value<int>()->default_value(d.min_partner_valid), "valid samples a partner needs to enter P_i")
      ("absent-partners", po::value<std::string>()->default_value(d.absent_partners),
       "off: P_i = partners in the step's pairs | running: every labelled partner, absent ones by a running estimate")
      ("running-momentum", real(d.running_momentum), "--absent-partners running: EMA momentum")
      ("clip-low", real(d.clip_low), "clip epsilon below 1 (Eq. 5)")
      ("clip-high", real(d.clip_high), "clip epsilon above 1 (Eq. 5)")
      ("loss-agg", po::value<std::string>()->default_value(d.loss_agg),
       "seq-mean-token-mean (Eq. 5: 1/(BK) over sequences) | token-mean | constant")
      ("loss-divisor", real(d.loss_divisor), "divisor per sequence for --loss-agg constant")
      ("adv-epsilon", real(d.adv_epsilon), "epsilon added to the group std (Eq. 4)")
      ("no-std-division", "advantages r - mean(r) without dividing by the std")
      ("ppo-epochs", po::value<int>()->default_value(d.ppo_epochs), "optimizer updates per rollout batch")
      ("micro-batch", po::value<int>()->default_value(d.micro_batch), "sequences per forward/backward")
      ("trainable", po::value<std::string>()->default_value(d.trainable), "all (paper) | lm | lm+merger")
      ("zero", flag(false), "shard the optimizer state over the ranks (ZeRO-1 style)")
      ("activation-checkpointing", flag(false), "recompute decoder layers (and trained vision blocks) in backward instead of storing their activations")
      ("autocast", po::value<std::string>()->default_value(d.autocast),
       "off | bf16 | auto: policy/reference forwards under bf16 autocast with fp32 weights (needs --dtype fp32); "
       "auto = bf16 on CUDA and on CPUs with AVX512-BF16 or AMX, else off")
      ("checkpoint-every", po::value<std::int64_t>()->default_value(d.checkpoint_every), "checkpoint every N steps (and at the end)")
      ("keep-checkpoints", po::value<int>()->default_value(d.keep_checkpoints), "newest checkpoints kept (0 = all)")
      ("rollouts-every", po::value<std::int64_t>()->default_value(d.rollouts_every), "write the rollouts file every N steps (0 = never)")
      ("zero-signal-steps", po::value<int>()->default_value(d.zero_signal_steps),
       "warn when more than half of the images give no gradient for this many consecutive steps")
      ("seed", po::value<std::uint64_t>()->default_value(d.seed), "seed of the pair shuffle and the rollout sampling")
      ("reasoning", flag(d.reasoning), "append the paper's reasoning suffix to c_score")
      ("prompt-file", po::value<std::string>(), "custom scoring prompt instead of c_score")
      ("max-batch-sequences", po::value<int>()->default_value(d.max_batch_sequences), "rollout sequences decoded together")
      ("allow-near-greedy", flag(false),
       "accept near-deterministic rollout sampling (temperature < 0.3, top_k 1 or top_p < 0.05), which gives GRPO no signal")
      ("resume", "continue the run in --out from its latest checkpoint (its recorded settings must match)")
      ("dry-run", "print the per-GPU memory estimate and exit")
      ("ranks", po::value<int>(), "--dry-run: ranks to plan for (default: this job's)");
  add_sampling_options(o, 512, "training's own: temperature 1, top_p 1, top_k 0, penalty 1, not generation_config");
  add_runtime_options(o, d.runtime);
}

train::TrainSettings train_settings(const po::variables_map& vm) {
  train::TrainSettings s;
  s.model_dir = string_or_empty(vm, "model");
  s.reference_model = string_or_empty(vm, "reference-model");
  s.reward = vm["reward"].as<std::string>();
  s.labels_path = string_or_empty(vm, "labels");
  s.estimates_path = string_or_empty(vm, "estimates");
  s.estimate_threshold = vm["estimate-threshold"].as<double>();
  s.out_dir = string_or_empty(vm, "out");
  s.resume = vm.count("resume") > 0;
  s.steps = optional_value<std::int64_t>(vm, "steps");
  s.epochs = vm["epochs"].as<double>();
  s.pairs_per_step = vm["pairs-per-step"].as<std::int64_t>();
  s.samples = vm["samples"].as<int>();
  s.lr = vm["lr"].as<double>();
  s.warmup = vm["warmup"].as<std::int64_t>();
  s.weight_decay = vm["weight-decay"].as<double>();
  s.grad_clip = vm["grad-clip"].as<double>();
  s.trainable = vm["trainable"].as<std::string>();
  s.zero = vm["zero"].as<bool>();
  s.beta = vm["beta"].as<double>();
  s.gamma = vm["gamma"].as<double>();
  s.min_partner_valid = vm["min-partner-valid"].as<int>();
  s.absent_partners = vm["absent-partners"].as<std::string>();
  s.running_momentum = vm["running-momentum"].as<double>();
  s.clip_low = vm["clip-low"].as<double>();
  s.clip_high = vm["clip-high"].as<double>();
  s.loss_agg = vm["loss-agg"].as<std::string>();
  s.loss_divisor = vm["loss-divisor"].as<double>();
  s.adv_epsilon = vm["adv-epsilon"].as<double>();
  s.std_division = vm.count("no-std-division") == 0;
  s.ppo_epochs = vm["ppo-epochs"].as<int>();
  s.autocast = vm["autocast"].as<std::string>();
  s.seed = vm["seed"].as<std::uint64_t>();
  s.reasoning = vm["reasoning"].as<bool>();
  s.prompt_file = string_or_empty(vm, "prompt-file");
  s.sampling = sampling_overrides(vm);
  s.allow_near_greedy = vm["allow-near-greedy"].as<bool>();
  s.micro_batch = vm["micro-batch"].as<int>();
  s.max_batch_sequences = vm["max-batch-sequences"].as<int>();
  s.activation_checkpointing = vm["activation-checkpointing"].as<bool>();
  s.checkpoint_every = vm["checkpoint-every"].as<std::int64_t>();
  s.keep_checkpoints = vm["keep-checkpoints"].as<int>();
  s.rollouts_every = vm["rollouts-every"].as<std::int64_t>();
  s.zero_signal_steps = vm["zero-signal-steps"].as<int>();
  s.runtime = runtime_settings(vm);
  s.dry_run = vm.count("dry-run") > 0;
  s.dry_run_ranks = optional_value<int>(vm, "ranks");
  return s;
}

void add_eval_options(po::options_description& o) {
  const eval::EvalSettings d;
  const eval::ScorerSettings sd;
  o.add_options()
      ("model", po::value<std::string>(), "scorer: brisque | niqe, or a VLM checkpoint directory (scored with c_score)")
      ("dataset", po::value<std::vector<std::string>>(),
       "dataset to evaluate (repeatable): KonIQ-10k[:train|val|test], SPAQ, AGIQA-3K, LIVE-Challenge, KADID-10k, "
       "PIPAL, TID2013, TID2008, CSIQ, LIVE, or csv:FILE (columns path + score|mos|dmos)")
      ("root", po::value<std::vector<std::string>>(), "image root of a dataset: NAME=DIR (repeatable)")
      ("labels-dir", po::value<std::string>()->default_value(""), "label files (default: data/iqa-labels)")
      ("skip-missing", po::bool_switch(), "evaluate without the image files that are missing")
      ("out", po::value<std::string>()->default_value(d.out_dir),
       "output directory: scores.h5 (resumable), scores.csv, results.json, results.csv")
      ("flush-every", po::value<std::size_t>()->default_value(d.flush_every), "rewrite scores.h5 every N scored images")
      ("baseline", po::value<std::string>()->default_value(""), "results.json of a baseline for the Δ% columns")
      ("brisque-model", po::value<std::string>()->default_value(""), "BRISQUE SVR model (default data/brisque)")
      ("brisque-range", po::value<std::string>()->default_value(""), "BRISQUE feature range (default data/brisque)")
      ("niqe-params", po::value<std::string>()->default_value(""), "NIQE pristine parameters .npz (default data/niqe)")
      ("samples", po::value<int>()->default_value(sd.samples), "VLM: answers per image (1 = greedy; N = mean of N samples)")
      ("reasoning", po::value<bool>()->default_value(sd.reasoning)->implicit_value(true),
       "VLM: add the paper's reasoning suffix (on | off)")
      ("max-new-tokens", po::value<std::int64_t>()->default_value(sd.max_new_tokens), "VLM: longest answer in tokens")
      ("seed", po::value<std::uint64_t>()->default_value(sd.seed), "VLM: sampling seed (--samples > 1)");
  add_runtime_options(o);
}

eval::EvalSettings eval_settings(const po::variables_map& vm) {
  eval::EvalSettings s;
  s.model = string_or_empty(vm, "model");
  auto& sc = s.scorer;
  // A directory is a VLM checkpoint: the "vlm" scorer (src/apps/vlm_scorer.cpp) with that checkpoint.
  if (!s.model.empty() && std::filesystem::is_directory(s.model)) {
    sc.checkpoint = s.model;
    s.model = "vlm";
  }
  if (vm.count("dataset")) s.datasets = vm["dataset"].as<std::vector<std::string>>();
  if (vm.count("root"))
    for (const auto& spec : vm["root"].as<std::vector<std::string>>()) {
      auto [name, dir] = eval::parse_root(spec);
      s.roots[name] = dir;
    }
  s.labels_dir = vm["labels-dir"].as<std::string>();
  s.skip_missing = vm["skip-missing"].as<bool>();
  s.out_dir = vm["out"].as<std::string>();
  s.flush_every = vm["flush-every"].as<std::size_t>();
  s.baseline_json = vm["baseline"].as<std::string>();
  sc.samples = vm["samples"].as<int>();
  if (sc.samples < 1) throw UsageError("--samples must be >= 1");
  sc.reasoning = vm["reasoning"].as<bool>();
  sc.max_new_tokens = vm["max-new-tokens"].as<std::int64_t>();
  sc.seed = vm["seed"].as<std::uint64_t>();
  const auto runtime = runtime_settings(vm);
  sc.dtype = runtime.dtype;
  sc.device = runtime.device;
  sc.threads = runtime.threads;
  sc.brisque_model = vm["brisque-model"].as<std::string>();
  sc.brisque_range = vm["brisque-range"].as<std::string>();
  sc.niqe_params = vm["niqe-params"].as<std::string>();
  return s;
}

po::variables_map stage_config(const std::string& command, const std::string& config_file) {
  po::options_description o;
  if (command == "vote") add_vote_options(o);
  else if (command == "estimate") add_estimate_options(o);
  else if (command == "train") add_train_options(o);
  else if (command == "eval") add_eval_options(o);
  else throw Error("stage_config: no stage '" + command + "'");
  po::variables_map vm;
  try {
    if (!config_file.empty()) cli::store_config_file(command, o, config_file, vm);
    po::store(po::parsed_options(&o), vm);  // the defaults of what the file does not set
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError("--stage-config " + config_file + " [" + command + "]: " + e.what());
  }
  return vm;
}

}  // namespace evoq::apps
