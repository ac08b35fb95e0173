#include "evoq/model/vision_tower.h"

#include <algorithm>

#include "evoq/core/error.h"
#include "evoq/model/activation_checkpoint.h"
#include "evoq/model/vision_rope.h"
#include "evoq/model/window_index.h"

namespace evoq::model {

torch::Tensor segment_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                const std::vector<int64_t>& lengths) {
  const int64_t n = q.size(0), heads = q.size(1), d = q.size(2);
  const int64_t segments = static_cast<int64_t>(lengths.size());
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  if (longest * segments == n) {
    // Equal segments: one batched call, no padding.
    auto to_batch = [&](const torch::Tensor& x) { return x.view({segments, longest, heads, d}).transpose(1, 2); };
    auto out = at::scaled_dot_product_attention(to_batch(q), to_batch(k), to_batch(v));
    return out.transpose(1, 2).reshape({n, heads, d});
  }
  // Unequal segments: gather into [segments, longest] with a key mask, then take the real rows back.
  std::vector<int64_t> gather(segments * longest, 0);
  std::vector<uint8_t> valid(segments * longest, 0);
  int64_t start = 0;
  for (int64_t s = 0; s < segments; ++s) {
    for (int64_t j = 0; j < lengths[s]; ++j) {
      gather[s * longest + j] = start + j;
      valid[s * longest + j] = 1;
    }
    start += lengths[s];
  }
  auto device = q.device();
  auto gather_t = torch::tensor(gather, torch::kInt64).to(device);
  auto valid_t = torch::from_blob(valid.data(), {segments * longest}, torch::kUInt8).to(torch::kBool).to(device);
  auto to_batch = [&](const torch::Tensor& x) {
    return x.index_select(0, gather_t).view({segments, longest, heads, d}).transpose(1, 2);
  };
  auto mask = valid_t.view({segments, 1, 1, longest});
  auto out = at::scaled_dot_product_attention(to_batch(q), to_batch(k), to_batch(v), mask);
  auto rows = torch::nonzero(valid_t).view({-1});
  return out.transpose(1, 2).reshape({segments * longest, heads, d}).index_select(0, rows);
}

VisionBlock::VisionBlock(const ModelConfig& config, torch::TensorOptions options) {
  const auto& v = config.vision;
  arch_ = config.arch;
  heads_ = v.num_heads;
  head_dim_ = v.head_dim;
  act_ = v.hidden_act;
  if (arch_ == Arch::Qwen2VL) {
    norm1_ = register_module("norm1", std::make_shared<LayerNorm>(v.width, 1e-6, options));
    norm2_ = register_module("norm2", std::make_shared<LayerNorm>(v.width, 1e-6, options));
  } else {
    norm1_ = register_module("norm1", std::make_shared<RMSNorm>(v.width, 1e-6, options));
    norm2_ = register_module("norm2", std::make_shared<RMSNorm>(v.width, 1e-6, options));
  }
  auto attn = register_module("attn", std::make_shared<torch::nn::Module>());
  qkv_ = attn->register_module("qkv", std::make_shared<Linear>(v.width, 3 * v.width, true, options));
  proj_ = attn->register_module("proj", std::make_shared<Linear>(v.width, v.width, true, options));
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  if (arch_ == Arch::Qwen2VL) {
    fc1_ = mlp->register_module("fc1", std::make_shared<Linear>(v.width, v.intermediate_size, true, options));
    fc2_ = mlp->register_module("fc2", std::make_shared<Linear>(v.intermediate_size, v.width, true, options));
  } else {
    gate_proj_ =
        mlp->register_module("gate_proj", std::make_shared<Linear>(v.width, v.intermediate_size, true, options));
    up_proj_ = mlp->register_module("up_proj", std::make_shared<Linear>(v.width, v.intermediate_size, true, options));
    down_proj_ =
        mlp->register_module("down_proj", std::make_shared<Linear>(v.intermediate_size, v.width, true, options));
  }
}

static torch::Tensor norm_forward(const std::shared_ptr<torch::nn::Module>& norm, const torch::Tensor& x) {
  if (auto ln = std::dynamic_pointer_cast<LayerNorm>(norm)) return ln->forward(x);
  return std::static_pointer_cast<RMSNorm>(norm)->forward(x);
}

torch::Tensor VisionBlock::attention(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                     const std::vector<int64_t>& lengths) {
  const int64_t n = x.size(0);
  auto qkv = qkv_->forward(x).view({n, 3, heads_, head_dim_});
  auto q = apply_vision_rope(qkv.select(1, 0), cos, sin);
  auto k = apply_vision_rope(qkv.select(1, 1), cos, sin);
  auto v = qkv.select(1, 2);
  auto out = segment_attention(q, k, v, lengths);
  return proj_->forward(out.reshape({n, heads_ * head_dim_}));
}

