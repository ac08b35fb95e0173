// One GRPO micro-step (Eq. 5-6 backward over S responses to the prompt) with activation checkpointing
// off, then on: the two gradients must agree (checkpointing only trades memory for a recomputed
// forward). Then one DistributedAdamW step over the device's communicator (NCCL on CUDA).
#include <chrono>
#include <cmath>

#include "accept.h"
#include "evoq/core/error.h"
#include "evoq/dist/communicator.h"
#include "evoq/train/grpo_backward.h"
#include "evoq/train/optimizer.h"
#include "evoq/train/trainable_scope.h"
#include "evoq/model/activation_checkpoint.h"

namespace evoq::accept {
namespace {

using Clock = std::chrono::steady_clock;

// Random response tokens below the special ids of either vocabulary (deterministic).
std::vector<std::vector<int32_t>> make_responses(int samples, int length, int64_t vocab) {
  const int64_t high = std::min<int64_t>(vocab - 16, 150000);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  auto ids = torch::randint(1, high, {samples, length}, gen, torch::kInt64);
  std::vector<std::vector<int32_t>> out(static_cast<std::size_t>(samples));
  for (int s = 0; s < samples; ++s)
    for (int t = 0; t < length; ++t) out[std::size_t(s)].push_back(int32_t(ids[s][t].item<int64_t>()));
  return out;
}

struct Backward {
  double seconds = 0.0, loss = 0.0;
  double baseline_gib = 0.0;  // allocated when the pass starts (weights, gradients, saved copies)
  double peak_gib = 0.0;      // the pass's high-water mark; peak - baseline is what the pass itself needs
};

// The gradient of a trainable parameter (zeros where none flowed).
torch::Tensor grad_of(const torch::Tensor& p) { return p.grad().defined() ? p.grad().detach() : torch::zeros_like(p); }

Backward backward(Context& ctx, const std::vector<std::pair<std::string, torch::Tensor>>& params,
                  const std::vector<train::PolicySequence>& seqs, const std::vector<double>& advantages,
                  const std::vector<torch::Tensor>& logp_ref, const evo::GrpoLossConfig& config, double normaliser,
                  model::Autocast autocast, bool checkpointing) {
  for (const auto& [name, p] : params) p.mutable_grad() = torch::Tensor();
  model::set_activation_checkpointing(checkpointing);
  synchronize(ctx.device);
  reset_peak(ctx.device);
  const double baseline = allocated_gib(ctx.device);
  const auto start = Clock::now();
  const auto sums = train::accumulate_grpo_gradients(*ctx.model, seqs, advantages, {}, logp_ref, config, normaliser,
                                                   int(seqs.size()), autocast);
  synchronize(ctx.device);
  Backward out;
  out.seconds = seconds_since(start);
  out.peak_gib = peak_gib(ctx.device);
  out.baseline_gib = baseline;
  out.loss = sums.loss;
  model::set_activation_checkpointing(false);
  return out;  // the gradients stay in .grad
}

}  // namespace

nlohmann::json run_grpo(Context& ctx) {
  auto& net = *ctx.model;
  net.train();
  const auto autocast = model::parse_autocast(ctx.options.str("autocast"));
  const int samples = ctx.options.integer("grpo-samples");
  const int length = ctx.options.integer("grpo-response-tokens");
  EVOQ_CHECK(samples >= 1 && length >= 1, "--grpo-samples and --grpo-response-tokens must be >= 1");

  const auto responses = make_responses(samples, length, net.config().text.vocab_size);
  std::vector<train::PolicySequence> seqs;
  std::vector<double> advantages;
  for (int s = 0; s < samples; ++s) {
    seqs.push_back({0, &ctx.prompt_input, responses[std::size_t(s)]});
    advantages.push_back((s % 2 == 0 ? 1.0 : -1.0) * (0.25 + 0.25 * (s % 3)));  // mixed signs, no zero group
  }
  evo::GrpoLossConfig config;
  config.beta = 0.04;
  // The reference is the policy itself (its log-probs without gradients): exercises the reference
  // pass and the KL term, whose gradient is zero at pi_ref = pi_theta.
  const auto logp_ref = train::sequence_logprobs(net, seqs, samples, autocast);
  auto counts_comm = dist::single_process();
  const auto counts = evo::all_reduce_counts(evo::local_counts(train::response_mask(seqs)), *counts_comm);
  const double normaliser = evo::loss_normaliser(config, counts);

  const auto params = train::trainable_parameters(net, "all");
  // Checkpointing off: keep a copy of the gradients; on: compare with what lands in .grad (one extra
  // copy of the trainable parameters in memory, not two).
  const auto plain = backward(ctx, params, seqs, advantages, logp_ref, config, normaliser, autocast, false);
  std::vector<torch::Tensor> plain_grads;
  for (const auto& [name, p] : params) plain_grads.push_back(grad_of(p).clone());
  const auto checkpointed = backward(ctx, params, seqs, advantages, logp_ref, config, normaliser, autocast, true);

  // Gradient agreement over every trainable element: per-tensor norms in fp32 (no fp64 copies of the
  // 7B-wide embedding), their squares summed in double.
  double diff_sq = 0.0, norm_sq = 0.0, ckpt_sq = 0.0, max_abs = 0.0, max_grad = 0.0;
  int64_t elements = 0;
  auto sq = [](const torch::Tensor& t) {
    const double n = t.norm().item<double>();
    return n * n;
  };
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto a = plain_grads[i].to(torch::kFloat32), b = grad_of(params[i].second).to(torch::kFloat32);
    const auto diff = a - b;
    diff_sq += sq(diff);
    norm_sq += sq(a);
    ckpt_sq += sq(b);
    max_abs = std::max(max_abs, diff.abs().max().item<double>());
    max_grad = std::max(max_grad, a.abs().max().item<double>());
    elements += a.numel();
  }
  plain_grads.clear();
  nlohmann::json out;
  out["autocast"] = model::autocast_name(autocast);
  out["sequences"] = samples;
  out["response_tokens"] = length;
  out["loss_plain"] = plain.loss;
  out["loss_checkpointed"] = checkpointed.loss;
  out["trainable_elements"] = elements;
  out["grad_norm"] = std::sqrt(norm_sq);
  out["grad_rel_diff"] = norm_sq > 0 ? std::sqrt(diff_sq / norm_sq) : 0.0;
  out["grad_max_abs_diff"] = max_abs;
  out["grad_max_abs"] = max_grad;
  out["seconds_plain"] = plain.seconds;
  out["seconds_checkpointed"] = checkpointed.seconds;
  out["peak_gib_plain"] = plain.peak_gib;
  out["peak_gib_checkpointed"] = checkpointed.peak_gib;
  // What each backward pass needs above what was allocated when it started (the checkpointed pass
  // starts with the plain pass's gradients copied aside, so its raw peak is higher by their size).
  out["pass_gib_plain"] = plain.peak_gib - plain.baseline_gib;
  out["pass_gib_checkpointed"] = checkpointed.peak_gib - checkpointed.baseline_gib;

