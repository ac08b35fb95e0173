#pragma once
// Qwen2 decoder: RMSNorm -> GQA self-attention with M-RoPE (q/k/v with bias, o without) -> RMSNorm ->
// SwiGLU MLP, residuals around both; TextModel = embed_tokens + layers + final norm.
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "evoq/model/config.h"
#include "evoq/model/kv_cache.h"
#include "evoq/model/layers.h"

namespace evoq::model {

class DecoderLayer : public torch::nn::Module {
 public:
  DecoderLayer(const TextConfig& config, torch::TensorOptions options);
  // Full sequences x [B, L, D]; cos/sin [B, L, head_dim]; mask bool [B, 1, L, L] (true = attend) or
  // undefined for plain causal attention. kv_out (optional) receives K after RoPE and V.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, LayerKV* kv_out);
  // One new token per sequence, x [B, 1, D], attending to the batch's prefix + suffix KV.
  torch::Tensor decode(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, DecodeBatch& batch,
                       int64_t layer);

 private:
  torch::Tensor mlp(const torch::Tensor& x);
  int64_t heads_, kv_heads_, head_dim_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, o_proj_, gate_proj_, up_proj_, down_proj_;
  std::shared_ptr<RMSNorm> input_layernorm_, post_attention_layernorm_;
};

class TextModel : public torch::nn::Module {
 public:
  TextModel(const TextConfig& config, torch::TensorOptions options);
  torch::Tensor embed(const torch::Tensor& ids) const;  // [..] -> [.., D]
  torch::Tensor embed_weight;                            // embed_tokens.weight [vocab, D]
  std::vector<std::shared_ptr<DecoderLayer>> layers;
  std::shared_ptr<RMSNorm> norm;
};

}  // namespace evoq::model
