#include "evoq/train/memory_estimate.h"

#include <cstdio>
#include <sstream>

#include "evoq/core/error.h"

namespace evoq::train {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

int64_t linear(int64_t in, int64_t out, bool bias) { return in * out + (bias ? out : 0); }

}  // namespace

ParamCounts count_parameters(const model::ModelConfig& c) {
  ParamCounts n;
  const auto& v = c.vision;
  const bool qwen25 = c.arch == model::Arch::Qwen25VL;
  // Vision: conv patch embedding (no bias), blocks (two norms, qkv + proj attention, MLP).
  const int64_t w = v.width;
  const int64_t norm = qwen25 ? w : 2 * w;  // RMSNorm (weight) vs LayerNorm (weight + bias)
  const int64_t mlp = qwen25 ? 2 * linear(w, v.intermediate_size, true) + linear(v.intermediate_size, w, true)
                             : linear(w, v.intermediate_size, true) + linear(v.intermediate_size, w, true);
  const int64_t block = 2 * norm + linear(w, 3 * w, true) + linear(w, w, true) + mlp;
  n.vision = w * v.patch_dim() + v.depth * block;
  // Merger: norm over the patch width, then MLP over spatial_merge_size^2 concatenated patches.
  const int64_t merged = w * v.spatial_merge_size * v.spatial_merge_size;
  n.merger = norm + linear(merged, merged, true) + linear(merged, v.out_hidden_size, true);
  // Decoder: embeddings, layers (q/k/v with bias, o without; SwiGLU MLP; two RMSNorms), final norm.
  const auto& t = c.text;
  const int64_t h = t.hidden_size, q = t.num_attention_heads * t.head_dim, kv = t.num_key_value_heads * t.head_dim;
  const int64_t layer = linear(h, q, true) + 2 * linear(h, kv, true) + linear(q, h, false) +
                        3 * linear(h, t.intermediate_size, false) + 2 * h;
  n.decoder = t.vocab_size * h + t.num_hidden_layers * layer + h;
  n.lm_head = c.tie_word_embeddings ? 0 : t.vocab_size * h;
  return n;
}

int64_t trainable_count(const ParamCounts& n, const std::string& scope) {
  if (scope == "all") return n.total();
  if (scope == "lm") return n.decoder + n.lm_head;
  if (scope == "lm+merger") return n.decoder + n.lm_head + n.merger;
  throw UsageError("unknown trainable scope '" + scope + "' (expected all, lm or lm+merger)");
}

