#include "evoq/gen/sample_step.h"

#include <limits>
#include <tuple>

#include "evoq/core/error.h"
#include "evoq/model/cpu_kernels.h"

namespace evoq::gen {
namespace {

using torch::Tensor;

const char* const kNoMass = "sampling distribution has no positive probability (all logits -inf or NaN)";

// log softmax(x)[token] for each row, without materialising the log-softmax.
Tensor logprob_of(const Tensor& x, const Tensor& tokens) {
  auto picked = x.gather(-1, tokens.unsqueeze(-1)).squeeze(-1);
  return picked - torch::logsumexp(x, -1);
}

// A [B, V] float32 buffer for the weights. On the CPU it is kept between steps: a fresh 20 MB
// tensor per step is fresh pages from the kernel, whose faults cost as much as the arithmetic.
Tensor workspace_like(const Tensor& x) {
  if (!x.device().is_cpu()) return torch::empty(x.sizes(), x.options().dtype(torch::kFloat32));
  thread_local Tensor buffer;
  if (!buffer.defined() || buffer.numel() < x.numel()) buffer = torch::empty({x.numel()}, torch::kFloat32);
  return buffer.narrow(0, 0, x.numel()).view(x.sizes());
}

// The rare row whose target passed its block's refined sum: the last positive weight at or before
// the end of the chosen block (on the host; rows of a few hundred kilobytes).
int64_t last_positive_up_to(const Tensor& weights_row, int64_t end) {
  auto row = weights_row.to(torch::kCPU).contiguous();
  const float* w = row.data_ptr<float>();
  for (int64_t i = std::min(end, row.size(0)) - 1; i >= 0; --i)
    if (w[i] > 0.0f) return i;
  fail(kNoMass);
}

// The n largest of each row, descending (float32 values, int64 columns); on the CPU in one pass per row
// (torch.topk sorts: 4.7 ms of an 88 ms decode step at K = 32, docs/BENCHMARKS.md issue 19 section 7).
// Which of equal values comes first does not matter to the caller.
std::pair<Tensor, Tensor> largest(const Tensor& x, int64_t n) {
  if (auto top = model::cpu_top_values(x, n)) return *top;
  auto [values, index] = x.to(torch::kFloat32).topk(n, -1, /*largest=*/true, /*sorted=*/true);
  return {values, index};
}

// Top-k (k < V) then top-p and the draw on the kept tokens. Every token tied with the k-th value is kept
// (transformers' rule): the n = k + 1 largest are read, and n doubled while some row's n-th value still
// ties with its k-th. penalised: float32, or the model's bf16 logits as they are (no penalty).
std::pair<Tensor, Tensor> draw_top_k(const Tensor& penalised, const SamplingParams& p, const Tensor& uniforms) {
  const int64_t k = p.top_k, vocab = penalised.size(1);
  Tensor values, index, kth;
  for (int64_t n = k + 1;; n = std::min(2 * n, vocab)) {
    std::tie(values, index) = largest(penalised, n);
    // Temperature on the read values only: dividing by a positive constant keeps the order, so a token
    // below the n-th can tie with the k-th only if the n-th does.
    values = apply_temperature(values, p.temperature);
    kth = values.narrow(-1, k - 1, 1);
    if (n == vocab || !(values.select(-1, n - 1) == kth.squeeze(-1)).any().item<bool>()) break;
  }
  values = values.masked_fill(values < kth, -std::numeric_limits<float>::infinity());
  auto [ids, order] = index.sort(/*stable=*/true, /*dim=*/-1, /*descending=*/false);  // vocabulary order
  values = values.gather(-1, order);
  if (p.top_p < 1.0) values = apply_top_p(values, p.top_p);
  auto logp = values.log_softmax(-1);
  auto pick = inverse_cdf(logp.exp(), uniforms).unsqueeze(-1);
  return {ids.gather(-1, pick).squeeze(-1), logp.gather(-1, pick).squeeze(-1)};
}

}  // namespace

std::pair<Tensor, Tensor> draw_full_vocabulary(const Tensor& logits, const Tensor& uniforms) {
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  if (logits.device().is_cpu()) {  // the same draw in two passes per row (model/cpu_kernels.h)
    auto u = uniforms.to(torch::kFloat64).contiguous();
    if (auto drawn = model::cpu_softmax_draw(
            logits, std::vector<double>(u.data_ptr<double>(), u.data_ptr<double>() + rows), kSampleBlock))
      return *drawn;
  }
  auto x = logits.to(torch::kFloat32);
  auto top = x.amax(-1, /*keepdim=*/true);
  EVOQ_CHECK(torch::isfinite(top).all().item<bool>(), kNoMass);
  auto weights = workspace_like(x);
  torch::sub_out(weights, x, top).exp_();

  // Block sums (float32 within a block, float64 across blocks).
  const int64_t full = vocab / kSampleBlock, tail = vocab % kSampleBlock, blocks = full + (tail ? 1 : 0);
  std::vector<Tensor> parts;
  if (full) parts.push_back(weights.as_strided({rows, full, kSampleBlock}, {vocab, kSampleBlock, 1}).sum(-1));
  if (tail) parts.push_back(weights.narrow(1, full * kSampleBlock, tail).sum(-1, /*keepdim=*/true));
  auto cumulative = torch::cat(parts, 1).to(torch::kFloat64).cumsum(-1);  // [B, blocks]
  auto total = cumulative.select(-1, blocks - 1).unsqueeze(-1);           // [B, 1]
  auto target = uniforms.to(torch::kFloat64).reshape({rows, 1}) * total;
  auto block = torch::searchsorted(cumulative, target, /*out_int32=*/false, /*right=*/true).clamp_max(blocks - 1);
  auto before = torch::where(block > 0, cumulative.gather(-1, (block - 1).clamp_min(0)), torch::zeros_like(target));

  // Refinement inside the chosen block; columns past the vocabulary weigh zero.
  auto columns = block * kSampleBlock + torch::arange(kSampleBlock, block.options());  // [B, block]
  auto inside = columns < vocab;
  auto w = weights.gather(-1, columns.clamp_max(vocab - 1)).masked_fill(inside.logical_not(), 0.0f);
  auto running = w.to(torch::kFloat64).cumsum(-1) + before;
  auto within = torch::searchsorted(running, target, false, true);  // [B, 1]
  auto tokens = columns.gather(-1, within.clamp_max(kSampleBlock - 1)).squeeze(-1);
  auto past = (within >= kSampleBlock).squeeze(-1);
  if (past.any().item<bool>()) {
    auto past_cpu = past.to(torch::kCPU), block_cpu = block.to(torch::kCPU);
    auto fixed = tokens.to(torch::kCPU).clone();
    for (int64_t r = 0; r < rows; ++r)
      if (past_cpu[r].item<bool>())
        fixed[r].fill_(last_positive_up_to(weights[r], (block_cpu[r][0].item<int64_t>() + 1) * kSampleBlock));
    tokens = fixed.to(x.device());
  }
  // log softmax(x)[token] = x[token] - max - log(total)
  auto logprobs = (x.gather(-1, tokens.unsqueeze(-1)) - top).to(torch::kFloat64) - total.log();
  return {tokens, logprobs.squeeze(-1).to(torch::kFloat32)};
}

Choice sample_step(const Tensor& logits, const Tensor& present, const SamplingParams& p,
                   const std::vector<double>& uniforms, bool want_model_logprobs) {
  Tensor raw;  // the logits in float32, made only where needed (a [K, V] pass)
  auto float_logits = [&]() -> const Tensor& {
    if (!raw.defined()) raw = logits.to(torch::kFloat32);
    return raw;
  };
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const bool top_k_path = p.do_sample && p.top_k > 0 && p.top_k < vocab;
  const bool penalty = p.repetition_penalty != 1.0;
  Choice c;
  if (!p.do_sample) {
    auto penalised = apply_repetition_penalty(float_logits(), present, p.repetition_penalty);
    c.tokens = penalised.argmax(-1);
    c.sample_logprobs = logprob_of(penalised, c.tokens);
  } else {
    EVOQ_CHECK(int64_t(uniforms.size()) == rows, "sample_step: ", uniforms.size(), " uniforms for ", rows, " rows");
    auto u = torch::tensor(uniforms, torch::kFloat64).to(logits.device());
    if (top_k_path) {
      std::tie(c.tokens, c.sample_logprobs) =
          draw_top_k(penalty ? apply_repetition_penalty(float_logits(), present, p.repetition_penalty) : logits, p, u);
    } else if (!penalty && p.temperature == 1.0 && (p.top_k <= 0 || p.top_k >= vocab) && p.top_p >= 1.0) {
      std::tie(c.tokens, c.sample_logprobs) = draw_full_vocabulary(logits, u);  // softmax(logits) as they are
    } else {
      auto penalised = apply_repetition_penalty(float_logits(), present, p.repetition_penalty);
      auto x = apply_top_p(apply_top_k(apply_temperature(penalised, p.temperature), p.top_k), p.top_p);
      std::tie(c.tokens, c.sample_logprobs) = draw_full_vocabulary(x, u);
    }
  }
  if (want_model_logprobs) {
    const bool unmodified = !penalty && (!p.do_sample || (p.temperature == 1.0 && p.top_k == 0 && p.top_p >= 1.0));
    c.model_logprobs = unmodified ? c.sample_logprobs.clone() : logprob_of(float_logits(), c.tokens);
  }
  return c;
}

}  // namespace evoq::gen