  // One optimizer update on the checkpointed gradients (still in .grad), through the device's
  // communicator: NCCL (1 rank) on CUDA when this build has it.
  std::shared_ptr<dist::Communicator> comm = dist::single_process();
#ifdef EVOQ_HAVE_NCCL
  if (ctx.device.is_cuda()) comm = dist::make_nccl(dist::single_process(), ctx.options.number("nccl-timeout"));
#endif
  train::OptimizerConfig oc;
  oc.lr = 1e-6;
  oc.total_steps = 10;
  oc.max_grad_norm = 1.0;
  std::vector<std::pair<std::string, torch::Tensor>> watched;
  for (const auto& [name, p] : params)
    if (p.numel() <= 1 << 20 && watched.size() < 4) watched.emplace_back(name, p.detach().clone());
  double report_norm = 0.0;
  bool applied = false;
  {
    train::DistributedAdamW opt(params, oc, comm);
    const auto start = Clock::now();
    const auto report = opt.step();
    synchronize(ctx.device);
    out["optimizer_seconds"] = seconds_since(start);
    report_norm = report.grad_norm;
    applied = report.applied;
  }
  double moved = 0.0;
  for (const auto& [name, before] : watched)
    for (const auto& [pname, p] : params)
      if (pname == name) moved = std::max(moved, (p.detach() - before).abs().max().item<double>());
  const double norm_ckpt = std::sqrt(ckpt_sq);
  out["optimizer"] = {{"communicator", comm->backend()},
                      {"applied", applied},
                      {"grad_norm", report_norm},
                      {"grad_norm_expected", norm_ckpt},
                      {"max_param_change", moved}};
  net.eval();
  return out;
}

}  // namespace evoq::accept
