#include "evoq/gen/sampler.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "evoq/core/error.h"

namespace evoq::gen {

SamplingParams read_generation_config(const std::filesystem::path& file) {
  std::ifstream in(file);
  EVOQ_CHECK(in, "cannot open generation config ", file.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    fail("generation config ", file.string(), " is not valid JSON: ", e.what());
  }
  EVOQ_CHECK(j.is_object(), "generation config ", file.string(), " is not a JSON object");
  SamplingParams p;
  auto number = [&](const char* key, auto& out) {
    if (!j.contains(key) || j[key].is_null()) return;
    EVOQ_CHECK(j[key].is_number(), "generation config ", file.string(), ": '", key, "' is not a number");
    out = j[key].get<std::remove_reference_t<decltype(out)>>();
  };
  if (j.contains("do_sample") && !j["do_sample"].is_null()) {
    EVOQ_CHECK(j["do_sample"].is_boolean(), "generation config ", file.string(), ": 'do_sample' is not a boolean");
    p.do_sample = j["do_sample"].get<bool>();
  }
  number("temperature", p.temperature);
  number("top_k", p.top_k);
  number("top_p", p.top_p);
  number("repetition_penalty", p.repetition_penalty);
  number("max_new_tokens", p.max_new_tokens);
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    const auto& e = j["eos_token_id"];
    if (e.is_number_integer()) {
      p.eos_token_ids = {e.get<int64_t>()};
    } else {
      EVOQ_CHECK(e.is_array(), "generation config ", file.string(), ": 'eos_token_id' is neither an id nor a list");
      for (const auto& id : e) {
        EVOQ_CHECK(id.is_number_integer(), "generation config ", file.string(), ": 'eos_token_id' holds a non-integer");
        p.eos_token_ids.push_back(id.get<int64_t>());
      }
    }
  }
  validate(p, file.string());
  return p;
}

SamplingParams model_sampling_defaults(const std::filesystem::path& model_dir) {
  auto file = model_dir / "generation_config.json";
  if (std::filesystem::exists(file)) return read_generation_config(file);
  return SamplingParams{};
}

void validate(const SamplingParams& p, const std::string& what) {
  auto bad = [&](const std::string& key, double v, const char* rule) {
    throw UsageError(detail::concat(what, ": ", key, " = ", v, " (must be ", rule, ")"));
  };
  if (p.do_sample && !(p.temperature > 0.0 && std::isfinite(p.temperature))) bad("temperature", p.temperature, "> 0");
  if (!(p.top_p > 0.0 && p.top_p <= 1.0)) bad("top_p", p.top_p, "in (0, 1]");
  if (p.top_k < 0) bad("top_k", double(p.top_k), ">= 0");
  if (!(p.repetition_penalty > 0.0 && std::isfinite(p.repetition_penalty)))
    bad("repetition_penalty", p.repetition_penalty, "> 0");
  if (p.max_new_tokens < 1) bad("max_new_tokens", double(p.max_new_tokens), ">= 1");
}

torch::Tensor apply_repetition_penalty(const torch::Tensor& logits, const torch::Tensor& present, double penalty) {
  if (penalty == 1.0) return logits;
  auto penalised = torch::where(logits < 0, logits * penalty, logits / penalty);
  return torch::where(present, penalised, logits);
}

torch::Tensor apply_temperature(const torch::Tensor& logits, double temperature) {
  if (temperature == 1.0) return logits;
  return logits / temperature;
}

torch::Tensor apply_top_k(const torch::Tensor& logits, int64_t top_k) {
  if (top_k <= 0) return logits;
  int64_t k = std::min(top_k, logits.size(-1));
  auto kth = std::get<0>(logits.topk(k, -1)).select(-1, k - 1).unsqueeze(-1);
  return logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
}

torch::Tensor apply_top_p(const torch::Tensor& logits, double top_p) {
  if (top_p >= 1.0) return logits;
  auto [sorted, order] = logits.sort(/*stable=*/true, /*dim=*/-1, /*descending=*/false);
  auto cumulative = sorted.softmax(-1).cumsum(-1);
  auto remove_sorted = cumulative <= (1.0 - top_p);
  remove_sorted.select(-1, logits.size(-1) - 1).fill_(false);  // keep the most likely token
  auto remove = torch::zeros_like(remove_sorted).scatter(-1, order, remove_sorted);
  return logits.masked_fill(remove, -std::numeric_limits<float>::infinity());
}

