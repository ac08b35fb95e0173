#include "evoq/train/grpo_step.h"

#include <chrono>
#include <cmath>

#include "evoq/core/error.h"
#include "evoq/core/rank_partition.h"

namespace evoq::train {

using namespace evoq::evo;  // the method's equations and stores this layer trains with

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

nlohmann::json StepMetrics::to_json() const {
  return {{"step", step},
          {"epoch", epoch},
          {"position", position},
          {"reward_mean", reward_mean},
          {"reward_std", reward_std},
          {"advantage_abs_mean", advantage_abs_mean},
          {"invalid_rate", invalid_rate},
          {"images", images},
          {"sequences", sequences},
          {"zero_variance_groups", zero_variance_groups},
          // Groups (images) whose K rewards are all equal: advantage 0, no gradient (the zero-signal guard).
          {"zero_spread_fraction", images > 0 ? double(zero_variance_groups) / double(images) : 1.0},
          {"no_signal_images", no_signal_images},
          {"partners_skipped", partners_skipped},
          {"kl", kl},
          {"clip_fraction", clip_fraction},
          {"ratio_mean", ratio_mean},
          {"loss", loss},
          {"entropy", entropy},
          {"grad_norm", grad_norm},
          {"lr", lr},
          {"skipped_updates", skipped_updates},
          {"response_tokens", response_tokens},
          {"response_length_mean", response_length_mean},
          {"rollout_seconds", rollout_seconds},
          {"reference_seconds", reference_seconds},
          {"old_seconds", old_seconds},
          {"update_seconds", update_seconds},
          {"optimizer_seconds", optimizer_seconds},
          {"step_seconds", step_seconds},
          {"rollout_tokens_per_second", rollout_tokens_per_second}};
}

StepResult grpo_step(const gen::VlmSession& policy, model::QwenVL* reference, const TrainData& data,
                     const std::vector<std::size_t>& step_pairs, std::int64_t step, const GrpoStepConfig& config,
                     dist::Communicator& comm, const UpdateFn& update, RunningPartnerStats* running) {
  EVOQ_CHECK(config.ppo_epochs >= 1, "--ppo-epochs must be >= 1");
  EVOQ_CHECK(config.loss.beta == 0.0 || reference != nullptr, "beta != 0 needs a reference model");
  const auto t_step = Clock::now();
  StepResult result;
  auto& m = result.metrics;
  m.step = step;

  // Rollouts of this rank's share of the step's images.
  const auto images = step_images(data, step_pairs);
  const auto [begin, end] = core::block_range(images.size(), comm.rank(), comm.size());
  const std::vector<std::int64_t> mine(images.begin() + std::ptrdiff_t(begin), images.begin() + std::ptrdiff_t(end));
  auto t0 = Clock::now();
  result.rollouts = generate_rollouts(policy, data, mine, step, config.rollout);
  m.rollout_seconds = seconds_since(t0);
  const auto summary = assign_rewards(result.rollouts, data, step_pairs, config.rollout, comm, running);

  // The sequences of the update, in (image, sample) order.
  std::vector<PolicySequence> seqs;
  std::vector<double> adv;
  double r_sum = 0, r_sq = 0, a_abs = 0, gen_tokens = 0;
  for (const auto& r : result.rollouts)
    for (std::size_t k = 0; k < r.responses.size(); ++k) {
      seqs.push_back({r.image, &r.prompt, r.responses[k]});
      adv.push_back(r.advantages[k]);
      r_sum += r.rewards[k];
      r_sq += r.rewards[k] * r.rewards[k];
      a_abs += std::abs(r.advantages[k]);
      gen_tokens += double(r.responses[k].size());
    }

  // Global normaliser: counts of every rank's sequences, reduced before any backward pass.
  const auto global_counts = all_reduce_counts(local_counts(response_mask(seqs)), comm);
  const double normaliser = loss_normaliser(config.loss, global_counts);

  auto& model = *policy.model;
  std::vector<torch::Tensor> logp_ref, logp_old;
  if (config.loss.beta != 0.0) {
    t0 = Clock::now();
    logp_ref = sequence_logprobs(*reference, seqs, config.micro_batch, config.autocast, config.loss.temperature);
    m.reference_seconds = seconds_since(t0);
  }
  if (config.ppo_epochs > 1) {
    t0 = Clock::now();
    logp_old = sequence_logprobs(model, seqs, config.micro_batch, config.autocast, config.loss.temperature);
    m.old_seconds = seconds_since(t0);
  }

  t0 = Clock::now();
  BackwardSums sums_all;
  std::vector<double> first_logp;
  double grad_norm_sum = 0;
  for (int epoch = 0; epoch < config.ppo_epochs; ++epoch) {
    for (auto& p : model.parameters())
      if (p.grad().defined()) p.mutable_grad().zero_();
    const auto sums = accumulate_grpo_gradients(model, seqs, adv, logp_old, logp_ref, config.loss, normaliser,
                                                config.micro_batch, config.autocast,
                                                epoch == 0 ? &first_logp : nullptr);
    // Ranks without sequences still join the gradient reduction: give every trainable tensor a grad.
    for (auto& p : model.parameters())
      if (p.requires_grad() && !p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    const auto t_opt = Clock::now();
    const auto outcome = update();
    m.optimizer_seconds += seconds_since(t_opt);
    sums_all.loss += sums.loss;
    sums_all.clipped_tokens += sums.clipped_tokens;
    sums_all.kl_sum += sums.kl_sum;
    sums_all.ratio_sum += sums.ratio_sum;
    sums_all.tokens += sums.tokens;
    sums_all.entropy_sum += sums.entropy_sum;
    m.skipped_updates += outcome.skipped ? 1 : 0;
    grad_norm_sum += outcome.grad_norm;
    m.lr = outcome.lr;
  }
  m.update_seconds = seconds_since(t0);
  m.grad_norm = grad_norm_sum / config.ppo_epochs;

  // Per-sequence sums for the rollouts file.
  std::size_t s = 0;
  for (auto& r : result.rollouts) {
    r.logp_old_sum.assign(r.responses.size(), NAN);
    r.logp_ref_sum.assign(r.responses.size(), NAN);
    for (std::size_t k = 0; k < r.responses.size(); ++k, ++s) {
      r.logp_old_sum[k] = logp_old.empty() ? first_logp[s] : logp_old[s].sum().item<double>();
      if (!logp_ref.empty()) r.logp_ref_sum[k] = logp_ref[s].sum().item<double>();
    }
  }

  // Global figures: one all-reduce of the sums, one of the maxima (timings).
  auto sums_t = torch::tensor({r_sum, r_sq, a_abs, double(seqs.size()), double(summary.invalid), double(summary.groups),
                               double(summary.zero_variance), double(summary.no_signal),
                               double(summary.partners_skipped), sums_all.clipped_tokens, sums_all.kl_sum,
                               sums_all.ratio_sum, sums_all.tokens, sums_all.loss, gen_tokens, sums_all.entropy_sum},
                              torch::kFloat64);
  comm.all_reduce(sums_t, dist::ReduceOp::sum);
  auto v = [&](int i) { return sums_t[i].item<double>(); };
  const double n = std::max(1.0, v(3));
  m.sequences = std::int64_t(v(3));
  m.reward_mean = v(0) / n;
  m.reward_std = v(3) > 1 ? std::sqrt(std::max(0.0, (v(1) - v(0) * v(0) / n) / (n - 1))) : 0.0;
  m.advantage_abs_mean = v(2) / n;
  m.invalid_rate = v(4) / n;
  m.images = std::int64_t(v(5));
  m.zero_variance_groups = std::int64_t(v(6));
  m.no_signal_images = std::int64_t(v(7));
  m.partners_skipped = std::int64_t(v(8));
  const double tok = std::max(1.0, v(12));
  m.clip_fraction = v(9) / tok;
  m.kl = v(10) / tok;
  m.ratio_mean = v(11) / tok;
  m.loss = v(13) / config.ppo_epochs;
  m.entropy = v(15) / tok;
  m.response_tokens = v(14);
  m.response_length_mean = v(14) / n;
  m.step_seconds = seconds_since(t_step);
  auto times = torch::tensor(
      {m.rollout_seconds, m.reference_seconds, m.old_seconds, m.update_seconds, m.step_seconds, m.optimizer_seconds},
      torch::kFloat64);
  comm.all_reduce(times, dist::ReduceOp::max);
  m.rollout_seconds = times[0].item<double>();
  m.reference_seconds = times[1].item<double>();
  m.old_seconds = times[2].item<double>();
  m.update_seconds = times[3].item<double>();
  m.step_seconds = times[4].item<double>();
  m.optimizer_seconds = times[5].item<double>();
  m.rollout_tokens_per_second = m.rollout_seconds > 0 ? m.response_tokens / m.rollout_seconds : 0.0;
  return result;
}

}  // namespace evoq::train
