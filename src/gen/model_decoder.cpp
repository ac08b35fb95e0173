#include "evoq/gen/model_decoder.h"

#include <chrono>
#include <unordered_map>

#include "evoq/core/error.h"

namespace evoq::gen {
namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

ModelDecoder::ModelDecoder(std::shared_ptr<model::QwenVL> model, int64_t reserve_tokens)
    : model_(std::move(model)), reserve_(std::max<int64_t>(reserve_tokens, 1)) {}

int64_t ModelDecoder::vocab_size() const { return model_->config().text.vocab_size; }

Decoder::Prefilled ModelDecoder::prefill(const PromptInput& prompt) {
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
  const int64_t id = next_id_++;
  prefixes_[id] = p.cache;
  prefill_seconds_ += seconds_since(start);
  return {id, p.last_logits.to(torch::kFloat32)};
}

std::vector<int64_t> ModelDecoder::fork(int64_t prefix, int n) {
  auto it = prefixes_.find(prefix);
  EVOQ_CHECK(it != prefixes_.end(), "internal error: fork of unknown prefix ", prefix);
  pending_groups_.push_back({it->second, n});
  std::vector<int64_t> ids;
  for (int i = 0; i < n; ++i) {
    ids.push_back(next_id_++);
    pending_rows_.push_back(ids.back());
    released_[ids.back()] = false;
  }
  return ids;
}

void ModelDecoder::release_prefix(int64_t prefix) { prefixes_.erase(prefix); }

void ModelDecoder::release_sequence(int64_t seq) {
  auto it = released_.find(seq);
  EVOQ_CHECK(it != released_.end(), "internal error: release of unknown sequence ", seq);
  it->second = true;
}

void ModelDecoder::start_pending_cohort() {
  if (pending_rows_.empty()) return;
  Cohort c;
  c.batch = std::make_unique<model::DecodeBatch>(std::move(pending_groups_), reserve_);
  c.rows = std::move(pending_rows_);
  pending_groups_.clear();
  pending_rows_.clear();
  cohorts_.push_back(std::move(c));
}

torch::Tensor ModelDecoder::decode(const std::vector<int64_t>& seqs, const std::vector<int64_t>& tokens) {
  torch::NoGradGuard no_grad;
  auto start = std::chrono::steady_clock::now();
  EVOQ_CHECK(seqs.size() == tokens.size(), "internal error: ", seqs.size(), " sequences but ", tokens.size(),
             " tokens");
  start_pending_cohort();

  // Drop released rows (a forked sequence released before its first step never reaches the model).
  for (auto& c : cohorts_) {
    std::vector<int64_t> keep, rows;
    for (size_t r = 0; r < c.rows.size(); ++r) {
      if (released_.at(c.rows[r])) continue;
      keep.push_back(int64_t(r));
      rows.push_back(c.rows[r]);
    }
    if (keep.size() != c.rows.size() && !keep.empty()) c.batch->keep(keep);
    c.rows = std::move(rows);
  }
  for (auto it = released_.begin(); it != released_.end();) it = it->second ? released_.erase(it) : std::next(it);
  std::erase_if(cohorts_, [](const Cohort& c) { return c.rows.empty(); });

  std::unordered_map<int64_t, size_t> position;  // sequence id -> index in seqs
  for (size_t i = 0; i < seqs.size(); ++i) position[seqs[i]] = i;
  size_t covered = 0;
  const auto device = model_->options().device();
  torch::Tensor out;
  for (auto& c : cohorts_) {
    std::vector<int64_t> cohort_tokens, where;
    for (int64_t seq : c.rows) {
      auto it = position.find(seq);
      EVOQ_CHECK(it != position.end(), "internal error: live sequence ", seq, " missing from the decode call");
      cohort_tokens.push_back(tokens[it->second]);
      where.push_back(int64_t(it->second));
    }
    covered += where.size();
    auto logits = model_->decode_step(*c.batch, torch::tensor(cohort_tokens, torch::kInt64).to(device));
    // One cohort in the caller's order (the usual case): its logits are the answer; copying a
    // [B, V] block per step cost about a tenth of a tiny model's decode time.
    bool in_order = cohorts_.size() == 1 && where.size() == seqs.size();
    for (size_t i = 0; in_order && i < where.size(); ++i) in_order = where[i] == int64_t(i);
    if (in_order) {
      out = logits;
      continue;
    }
    if (!out.defined()) out = torch::empty({int64_t(seqs.size()), logits.size(1)}, logits.options());
    out.index_copy_(0, torch::tensor(where, torch::kInt64).to(logits.device()), logits);
  }
  EVOQ_CHECK(covered == seqs.size(), "internal error: decode call names ", seqs.size(), " sequences, ", covered,
             " are live");
  decode_seconds_ += seconds_since(start);
  return out.to(torch::kFloat32);
}

}  // namespace evoq::gen
