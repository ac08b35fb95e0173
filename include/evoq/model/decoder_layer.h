#pragma once
// Qwen2 decoder: RMSNorm -> GQA self-attention with M-RoPE (q/k/v with bias, o without) -> RMSNorm ->
// SwiGLU MLP, residuals around both; TextModel = embed_tokens + layers + final norm.
//
// Fused projections: q/k/v live in one [q + k + v rows, hidden] weight (and one bias) and gate/up in
// one [2 x intermediate, hidden] weight, allocated once; the parameters q_proj.weight, k_proj.weight, ...
// are views of them, so named_parameters(), loading, saving (the HF layout, byte for byte) and the
// optimizer see the usual separate tensors while the no-grad paths (prefill, decode, reference
// forwards) run one GEMM for q/k/v and one for gate/up. With autograd on a trainable projection the
// forward uses the separate views, so that gradients reach the parameters.
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
  // Full sequences x [B, L, D]; cos/sin [B, L, head_dim] (mrope_cos_sin); mask bool [B, 1, L, L]
  // (true = attend) or undefined for plain causal attention. kv_out (optional) receives K after RoPE and V.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, LayerKV* kv_out);
  // One new token per sequence, x [B, D], attending to the batch's prefix + suffix KV; cos/sin [B, 1, head_dim].
  torch::Tensor decode(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, DecodeBatch& batch,
                       int64_t layer);

  const torch::Tensor& qkv_weight() const { return qkv_weight_; }
  const torch::Tensor& gate_up_weight() const { return gate_up_weight_; }

 private:
  bool fused_path() const;  // no gradient has to reach the separate views
  torch::Tensor mlp(const torch::Tensor& h, const torch::Tensor& residual, bool fused);
  int64_t heads_, kv_heads_, head_dim_, intermediate_;
  torch::Tensor qkv_weight_, qkv_bias_, gate_up_weight_;  // fused storage (not parameters themselves)
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
