#include "evoq/evo/grpo_loss.h"

#include "evoq/core/error.h"
#include "evoq/dist/communicator.h"

namespace evoq::evo {

LossAggregation parse_loss_aggregation(const std::string& name) {
  if (name == "token-mean") return LossAggregation::token_mean;
  if (name == "seq-mean-token-mean") return LossAggregation::seq_mean_token_mean;
  if (name == "constant") return LossAggregation::constant_divisor;
  throw UsageError("loss aggregation '" + name + "' is not one of token-mean, seq-mean-token-mean, constant");
}

std::string to_string(LossAggregation aggregation) {
  switch (aggregation) {
    case LossAggregation::token_mean: return "token-mean";
    case LossAggregation::seq_mean_token_mean: return "seq-mean-token-mean";
    case LossAggregation::constant_divisor: return "constant";
  }
  return "?";
}

LossCounts local_counts(const torch::Tensor& response_mask) {
  auto m = response_mask.to(torch::kFloat64);
  return {m.sum().item<double>(), (m.sum(-1) > 0).sum().item<double>()};
}

LossCounts all_reduce_counts(const LossCounts& local, dist::Communicator& comm) {
  auto t = torch::tensor({local.tokens, local.sequences}, torch::kFloat64);
  comm.all_reduce(t, dist::ReduceOp::sum);
  return {t[0].item<double>(), t[1].item<double>()};
}

double loss_normaliser(const GrpoLossConfig& config, const LossCounts& global) {
  double n = 0.0;
  switch (config.aggregation) {
    case LossAggregation::token_mean: n = global.tokens; break;
    case LossAggregation::seq_mean_token_mean: n = global.sequences; break;
    case LossAggregation::constant_divisor:
      EVOQ_CHECK(config.constant_divisor > 0, "loss constant divisor must be > 0");
      n = config.constant_divisor * global.sequences;
      break;
  }
  // An empty step (no response tokens anywhere) has loss 0: any positive divisor will do.
  return n > 0 ? n : 1.0;
}

// Eq. 5 (clipped surrogate) and Eq. 6 (k3 KL) of the paper, per token.
GrpoLossOutput grpo_loss(const GrpoLossInputs& in, const GrpoLossConfig& config, double normaliser) {
  EVOQ_CHECK(in.logp_new.defined() && in.logp_new.dim() == 2, "grpo_loss: logp_new must be [S, T]");
  EVOQ_CHECK(in.mask.sizes() == in.logp_new.sizes(), "grpo_loss: mask shape differs from logp_new");
  EVOQ_CHECK(in.advantages.dim() == 1 && in.advantages.size(0) == in.logp_new.size(0),
             "grpo_loss: advantages must be [S]");
  EVOQ_CHECK(normaliser > 0, "grpo_loss: normaliser must be > 0");
  const bool use_kl = config.beta != 0.0;
  EVOQ_CHECK(!use_kl || (in.logp_ref.defined() && in.logp_ref.sizes() == in.logp_new.sizes()),
             "grpo_loss: beta != 0 needs logp_ref of the same shape as logp_new");
  // At least fp32 (k3 and exp of log-ratios lose too much in bf16).
  const auto dtype = in.logp_new.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const double c = config.log_ratio_clamp;
  auto logp = in.logp_new.to(dtype);
  auto old = in.logp_old.defined() ? in.logp_old.to(dtype) : logp.detach();
  EVOQ_CHECK(old.sizes() == logp.sizes(), "grpo_loss: logp_old shape differs from logp_new");
  auto mask = in.mask.to(dtype);
  auto adv = in.advantages.to(dtype).unsqueeze(1);

  auto ratio = torch::exp(torch::clamp(logp - old, -c, c));
  auto pg_unclipped = -adv * ratio;
  auto pg_clipped = -adv * torch::clamp(ratio, 1.0 - config.clip_low, 1.0 + config.clip_high);
  auto per_token = torch::maximum(pg_unclipped, pg_clipped);
  torch::Tensor kl;
  if (use_kl) {
    auto log_ref_ratio = torch::clamp(in.logp_ref.to(dtype) - logp, -c, c);  // log(pi_ref / pi_theta)
    kl = torch::exp(log_ref_ratio) - log_ref_ratio - 1.0;
    per_token = per_token + config.beta * kl;
  }

  torch::Tensor total;
  if (config.aggregation == LossAggregation::seq_mean_token_mean) {
    auto seq_tokens = mask.sum(-1);
    auto seq_mean = (per_token * mask).sum(-1) / torch::clamp_min(seq_tokens, 1.0);
    total = seq_mean.sum();  // empty sequences contribute 0 and are not counted in the normaliser
  } else {
    total = (per_token * mask).sum();
  }

  GrpoLossOutput out;
  out.loss = total / normaliser;
  torch::NoGradGuard no_grad;
  out.tokens = mask.sum().item<double>();
  out.clipped_tokens = ((pg_clipped > pg_unclipped).to(dtype) * mask).sum().item<double>();
  out.ratio_sum = (ratio * mask).sum().item<double>();
  if (use_kl) out.kl_sum = (kl * mask).sum().item<double>();
  return out;
}

}  // namespace evoq::evo
