#pragma once
// KV state for cached decoding with shared prompt prefixes.
//
// A PrefixCache holds one prompt's K/V ([1, kv_heads, Lp, head_dim] per layer, K after RoPE) and its
// M-RoPE delta. A DecodeBatch continues several prefixes at once: group g has n_g sequences (rows
// [offset_g, offset_g + n_g) of the batch) that all read group g's prefix in place — attention runs over
// two segments, the shared prefix (one matmul for the whole group, no K-fold copy) and each sequence's
// own suffix, joined with a common log-sum-exp. All sequences advance in lockstep (one token per step);
// finished ones are dropped with keep().
#include <torch/torch.h>

#include <memory>
#include <vector>

namespace evoq::model {

struct LayerKV {
  torch::Tensor k;  // [b, kv_heads, len, head_dim]
  torch::Tensor v;
};

struct PrefixCache {
  std::vector<LayerKV> layers;  // batch dimension 1
  int64_t length = 0;           // prompt tokens
  int64_t rope_delta = 0;       // max M-RoPE position + 1 - length
};

struct PrefixGroup {
  std::shared_ptr<const PrefixCache> prefix;
  int64_t count = 0;  // sequences continuing this prefix
};

class DecodeBatch {
 public:
  // reserve: expected number of new tokens (suffix capacity grows beyond it when needed).
  DecodeBatch(std::vector<PrefixGroup> groups, int64_t reserve = 64);

  int64_t size() const;                       // sequences currently in the batch
  const std::vector<PrefixGroup>& groups() const { return groups_; }
  // Per-row group index, [B].
  std::vector<int64_t> row_groups() const;
  // M-RoPE position of the next token for each row: prefix length + suffix length + rope_delta.
  torch::Tensor next_positions() const;  // [B] int64 (CPU)

  // Keeps only the given rows (ascending indices into the current batch) and frees the rest.
  void keep(const std::vector<int64_t>& rows);

  // Used by the model for each layer during a step: appends k_new/v_new ([B, kv_heads, 1, d]) at the
  // current suffix position and returns attention output [B, heads, 1, d] over prefix + suffix.
  torch::Tensor attend(int64_t layer, const torch::Tensor& q, const torch::Tensor& k_new, const torch::Tensor& v_new);
  // Called once after all layers of a step.
  void advance() { ++suffix_len_; }

 private:
  void ensure_capacity(int64_t layer, const torch::Tensor& like);
  std::vector<PrefixGroup> groups_;
  std::vector<LayerKV> suffix_;  // [B, kv_heads, capacity, d]
  int64_t suffix_len_ = 0;
  int64_t reserve_ = 64;
};

}  // namespace evoq::model
