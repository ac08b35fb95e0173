#include "evoq/model/qwen_vl.h"

#include "evoq/core/error.h"
#include "evoq/model/activation_checkpoint.h"
#include "evoq/model/mrope.h"
#include "evoq/model/packed_linear.h"

namespace evoq::model {

QwenVL::QwenVL(const ModelConfig& config, torch::TensorOptions options) : config_(config), options_(options) {
  auto model = register_module("model", std::make_shared<torch::nn::Module>());
  visual = model->register_module("visual", std::make_shared<VisionTower>(config, options));
  language_model = model->register_module("language_model", std::make_shared<TextModel>(config.text, options));
  if (!config.tie_word_embeddings) {
    auto head = register_module("lm_head", std::make_shared<torch::nn::Module>());
    lm_head_weight = head->register_parameter(
        "weight", torch::empty({config.text.vocab_size, config.text.hidden_size}, options));
  }
}


torch::Tensor QwenVL::encode_images(const torch::Tensor& pixel_values, const torch::Tensor& image_grid_thw) {
  return visual->forward(pixel_values, image_grid_thw);
}

torch::Tensor QwenVL::logits(const torch::Tensor& hidden) {
  return model::linear(hidden, lm_head_weight.defined() ? lm_head_weight : language_model->embed_weight);
}

std::vector<torch::Tensor> QwenVL::linear_weights() const {
  std::vector<torch::Tensor> weights;
  // Linear modules that own their weight; the q/k/v and gate/up views are read through their fused storage.
  for (const auto& m : modules(/*include_self=*/false))
    if (auto lin = std::dynamic_pointer_cast<Linear>(m); lin && !lin->weight.is_view()) weights.push_back(lin->weight);
  for (const auto& layer : language_model->layers) {
    weights.push_back(layer->qkv_weight());
    weights.push_back(layer->gate_up_weight());
  }
  weights.push_back(lm_head_weight.defined() ? lm_head_weight : language_model->embed_weight);
  return weights;
}

int64_t QwenVL::pack_linear_weights() {
  int64_t packed = 0;
  for (const auto& w : linear_weights()) packed += prepack_weight(w);
  return packed;
}

// The packed copies go with the model, not at the next packing (a vote stage's model before training).
QwenVL::~QwenVL() {
  for (const auto& w : linear_weights()) drop_packed_weight(w);
}

torch::Tensor QwenVL::hidden_states(const Inputs& in, std::vector<LayerKV>* kv_out,
                                    std::vector<int64_t>* rope_deltas_out) {
  EVOQ_CHECK(in.input_ids.defined() && in.input_ids.dim() == 2, "input_ids must have shape [batch, length]");
  const auto device = language_model->embed_weight.device();
  const int64_t b = in.input_ids.size(0), len = in.input_ids.size(1);
  auto ids = in.input_ids.to(device, torch::kInt64);
  auto x = language_model->embed(ids);

  // Image features replace the image placeholder tokens, in order.
  torch::Tensor image_embeds = in.image_embeds;
  if (!image_embeds.defined() && in.pixel_values.defined() && in.pixel_values.numel() > 0) {
    EVOQ_CHECK(in.image_grid_thw.defined(), "pixel_values given without image_grid_thw");
    image_embeds = encode_images(in.pixel_values, in.image_grid_thw);
  }
  auto image_slots = torch::nonzero((ids == config_.image_token_id).view({-1})).view({-1});
  const int64_t n_slots = image_slots.size(0);
  const int64_t n_feats = image_embeds.defined() ? image_embeds.size(0) : 0;
  EVOQ_CHECK(n_slots == n_feats, "input_ids contain ", n_slots, " image tokens but the images give ", n_feats,
             " features");
  if (n_slots > 0) {
    auto flat = x.reshape({b * len, -1});
    flat = flat.index_put({image_slots}, image_embeds.to(flat.scalar_type()));
    x = flat.view({b, len, -1});
  }

  auto index = rope_index(in.input_ids, in.attention_mask, in.image_grid_thw, config_.image_token_id,
                          config_.vision.spatial_merge_size);
  if (rope_deltas_out) *rope_deltas_out = index.deltas;
  const auto& t = config_.text;
  auto [cos, sin] =
      mrope_cos_sin(index.positions.to(device), t.head_dim, t.rope_theta, t.mrope_section, x.scalar_type());

  // Causal mask; with padding also hide padded keys (a query always sees itself so no row is empty).
  torch::Tensor mask;
  if (in.attention_mask.defined() && (in.attention_mask == 0).any().item<bool>()) {
    auto valid = in.attention_mask.to(device).to(torch::kBool);  // [B, L]
    auto causal = torch::ones({len, len}, torch::TensorOptions().dtype(torch::kBool).device(device)).tril();
    auto eye = torch::eye(len, torch::TensorOptions().dtype(torch::kBool).device(device));
    mask = (causal.unsqueeze(0) & valid.unsqueeze(1)) | eye.unsqueeze(0);
    mask = mask.unsqueeze(1);  // [B, 1, L, L]
  }
  if (kv_out) kv_out->assign(language_model->layers.size(), {});
  const bool checkpoint = kv_out == nullptr && checkpoint_now();
  for (size_t i = 0; i < language_model->layers.size(); ++i) {
    auto layer = language_model->layers[i];
    if (checkpoint)
      x = checkpoint_block(
          [layer, cos, sin, mask](const torch::Tensor& in) { return layer->forward(in, cos, sin, mask, nullptr); }, x,
          layer->parameters());
    else
      x = layer->forward(x, cos, sin, mask, kv_out ? &(*kv_out)[i] : nullptr);
  }
  return language_model->norm->forward(x);
}

torch::Tensor QwenVL::forward(const Inputs& inputs, LogitsOf which) {
  auto hidden = hidden_states(inputs);
  if (which == LogitsOf::All) return logits(hidden);
  const int64_t b = hidden.size(0), len = hidden.size(1);
  torch::Tensor last;
  if (inputs.attention_mask.defined()) {
    // Last non-padding column of each row (works for left and right padding).
    auto cols = torch::arange(len, torch::kInt64).unsqueeze(0).expand({b, len});
    auto valid = inputs.attention_mask.to(torch::kCPU).to(torch::kBool);
    last = std::get<0>(torch::where(valid, cols, torch::full_like(cols, -1)).max(1));
  } else {
    last = torch::full({b}, len - 1, torch::kInt64);
  }
  auto rows = torch::arange(b, torch::kInt64);
  return logits(hidden.index({rows.to(hidden.device()), last.to(hidden.device())}));
}

Prefill QwenVL::prefill(const Inputs& prompt) {
  torch::NoGradGuard no_grad;
  EVOQ_CHECK(prompt.input_ids.dim() == 2 && prompt.input_ids.size(0) == 1, "prefill takes one prompt (batch 1)");
  auto cache = std::make_shared<PrefixCache>();
  std::vector<int64_t> deltas;
  Inputs unpadded = prompt;
  unpadded.attention_mask = torch::Tensor();
  auto hidden = hidden_states(unpadded, &cache->layers, &deltas);
  cache->length = prompt.input_ids.size(1);
  cache->rope_delta = deltas.at(0);
  Prefill out;
  out.last_logits = logits(hidden.select(1, hidden.size(1) - 1)).select(0, 0).to(torch::kFloat32);
  out.cache = std::move(cache);
  return out;
}

torch::Tensor QwenVL::decode_step(DecodeBatch& batch, const torch::Tensor& tokens) {
  torch::NoGradGuard no_grad;
  const int64_t b = batch.size();
  EVOQ_CHECK(tokens.numel() == b, "decode_step: ", tokens.numel(), " tokens for a batch of ", b);
  batch.begin_step();
  auto x = language_model->embed(tokens.reshape({b}));  // [B, D]
  auto device = x.device();
  auto pos = batch.next_positions().to(device).view({1, b, 1}).expand({3, b, 1});
  const auto& t = config_.text;
  auto [cos, sin] = mrope_cos_sin(pos, t.head_dim, t.rope_theta, t.mrope_section, x.scalar_type());  // [B, 1, d]
  for (size_t i = 0; i < language_model->layers.size(); ++i)
    x = language_model->layers[i]->decode(x, cos, sin, batch, static_cast<int64_t>(i));
  batch.advance();
  return logits(language_model->norm->forward(x)).to(torch::kFloat32);
}

}  // namespace evoq::model
