#pragma once
// Decoder (decoder.h) over the Qwen2-VL / Qwen2.5-VL model (evoq::model::QwenVL).
//
// A prompt is prefilled once (batch 1) into a PrefixCache. All sequences live in one
// model::DecodeBatch: forks join it whenever they are made (a prompt's sequences share its KV in
// place, sequences admitted mid-flight included), released sequences leave it, and every decode call
// is one model step for all live sequences, rows in the caller's order.
//
// Prompts with a cache_key keep their prefill (KV, last logits) after their sequences finish, so the
// same prompt asked again (the next early-stop wave of a voting pair) is not prefilled again; the
// owner says when a key is no longer needed (forget_prompt).
#include <map>
#include <memory>

#include "evoq/gen/decoder.h"
#include "evoq/model/qwen_vl.h"

namespace evoq::gen {

class ModelDecoder : public Decoder {
 public:
  // reserve_tokens: expected new tokens per sequence (KV capacity; grows when exceeded).
  ModelDecoder(std::shared_ptr<model::QwenVL> model, int64_t reserve_tokens);

  int64_t vocab_size() const override;
  Prefilled prefill(const PromptInput& prompt) override;
  std::vector<int64_t> fork(int64_t prefix, int n) override;
  torch::Tensor decode(const std::vector<int64_t>& seqs, const std::vector<int64_t>& tokens) override;
  void release_sequence(int64_t seq) override;
  void release_prefix(int64_t prefix) override;

  // Drops the prefill kept under a prompt's cache_key (no-op when none is kept).
  void forget_prompt(int64_t cache_key);
  std::size_t kept_prompts() const { return kept_.size(); }

  // Seconds spent in prefill and in decode steps, and the prefills run and reused (benchmarks, progress).
  double prefill_seconds() const { return prefill_seconds_; }
  double decode_seconds() const { return decode_seconds_; }
  int64_t prefills_run() const { return prefills_run_; }
  int64_t prefills_reused() const { return prefills_reused_; }

 private:
  struct Kept {
    std::shared_ptr<const model::PrefixCache> cache;
    torch::Tensor logits;
  };
  std::shared_ptr<model::QwenVL> model_;
  model::DecodeBatch batch_;
  int64_t next_prefix_ = 0;
  std::map<int64_t, std::shared_ptr<const model::PrefixCache>> prefixes_;  // handles not yet released
  std::map<int64_t, Kept> kept_;                                           // by cache_key
  double prefill_seconds_ = 0.0;
  double decode_seconds_ = 0.0;
  int64_t prefills_run_ = 0, prefills_reused_ = 0;
};

}  // namespace evoq::gen
