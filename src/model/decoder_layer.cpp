#include "evoq/model/decoder_layer.h"

#include "evoq/model/mrope.h"

namespace evoq::model {

DecoderLayer::DecoderLayer(const TextConfig& c, torch::TensorOptions options)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim),
      intermediate_(c.intermediate_size) {
  const int64_t q_rows = heads_ * head_dim_, kv_rows = kv_heads_ * head_dim_, d = c.hidden_size;
  qkv_weight_ = torch::empty({q_rows + 2 * kv_rows, d}, options);
  qkv_bias_ = torch::empty({q_rows + 2 * kv_rows}, options);
  gate_up_weight_ = torch::empty({2 * intermediate_, d}, options);
  auto rows = [](const torch::Tensor& t, int64_t begin, int64_t n) { return t.narrow(0, begin, n); };

  auto attn = register_module("self_attn", std::make_shared<torch::nn::Module>());
  q_proj_ = attn->register_module("q_proj",
                                  std::make_shared<Linear>(rows(qkv_weight_, 0, q_rows), rows(qkv_bias_, 0, q_rows)));
  k_proj_ = attn->register_module(
      "k_proj", std::make_shared<Linear>(rows(qkv_weight_, q_rows, kv_rows), rows(qkv_bias_, q_rows, kv_rows)));
  v_proj_ = attn->register_module("v_proj", std::make_shared<Linear>(rows(qkv_weight_, q_rows + kv_rows, kv_rows),
                                                                     rows(qkv_bias_, q_rows + kv_rows, kv_rows)));
  o_proj_ = attn->register_module("o_proj", std::make_shared<Linear>(q_rows, d, false, options));
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  gate_proj_ = mlp->register_module("gate_proj",
                                    std::make_shared<Linear>(rows(gate_up_weight_, 0, intermediate_), torch::Tensor()));
  up_proj_ = mlp->register_module(
      "up_proj", std::make_shared<Linear>(rows(gate_up_weight_, intermediate_, intermediate_), torch::Tensor()));
  down_proj_ = mlp->register_module("down_proj", std::make_shared<Linear>(c.intermediate_size, d, false, options));
  input_layernorm_ = register_module("input_layernorm", std::make_shared<RMSNorm>(d, c.rms_norm_eps, options));
  post_attention_layernorm_ =
      register_module("post_attention_layernorm", std::make_shared<RMSNorm>(d, c.rms_norm_eps, options));
}

bool DecoderLayer::fused_path() const {
  if (!torch::GradMode::is_enabled()) return true;
  for (const auto* p : {&q_proj_->weight, &q_proj_->bias, &k_proj_->weight, &k_proj_->bias, &v_proj_->weight,
                        &v_proj_->bias, &gate_proj_->weight, &up_proj_->weight})
    if (p->requires_grad()) return false;
  return true;
}

torch::Tensor DecoderLayer::mlp(const torch::Tensor& h, const torch::Tensor& residual, bool fused) {
  torch::Tensor act;
  if (fused) {
    auto gate_up = model::linear(h, gate_up_weight_, {}, /*contiguous=*/false);
    act = torch::silu(gate_up.narrow(-1, 0, intermediate_)) * gate_up.narrow(-1, intermediate_, intermediate_);
  } else {
    act = torch::silu(gate_proj_->forward(h)) * up_proj_->forward(h);
  }
  return linear_add(act, down_proj_->weight, residual);
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
  const bool fused = fused_path();
  auto h = input_layernorm_->forward(x);
  torch::Tensor q, k, v;
  if (fused) {
    auto heads =
        model::linear(h, qkv_weight_, qkv_bias_).view({b, len, heads_ + 2 * kv_heads_, head_dim_}).transpose(1, 2);
    auto qk = apply_rope(heads.narrow(1, 0, heads_ + kv_heads_), cos, sin);
    q = qk.narrow(1, 0, heads_);
    k = qk.narrow(1, heads_, kv_heads_);
    v = heads.narrow(1, heads_ + kv_heads_, kv_heads_);
  } else {
    q = apply_rope(q_proj_->forward(h).view({b, len, heads_, head_dim_}).transpose(1, 2), cos, sin);
    k = apply_rope(k_proj_->forward(h).view({b, len, kv_heads_, head_dim_}).transpose(1, 2), cos, sin);
    v = v_proj_->forward(h).view({b, len, kv_heads_, head_dim_}).transpose(1, 2);
  }
  if (kv_out) *kv_out = {k.contiguous(), v.contiguous()};
  const int64_t rep = heads_ / kv_heads_;
  torch::Tensor attn;
  if (mask.defined())
    attn = at::scaled_dot_product_attention(q, repeat_kv(k, rep), repeat_kv(v, rep), mask);
  else
    attn = at::scaled_dot_product_attention(q, repeat_kv(k, rep), repeat_kv(v, rep), {}, 0.0, /*is_causal=*/true);
  auto out = linear_add(attn.transpose(1, 2).reshape({b, len, heads_ * head_dim_}), o_proj_->weight, x);
  return mlp(post_attention_layernorm_->forward(out), out, fused);
}

torch::Tensor DecoderLayer::decode(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                   DecodeBatch& batch, int64_t layer) {
  const int64_t b = x.size(0);
  auto h = input_layernorm_->forward(x);
  auto heads =
      model::linear(h, qkv_weight_, qkv_bias_, /*contiguous=*/false).view({b, heads_ + 2 * kv_heads_, head_dim_});
  // q and k rotated together, then in the attention's score dtype (fp32 for bf16 models).
  auto qk = rope_rotate(heads.narrow(1, 0, heads_ + kv_heads_), cos, sin).to(batch.score_dtype());
  auto attn = batch.attend(layer, qk.narrow(1, 0, heads_), qk.narrow(1, heads_, kv_heads_),
                           heads.narrow(1, heads_ + kv_heads_, kv_heads_));  // [B, heads * d]
  auto out = linear_add(attn, o_proj_->weight, x);
  return mlp(post_attention_layernorm_->forward(out), out, /*fused=*/true);
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
