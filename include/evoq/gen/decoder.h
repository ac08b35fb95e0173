#pragma once
// What the generation engine needs from a model: prefill a prompt once, fork continuations that
// share its KV cache, and run one decode step for any set of live sequences.
//
// The engine (engine.h) owns scheduling, sampling and stop rules; a Decoder owns the KV cache.
// The Qwen2-VL implementation adapts evoq::model (model_decoder.h); tests use a small stand-in.
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace evoq::gen {

// One prompt as the model sees it: chat-templated token ids (with <|image_pad|> runs) and the
// preprocessed images (pixel_values [patches, 1176] and grid_thw [images, 3]; undefined when none).
struct PromptInput {
  std::vector<int32_t> input_ids;
  torch::Tensor pixel_values;
  torch::Tensor image_grid_thw;
  // >= 0: the caller's name for this prompt; a decoder may keep its prefill under that name and reuse
  // it when the same prompt comes again (e.g. a pair's next voting wave) until told to forget it.
  int64_t cache_key = -1;
};

class Decoder {
 public:
  virtual ~Decoder() = default;

  virtual int64_t vocab_size() const = 0;

  struct Prefilled {
    int64_t prefix = -1;  // handle of the cached prompt
    torch::Tensor logits; // [V] float32: next-token logits after the last prompt token
  };
  // Runs the whole prompt once and keeps its KV cache.
  virtual Prefilled prefill(const PromptInput& prompt) = 0;

  // Starts `n` continuations of `prefix` that read its cache without copying it where possible.
  virtual std::vector<int64_t> fork(int64_t prefix, int n) = 0;

  // Appends tokens[i] to sequence seqs[i] (all distinct) and returns next-token logits [B, V] float32.
  virtual torch::Tensor decode(const std::vector<int64_t>& seqs, const std::vector<int64_t>& tokens) = 0;

  // Frees a finished sequence. release_prefix says no more forks will be made; the prefix's cache
  // lives on until its last sequence is released.
  virtual void release_sequence(int64_t seq) = 0;
  virtual void release_prefix(int64_t prefix) = 0;
};

}  // namespace evoq::gen