torch::Tensor VisionBlock::mlp_forward(const torch::Tensor& x) {
  if (arch_ == Arch::Qwen2VL) return fc2_->forward(activation(fc1_->forward(x), act_));
  return down_proj_->forward(activation(gate_proj_->forward(x), act_) * up_proj_->forward(x));
}

torch::Tensor VisionBlock::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                   const std::vector<int64_t>& lengths) {
  auto h = x + attention(norm_forward(norm1_, x), cos, sin, lengths);
  return h + mlp_forward(norm_forward(norm2_, h));
}

VisionTower::VisionTower(const ModelConfig& config, torch::TensorOptions options) : config_(config) {
  const auto& v = config.vision;
  auto patch_embed = register_module("patch_embed", std::make_shared<torch::nn::Module>());
  auto proj = patch_embed->register_module("proj", std::make_shared<torch::nn::Module>());
  patch_weight_ = proj->register_parameter(
      "weight", torch::empty({v.width, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size}, options));
  auto blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < v.depth; ++i) {
    blocks_.push_back(std::make_shared<VisionBlock>(config, options));
    blocks->push_back(blocks_.back());
  }
  merger_ = register_module("merger", std::make_shared<PatchMerger>(config, options));
}

torch::Tensor VisionTower::forward(const torch::Tensor& pixel_values, const torch::Tensor& grid_thw) {
  const auto& v = config_.vision;
  auto grid = grid_thw.to(torch::kCPU, torch::kInt64).contiguous();
  EVOQ_CHECK(grid.dim() == 2 && grid.size(1) == 3, "image_grid_thw must have shape [num_images, 3]");
  const int64_t merge = v.spatial_merge_size, unit = merge * merge;
  std::vector<int64_t> image_lengths;  // full attention: one segment per frame
  int64_t total = 0;
  for (int64_t i = 0; i < grid.size(0); ++i) {
    const int64_t t = grid[i][0].item<int64_t>(), h = grid[i][1].item<int64_t>(), w = grid[i][2].item<int64_t>();
    EVOQ_CHECK(t > 0 && h > 0 && w > 0 && h % merge == 0 && w % merge == 0, "image_grid_thw row ", i,
               " is not a valid grid for spatial_merge_size ", merge);
    for (int64_t f = 0; f < t; ++f) image_lengths.push_back(h * w);
    total += t * h * w;
  }
  EVOQ_CHECK(pixel_values.dim() == 2 && pixel_values.size(0) == total && pixel_values.size(1) == v.patch_dim(),
             "pixel_values has shape ", pixel_values.sizes(), " but image_grid_thw needs [", total, ", ",
             v.patch_dim(), "]");
  auto dtype = patch_weight_.scalar_type();
  auto x = torch::matmul(pixel_values.to(patch_weight_.device(), dtype), patch_weight_.reshape({v.width, -1}).t());
  auto [cos, sin] = vision_rope_cos_sin(vision_patch_positions(grid, merge), v.head_dim, v.rope_theta, x.device());

  torch::Tensor window_order;
  std::vector<int64_t> window_lengths;
  if (config_.arch == Arch::Qwen25VL) {
    auto layout = window_layout(grid, merge, v.window_size, v.patch_size);
    window_order = layout.index.to(x.device());
    window_lengths = layout.window_tokens;
    // Permute whole merge units (the merger groups `unit` consecutive patches).
    auto patch_order = (window_order.view({-1, 1}) * unit + torch::arange(unit, window_order.options())).view({-1});
    x = x.index_select(0, patch_order);
    cos = cos.index_select(0, patch_order);
    sin = sin.index_select(0, patch_order);
  }
  const auto& full = v.fullatt_block_indexes;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const bool windowed = config_.arch == Arch::Qwen25VL &&
                          std::find(full.begin(), full.end(), static_cast<int64_t>(i)) == full.end();
    const auto& lengths = windowed ? window_lengths : image_lengths;
    auto block = blocks_[i];
    if (checkpoint_now())
      x = checkpoint_block(
          [block, cos, sin, lengths](const torch::Tensor& in) { return block->forward(in, cos, sin, lengths); }, x,
          block->parameters());
    else
      x = block->forward(x, cos, sin, lengths);
  }
  auto merged = merger_->forward(x);
  if (window_order.defined()) merged = merged.index_select(0, torch::argsort(window_order));
  return merged;
}

}  // namespace evoq::model
