#include "evoq/model/decoder_layer.h"

#include "evoq/model/mrope.h"

namespace evoq::model {

DecoderLayer::DecoderLayer(const TextConfig& c, torch::TensorOptions options)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim) {
  auto attn = register_module("self_attn", std::make_shared<torch::nn::Module>());
  q_proj_ = attn->register_module("q_proj", std::make_shared<Linear>(c.hidden_size, heads_ * head_dim_, true, options));
  k_proj_ =
      attn->register_module("k_proj", std::make_shared<Linear>(c.hidden_size, kv_heads_ * head_dim_, true, options));
  v_proj_ =
      attn->register_module("v_proj", std::make_shared<Linear>(c.hidden_size, kv_heads_ * head_dim_, true, options));
  o_proj_ =
      attn->register_module("o_proj", std::make_shared<Linear>(heads_ * head_dim_, c.hidden_size, false, options));
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  gate_proj_ =
      mlp->register_module("gate_proj", std::make_shared<Linear>(c.hidden_size, c.intermediate_size, false, options));
  up_proj_ =
      mlp->register_module("up_proj", std::make_shared<Linear>(c.hidden_size, c.intermediate_size, false, options));
  down_proj_ =
      mlp->register_module("down_proj", std::make_shared<Linear>(c.intermediate_size, c.hidden_size, false, options));
  input_layernorm_ =
      register_module("input_layernorm", std::make_shared<RMSNorm>(c.hidden_size, c.rms_norm_eps, options));
  post_attention_layernorm_ =
      register_module("post_attention_layernorm", std::make_shared<RMSNorm>(c.hidden_size, c.rms_norm_eps, options));
}

torch::Tensor DecoderLayer::mlp(const torch::Tensor& x) {
  return down_proj_->forward(torch::silu(gate_proj_->forward(x)) * up_proj_->forward(x));
}

// Grouped-query attention: query head h reads kv head h / (heads / kv_heads).
static torch::Tensor repeat_kv(const torch::Tensor& x, int64_t rep) {
  if (rep == 1) return x;
  const auto b = x.size(0), kvh = x.size(1), len = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, kvh, rep, len, d}).reshape({b, kvh * rep, len, d});
}

torch::Tensor DecoderLayer::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                    const torch::Tensor& mask, LayerKV* kv_out) {
  const int64_t b = x.size(0), len = x.size(1);
  auto h = input_layernorm_->forward(x);
  auto q = q_proj_->forward(h).view({b, len, heads_, head_dim_}).transpose(1, 2);
  auto k = k_proj_->forward(h).view({b, len, kv_heads_, head_dim_}).transpose(1, 2);
  auto v = v_proj_->forward(h).view({b, len, kv_heads_, head_dim_}).transpose(1, 2);
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  if (kv_out) *kv_out = {k.contiguous(), v.contiguous()};
  const int64_t rep = heads_ / kv_heads_;
  torch::Tensor attn;
  if (mask.defined())
    attn = at::scaled_dot_product_attention(q, repeat_kv(k, rep), repeat_kv(v, rep), mask);
  else
    attn = at::scaled_dot_product_attention(q, repeat_kv(k, rep), repeat_kv(v, rep), {}, 0.0, /*is_causal=*/true);
  auto out = x + o_proj_->forward(attn.transpose(1, 2).reshape({b, len, heads_ * head_dim_}));
  return out + mlp(post_attention_layernorm_->forward(out));
}

torch::Tensor DecoderLayer::decode(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                   DecodeBatch& batch, int64_t layer) {
  const int64_t b = x.size(0);
  auto h = input_layernorm_->forward(x);
  auto q = q_proj_->forward(h).view({b, 1, heads_, head_dim_}).transpose(1, 2);
  auto k = k_proj_->forward(h).view({b, 1, kv_heads_, head_dim_}).transpose(1, 2);
  auto v = v_proj_->forward(h).view({b, 1, kv_heads_, head_dim_}).transpose(1, 2);
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  auto attn = batch.attend(layer, q, k, v);  // [B, heads, 1, d]
  auto out = x + o_proj_->forward(attn.transpose(1, 2).reshape({b, 1, heads_ * head_dim_}));
  return out + mlp(post_attention_layernorm_->forward(out));
}

TextModel::TextModel(const TextConfig& c, torch::TensorOptions options) {
  auto embed_tokens = register_module("embed_tokens", std::make_shared<torch::nn::Module>());
  embed_weight = embed_tokens->register_parameter("weight", torch::empty({c.vocab_size, c.hidden_size}, options));
  auto list = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers.push_back(std::make_shared<DecoderLayer>(c, options));
    list->push_back(layers.back());
  }
  norm = register_module("norm", std::make_shared<RMSNorm>(c.hidden_size, c.rms_norm_eps, options));
}

torch::Tensor TextModel::embed(const torch::Tensor& ids) const {
  return torch::embedding(embed_weight, ids.to(embed_weight.device(), torch::kInt64));
}

}  // namespace evoq::model
