#pragma once
// Decoder (decoder.h) over the Qwen2-VL / Qwen2.5-VL model (evoq::model::QwenVL).
//
// A prompt is prefilled once (batch 1) into a PrefixCache. Forks made between two decode calls
// form one cohort: a model::DecodeBatch whose groups read their prefixes in place (no K-fold copy).
// Cohorts advance in lockstep internally; sequences admitted later start a new cohort, so a decode
// call runs one model step per cohort and returns the rows in the caller's order. Released
// sequences are dropped from their cohort (DecodeBatch::keep) before its next step.
#include <map>
#include <memory>

#include "evoq/gen/decoder.h"
#include "evoq/model/qwen_vl.h"

namespace evoq::gen {

class ModelDecoder : public Decoder {
 public:
  // reserve_tokens: expected new tokens per sequence (KV suffix capacity; grows when exceeded).
  ModelDecoder(std::shared_ptr<model::QwenVL> model, int64_t reserve_tokens);

  int64_t vocab_size() const override;
  Prefilled prefill(const PromptInput& prompt) override;
  std::vector<int64_t> fork(int64_t prefix, int n) override;
  torch::Tensor decode(const std::vector<int64_t>& seqs, const std::vector<int64_t>& tokens) override;
  void release_sequence(int64_t seq) override;
  void release_prefix(int64_t prefix) override;

  // Seconds spent in prefill and in decode steps (for benchmarks and progress reports).
  double prefill_seconds() const { return prefill_seconds_; }
  double decode_seconds() const { return decode_seconds_; }

 private:
  struct Cohort {
    std::unique_ptr<model::DecodeBatch> batch;
    std::vector<int64_t> rows;  // sequence id of each batch row
  };
  void start_pending_cohort();

  std::shared_ptr<model::QwenVL> model_;
  int64_t reserve_;
  int64_t next_id_ = 0;
  std::map<int64_t, std::shared_ptr<const model::PrefixCache>> prefixes_;
  std::vector<model::PrefixGroup> pending_groups_;
  std::vector<int64_t> pending_rows_;
  std::vector<Cohort> cohorts_;
  std::map<int64_t, bool> released_;  // live sequence id -> released since its cohort's last step
  double prefill_seconds_ = 0.0;
  double decode_seconds_ = 0.0;
};

}  // namespace evoq::gen
