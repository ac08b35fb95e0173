#pragma once
// Online stage, paper section 3.2: the regularised GRPO objective (Eq. 5) with the k3 KL estimator
// (Eq. 6), computed per token as in the GRPO reference implementations (DeepSeekMath, verl, TRL).
//
// Micro-batch invariance: the loss of one micro-batch is sum(per-token or per-sequence terms) /
// normaliser, where the normaliser is GLOBAL (token or sequence counts all-reduced over every
// micro-batch and rank of the optimizer step, see local_counts() / loss_normaliser()). Summing the
// gradients of all micro-batches and ranks then gives exactly the gradient of the full-batch loss.
#include <torch/torch.h>

#include <string>

namespace evoq::dist {
class Communicator;
}

namespace evoq::evo {

enum class LossAggregation {
  token_mean,           // sum over all tokens / total token count (default; verl, TRL, EasyR1)
  seq_mean_token_mean,  // per-sequence token mean, then mean over sequences (DeepSeekMath)
  constant_divisor,     // sum over all tokens / (divisor * number of sequences) (Dr. GRPO)
};

LossAggregation parse_loss_aggregation(const std::string& name);  // token-mean | seq-mean-token-mean | constant
std::string to_string(LossAggregation aggregation);

struct GrpoLossConfig {
  double clip_low = 0.2;          // epsilon below 1 in Eq. 5
  double clip_high = 0.2;         // epsilon above 1 in Eq. 5
  double beta = 0.05;             // KL weight in Eq. 5; 0 skips the KL term and the reference log-probs
  double log_ratio_clamp = 20.0;  // log-ratios are clamped to +-this before exp
  LossAggregation aggregation = LossAggregation::token_mean;
  double constant_divisor = 1.0;  // for constant_divisor (e.g. the maximum response length)
  // The policy, old-policy and reference log-probs are taken under softmax(logits / temperature), the
  // rollouts' sampling distribution (policy_logprobs.h).
  double temperature = 1.0;
};

// Token and sequence counts of one micro-batch; sum them over micro-batches and ranks.
struct LossCounts {
  double tokens = 0.0;     // response tokens (mask sum)
  double sequences = 0.0;  // sequences with at least one response token
};
LossCounts local_counts(const torch::Tensor& response_mask);

// Sums counts over all ranks (one all-reduce). Call it once per optimizer step with the sum over this
// rank's micro-batches, before any backward pass; every rank must call it.
LossCounts all_reduce_counts(const LossCounts& local, dist::Communicator& comm);

// The divisor that makes the summed micro-batch losses equal the full-batch loss.
double loss_normaliser(const GrpoLossConfig& config, const LossCounts& global);

struct GrpoLossInputs {
  torch::Tensor logp_new;    // [S, T] log pi_theta(token), requires grad
  torch::Tensor logp_old;    // [S, T] log pi_old(token); undefined -> logp_new.detach() (one step per batch)
  torch::Tensor logp_ref;    // [S, T] log pi_ref(token); may be undefined when beta == 0
  torch::Tensor advantages;  // [S] a_k(x_i) of each sequence (Eq. 4)
  torch::Tensor mask;        // [S, T] 1 for response tokens, 0 for prompt/padding
};

struct GrpoLossOutput {
  torch::Tensor loss;  // scalar: this micro-batch's share of the global loss; backward() on it
  // Sums over this micro-batch's tokens (fp64 scalars, no grad); all-reduce, then divide by tokens.
  double clipped_tokens = 0.0;  // tokens where the clipped term was the active one
  double kl_sum = 0.0;          // sum of the k3 estimates (0 when beta == 0)
  double ratio_sum = 0.0;       // sum of the probability ratios
  double tokens = 0.0;
};

// Eq. 5 with Eq. 6, per token:
//   r = exp(clamp(logp_new - logp_old)),  pg = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high)),
//   kl = exp(clamp(logp_ref - logp_new)) - clamp(logp_ref - logp_new) - 1   (k3, ratio pi_ref/pi_theta),
//   token loss = pg + beta * kl, aggregated as configured and divided by `normaliser`.
// Computed in at least fp32.
GrpoLossOutput grpo_loss(const GrpoLossInputs& inputs, const GrpoLossConfig& config, double normaliser);

}  // namespace evoq::evo
