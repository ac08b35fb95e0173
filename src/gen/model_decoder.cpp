#include "evoq/gen/model_decoder.h"

#include <chrono>

#include "evoq/core/error.h"

namespace evoq::gen {
namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

ModelDecoder::ModelDecoder(std::shared_ptr<model::QwenVL> model, int64_t reserve_tokens)
    : model_(std::move(model)), batch_(std::max<int64_t>(reserve_tokens, 1)) {}

int64_t ModelDecoder::vocab_size() const { return model_->config().text.vocab_size; }

Decoder::Prefilled ModelDecoder::prefill(const PromptInput& prompt) {
  const int64_t id = next_prefix_++;
  if (prompt.cache_key >= 0) {
    auto it = kept_.find(prompt.cache_key);
    if (it != kept_.end()) {
      prefixes_[id] = it->second.cache;
      ++prefills_reused_;
      return {id, it->second.logits};
    }
  }
  torch::NoGradGuard no_grad;
  auto start = std::chrono::steady_clock::now();
  const auto device = model_->options().device();
  model::Inputs in;
  in.input_ids = torch::tensor(std::vector<int64_t>(prompt.input_ids.begin(), prompt.input_ids.end()), torch::kInt64)
                     .reshape({1, -1})
                     .to(device);
  if (prompt.pixel_values.defined()) {
    in.pixel_values = prompt.pixel_values.to(device);
    in.image_grid_thw = prompt.image_grid_thw.to(device);
  }
  model::Prefill p = model_->prefill(in);
  auto logits = p.last_logits.to(torch::kFloat32);
  prefixes_[id] = p.cache;
  if (prompt.cache_key >= 0) kept_[prompt.cache_key] = {p.cache, logits};
  ++prefills_run_;
  prefill_seconds_ += seconds_since(start);
  return {id, logits};
}

std::vector<int64_t> ModelDecoder::fork(int64_t prefix, int n) {
  auto it = prefixes_.find(prefix);
  EVOQ_CHECK(it != prefixes_.end(), "internal error: fork of unknown prefix ", prefix);
  return batch_.add(it->second, n);
}

void ModelDecoder::release_prefix(int64_t prefix) { prefixes_.erase(prefix); }

void ModelDecoder::forget_prompt(int64_t cache_key) { kept_.erase(cache_key); }

void ModelDecoder::release_sequence(int64_t seq) { batch_.remove(seq); }

torch::Tensor ModelDecoder::decode(const std::vector<int64_t>& seqs, const std::vector<int64_t>& tokens) {
  torch::NoGradGuard no_grad;
  auto start = std::chrono::steady_clock::now();
  EVOQ_CHECK(seqs.size() == tokens.size(), "internal error: ", seqs.size(), " sequences but ", tokens.size(),
             " tokens");
  if (seqs != batch_.order()) batch_.set_order(seqs);
  const auto device = model_->options().device();
  auto logits = model_->decode_step(batch_, torch::tensor(tokens, torch::kInt64).to(device));
  decode_seconds_ += seconds_since(start);
  return logits;
}

}  // namespace evoq::gen