namespace {
// Top-p after top-k: only the finite survivors of top-k can be kept, so sorting them alone gives the
// same result as sorting the whole vocabulary (removed tokens have zero probability either way).
torch::Tensor top_p_over_survivors(const torch::Tensor& x, double top_p) {
  const int64_t survivors = torch::isfinite(x).sum(-1).max().item<int64_t>();
  if (survivors == 0 || survivors * 4 > x.size(-1)) return apply_top_p(x, top_p);
  auto [values, index] = x.topk(survivors, -1, /*largest=*/true, /*sorted=*/true);
  auto kept = apply_top_p(values, top_p);
  return torch::full_like(x, -std::numeric_limits<float>::infinity()).scatter(-1, index, kept);
}
}  // namespace

torch::Tensor process_logits(const torch::Tensor& logits, const torch::Tensor& present, const SamplingParams& p) {
  auto x = apply_repetition_penalty(logits, present, p.repetition_penalty);
  if (!p.do_sample) return x;
  x = apply_temperature(x, p.temperature);
  if (p.top_k <= 0) return apply_top_p(x, p.top_p);
  x = apply_top_k(x, p.top_k);
  return p.top_p < 1.0 ? top_p_over_survivors(x, p.top_p) : x;
}

int64_t sample_index(const float* probs, int64_t n, double u) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += probs[i];
  const double target = u * total;
  double running = 0.0;
  int64_t last_positive = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (probs[i] <= 0.0f) continue;
    running += probs[i];
    last_positive = i;
    if (running > target) return i;
  }
  EVOQ_CHECK(last_positive >= 0, "sampling distribution has no positive probability (all logits -inf or NaN)");
  return last_positive;  // rounding left target at the very end
}

torch::Tensor inverse_cdf(const torch::Tensor& probs, const torch::Tensor& uniforms) {
  const int64_t vocab = probs.size(-1);
  auto cumulative = probs.to(torch::kFloat64).cumsum(-1);
  auto total = cumulative.select(-1, vocab - 1);
  EVOQ_CHECK((total > 0).all().item<bool>(), "sampling distribution has no positive probability (all -inf or NaN)");
  auto target = (uniforms * total).unsqueeze(-1);
  auto index = torch::searchsorted(cumulative, target, /*out_int32=*/false, /*right=*/true).squeeze(-1);
  index = index.clamp_max(vocab - 1);
  // Only when rounding left the target at the very end can the index name a zero-probability token:
  // then take the last token of positive probability (a rare full pass).
  auto zero = probs.gather(-1, index.unsqueeze(-1)).squeeze(-1) <= 0;
  if (zero.any().item<bool>()) {
    auto last_positive = vocab - 1 - (probs > 0).flip(-1).to(torch::kInt32).argmax(-1);
    index = torch::where(zero, last_positive, index);
  }
  return index;
}

Choice choose_tokens(const torch::Tensor& raw_logits, const torch::Tensor& processed, const SamplingParams& p,
                     const std::vector<double>& uniforms, bool want_model_logprobs) {
  Choice c;
  auto logp = processed.to(torch::kFloat32).log_softmax(-1);
  if (!p.do_sample) {
    c.tokens = processed.argmax(-1);
  } else {
    const int64_t rows = processed.size(0);
    EVOQ_CHECK(int64_t(uniforms.size()) == rows, "choose_tokens: ", uniforms.size(), " uniforms for ", rows, " rows");
    c.tokens = inverse_cdf(logp.exp(), torch::tensor(uniforms, torch::kFloat64).to(processed.device()));
  }
  auto index = c.tokens.unsqueeze(-1);
  c.sample_logprobs = logp.gather(-1, index).squeeze(-1);
  if (want_model_logprobs)
    c.model_logprobs = raw_logits.to(torch::kFloat32).log_softmax(-1).gather(-1, index).squeeze(-1);
  return c;
}

}  // namespace evoq::gen
