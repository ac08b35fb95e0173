#pragma once
// Qwen2-VL / Qwen2.5-VL in LibTorch: the whole model (vision tower + M-RoPE decoder + lm_head) as one
// torch::nn::Module whose named_parameters() are the Hugging Face names of transformers >= 4.52
// (`model.visual.*`, `model.language_model.*`, `lm_head.weight`), so checkpoints round-trip and an
// optimizer can train them. Device-agnostic (CPU and CUDA) and autograd-friendly.
//
// Three ways to run it:
//  * forward(): a padded batch of full sequences (training log-probs, parity tests);
//  * prefill(): one prompt (batch 1) -> last-position logits and its KV (a PrefixCache);
//  * decode_step(): B sequences that continue one or more prefixes; the sequences of a group share
//    their prompt's KV without copies (see kv_cache.h).
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "evoq/model/config.h"
#include "evoq/model/decoder_layer.h"
#include "evoq/model/kv_cache.h"
#include "evoq/model/vision_tower.h"

namespace evoq::model {

// A padded batch. Positions (M-RoPE) are computed from input_ids, attention_mask and image_grid_thw.
struct Inputs {
  torch::Tensor input_ids;       // [B, L] int64
  torch::Tensor attention_mask;  // [B, L], 1 = token, 0 = padding (left or right); undefined = no padding
  // Images of all sequences in order of appearance (sequence 0's images first): either pixels
  // (pixel_values [N, patch_dim] + image_grid_thw [num_images, 3]) or, to reuse one vision pass for
  // many sequences, image_embeds [num_image_tokens, hidden] from encode_images() + image_grid_thw.
  torch::Tensor pixel_values;
  torch::Tensor image_grid_thw;
  torch::Tensor image_embeds;
};

enum class LogitsOf { All, Last };

// Output of prefill(): logits of the last prompt position (float32 [vocab]) and the prompt's KV.
struct Prefill {
  torch::Tensor last_logits;
  std::shared_ptr<const PrefixCache> cache;
};

class QwenVL : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised with `options` (dtype/device; torch::kMeta allocates
  // nothing); fill them with load_weights() (weights.h).
  QwenVL(const ModelConfig& config, torch::TensorOptions options);

  const ModelConfig& config() const { return config_; }
  torch::TensorOptions options() const { return options_; }

  // Vision tower + merger: [num_image_tokens, hidden] in the model dtype (images in order).
  torch::Tensor encode_images(const torch::Tensor& pixel_values, const torch::Tensor& image_grid_thw);

  // Final-norm hidden states [B, L, hidden]. If kv_out is given it receives each layer's K (after
  // RoPE) and V, [B, kv_heads, L, head_dim]. rope_deltas_out (optional) receives [B] int64.
  torch::Tensor hidden_states(const Inputs& inputs, std::vector<LayerKV>* kv_out = nullptr,
                              std::vector<int64_t>* rope_deltas_out = nullptr);

  // lm_head (tied to embed_tokens when the config says so): [..., hidden] -> [..., vocab].
  torch::Tensor logits(const torch::Tensor& hidden);

  // Packs every weight a linear product of inference reads (model/packed_linear.h) now, at load, rather
  // than in the first forward: the vision tower's and merger's, the fused q/k/v and gate/up, o, down and
  // the lm_head. Does nothing unless they are bf16 on the CPU and packing is on. Returns how many.
  int64_t pack_linear_weights();
  std::vector<torch::Tensor> linear_weights() const;  // what pack_linear_weights packs
  ~QwenVL() override;

  // Full forward: [B, L, vocab] (All) or [B, vocab] (Last = each row's last non-padding position),
  // in the model dtype, with gradients when grad mode is on.
  torch::Tensor forward(const Inputs& inputs, LogitsOf which = LogitsOf::All);

  // One prompt (batch 1, no padding) -> float32 last-position logits and the prefix KV + rope_delta.
  Prefill prefill(const Inputs& prompt);

  // Feeds one token per sequence of `batch` (tokens [B] int64) at position cache_len + rope_delta on
  // all three M-RoPE axes, appends its KV to the batch and returns float32 logits [B, vocab].
  torch::Tensor decode_step(DecodeBatch& batch, const torch::Tensor& tokens);

  std::shared_ptr<VisionTower> visual;
  std::shared_ptr<TextModel> language_model;
  torch::Tensor lm_head_weight;  // undefined when tied

 private:
  ModelConfig config_;
  torch::TensorOptions options_;
};

}  // namespace evoq::model