MemoryEstimate estimate_training_memory(const model::ModelConfig& c, const MemoryPlan& plan) {
  EVOQ_CHECK(plan.ranks >= 1, "memory plan: ranks must be >= 1");
  if (plan.zero_stage < 0 || plan.zero_stage > 2)
    throw UsageError("ZeRO stage must be 0, 1 or 2 (got " + std::to_string(plan.zero_stage) + ")");
  MemoryEstimate e;
  e.params = count_parameters(c);
  e.trainable = trainable_count(e.params, plan.trainable_scope);
  const double P = double(e.params.total()), T = double(e.trainable), R = double(plan.ranks);
  const double b = plan.bf16 ? 2.0 : 4.0;  // bytes per parameter / activation element
  const double state_share = plan.zero_stage >= 1 ? 1.0 / R : 1.0;

  e.weights = P * b;
  e.reference_weights = plan.reference_model ? P * b : 0.0;
  // Autograd's .grad tensors (parameter dtype); stage 2 assumes they are released bucket by bucket
  // after their reduce-scatter, leaving 1/R of them.
  e.grads = T * b * (plan.zero_stage >= 2 ? 1.0 / R : 1.0);
  // fp32 Adam moments (2 x 4 bytes) + fp32 master for non-fp32 parameters (4 bytes).
  e.optimizer_state = T * (8.0 + (plan.bf16 ? 4.0 : 0.0)) * state_share;
  // During step(): the fp32 bucket, the Adam denominator of one bucket and the owned fp32 summed gradients.
  e.comm_buffers = 2.0 * plan.bucket_mb * 1024.0 * 1024.0 + 4.0 * T * state_share;

  const auto& t = c.text;
  const double tokens = double(plan.micro_batch_sequences * plan.sequence_length);
  const double h = double(t.hidden_size), kv = double(t.num_key_value_heads * t.head_dim);
  const double I = double(t.intermediate_size), L = double(t.num_hidden_layers);
  // Saved for backward per token and decoder layer: 6 hidden-size tensors (norm in/out, q, attention
  // out, two residual adds), 4 kv-size (k, v before/after RoPE), 4 MLP tensors (gate, up, act, product).
  // Under bf16 autocast the activations are bf16 whatever the parameter dtype.
  const double a = plan.autocast_bf16 ? 2.0 : b;
  const double layer_act = a * (6.0 * h + 4.0 * kv + 4.0 * I);
  const double lm_act = plan.activation_checkpointing ? tokens * (L * a * h + layer_act) : tokens * L * layer_act;
  double vision_act = 0.0;
  if (plan.trainable_scope == "all") {  // the tower runs with gradients only when it is trained
    const auto& v = c.vision;
    const double patches = double(plan.micro_batch_sequences * plan.image_tokens * v.spatial_merge_size *
                                  v.spatial_merge_size);
    const double w = double(v.width), block_act = a * (6.0 * w + 4.0 * double(v.intermediate_size));
    vision_act = plan.activation_checkpointing ? patches * (double(v.depth) * a * w + block_act)
                                               : patches * double(v.depth) * block_act;
  }
  // Autocast keeps a bf16 copy of every weight the forward reads until the backward has used it.
  e.activations = lm_act + vision_act + (plan.autocast_bf16 && !plan.bf16 ? 2.0 * P : 0.0);
  // Logits in the compute dtype, their fp32 log-softmax and its fp32 gradient.
  e.logits = tokens * double(t.vocab_size) * (a + 8.0);
  // Rollouts: each image's prompt KV is shared by its samples, which add their own response KV.
  const double kv_token = 2.0 * L * kv * b;
  e.rollout_kv = kv_token * double(plan.rollout_images) *
                 double(plan.prompt_tokens + plan.rollout_samples * plan.response_tokens);
  return e;
}

std::string format_memory_table(const MemoryEstimate& e, const MemoryPlan& plan) {
  std::ostringstream os;
  char line[160];
  auto row = [&](const char* name, double bytes) {
    std::snprintf(line, sizeof line, "  %-28s %10.2f GiB\n", name, bytes / kGiB);
    os << line;
  };
  os << "Per-GPU memory estimate: " << plan.ranks << " rank(s), " << (plan.bf16 ? "bf16" : "fp32")
     << " parameters, ZeRO stage " << plan.zero_stage << ", activation checkpointing "
     << (plan.activation_checkpointing ? "on" : "off") << (plan.autocast_bf16 ? ", bf16 autocast" : "")
     << ", micro-batch " << plan.micro_batch_sequences << " x " << plan.sequence_length << " tokens, reference model "
     << (plan.reference_model ? "on" : "off") << ", trainable scope " << plan.trainable_scope << "\n";
  os << "  parameters: " << e.params.total() << " (vision " << e.params.vision << ", merger " << e.params.merger
     << ", decoder " << e.params.decoder << ", lm_head " << e.params.lm_head << "), trainable " << e.trainable << "\n";
  row("weights", e.weights);
  row("reference weights", e.reference_weights);
  row("gradients", e.grads);
  row("fp32 master + Adam moments", e.optimizer_state);
  row("optimizer step buffers", e.comm_buffers);
  row("activations", e.activations);
  row("logits", e.logits);
  row("rollout KV cache", e.rollout_kv);
  row("total", e.total());
  return os.str();
}

}  // namespace evoq::train
