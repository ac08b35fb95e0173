#include "evoq/train/grpo_backward.h"

#include "evoq/core/error.h"

namespace evoq::train {

using namespace evoq::evo;  // the method's equations and stores this layer trains with
namespace {

// Pads per-sequence 1-D tensors into [S, T] (zeros after each sequence's end).
torch::Tensor pad_rows(const std::vector<torch::Tensor>& rows, std::size_t begin, std::size_t end, std::int64_t T,
                       torch::Device device) {
  auto out = torch::zeros({std::int64_t(end - begin), T}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  for (std::size_t s = begin; s < end; ++s)
    if (rows[s].numel() > 0) out[std::int64_t(s - begin)].narrow(0, 0, rows[s].numel()).copy_(rows[s]);
  return out;
}

}  // namespace

std::vector<torch::Tensor> sequence_logprobs(model::QwenVL& model, const std::vector<PolicySequence>& sequences,
                                             int micro_batch, model::Autocast autocast, double temperature) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  for (std::size_t b = 0; b < sequences.size(); b += std::size_t(micro_batch)) {
    const auto e = std::min(sequences.size(), b + std::size_t(micro_batch));
    const std::vector<PolicySequence> mb(sequences.begin() + std::ptrdiff_t(b), sequences.begin() + std::ptrdiff_t(e));
    TokenLogprobs lp;
    {
      model::AutocastScope scope(autocast, model.options().device());
      lp = response_logprobs(model, mb, temperature);
    }
    for (std::size_t s = 0; s < mb.size(); ++s)
      out.push_back(lp.logp[std::int64_t(s)].narrow(0, 0, std::int64_t(mb[s].response.size())).clone());
  }
  return out;
}

BackwardSums accumulate_grpo_gradients(model::QwenVL& model, const std::vector<PolicySequence>& sequences,
                                       const std::vector<double>& advantages,
                                       const std::vector<torch::Tensor>& logp_old,
                                       const std::vector<torch::Tensor>& logp_ref, const GrpoLossConfig& config,
                                       double normaliser, int micro_batch, model::Autocast autocast,
                                       std::vector<double>* new_logp_sums) {
  EVOQ_CHECK(micro_batch >= 1, "--micro-batch must be >= 1");
  EVOQ_CHECK(advantages.size() == sequences.size(), "accumulate_grpo_gradients: one advantage per sequence");
  EVOQ_CHECK(logp_old.empty() || logp_old.size() == sequences.size(), "accumulate_grpo_gradients: logp_old size");
  EVOQ_CHECK(config.beta == 0.0 || logp_ref.size() == sequences.size(),
             "accumulate_grpo_gradients: beta != 0 needs reference log-probs");
  const auto device = model.options().device();
  BackwardSums sums;
  if (new_logp_sums) new_logp_sums->assign(sequences.size(), 0.0);
  for (std::size_t b = 0; b < sequences.size(); b += std::size_t(micro_batch)) {
    const auto e = std::min(sequences.size(), b + std::size_t(micro_batch));
    const std::vector<PolicySequence> mb(sequences.begin() + std::ptrdiff_t(b), sequences.begin() + std::ptrdiff_t(e));
    TokenLogprobs lp;
    {
      model::AutocastScope scope(autocast, device);
      lp = response_logprobs(model, mb, config.temperature);
    }
    if (lp.mask.sum().item<double>() == 0) continue;  // nothing to score (empty responses)
    const auto T = lp.logp.size(1);
    GrpoLossInputs in;
    in.logp_new = lp.logp;
    in.mask = lp.mask;
    in.advantages = torch::tensor(std::vector<double>(advantages.begin() + std::ptrdiff_t(b),
                                                      advantages.begin() + std::ptrdiff_t(e)),
                                  torch::kFloat64)
                        .to(torch::kFloat32)
                        .to(device);
    if (!logp_old.empty()) in.logp_old = pad_rows(logp_old, b, e, T, device);
    if (config.beta != 0.0) in.logp_ref = pad_rows(logp_ref, b, e, T, device);
    auto out = grpo_loss(in, config, normaliser);
    out.loss.backward();
    sums.loss += out.loss.item<double>();
    sums.clipped_tokens += out.clipped_tokens;
    sums.kl_sum += out.kl_sum;
    sums.ratio_sum += out.ratio_sum;
    sums.tokens += out.tokens;
    sums.entropy_sum += (lp.entropy * lp.mask).sum().item<double>();
    if (new_logp_sums) {
      auto per_seq = (lp.logp.detach() * lp.mask).sum(-1).to(torch::kFloat64).cpu();
      for (std::size_t s = b; s < e; ++s) (*new_logp_sums)[s] = per_seq[std::int64_t(s - b)].item<double>();
    }
  }
  return sums;
}

}  // namespace evoq::train
