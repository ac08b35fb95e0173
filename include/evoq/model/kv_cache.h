#pragma once
// KV state for cached decoding with shared prompt prefixes.
//
// A PrefixCache holds one prompt's K/V ([1, kv_heads, Lp, head_dim] per layer, K after RoPE) and its
// M-RoPE delta. A DecodeBatch continues any number of prefixes at once; sequences join (add) and leave
// (remove) between steps, whatever the lengths of the others, and every step is one model forward
// for all live sequences.
//
// Layout (why: one batched attention call per layer for all prompts, a fixed number of ops per layer
// whatever the number of groups). The sequences of one prefix form a group; the batch keeps G group
// rows of S slots each. Per layer it holds
//   - a copy of each group's prefix K [kv_heads, G, Lmax, d] and V (padded to the longest prefix,
//     padding masked), so all groups' prompts are one batched matmul: each query reads only its own
//     group's prefix, with no per-sequence copy of the prompt;
//   - each slot's own tokens K/V [kv_heads, G x S, columns, d]: column c holds the token fed at step c
//     of the batch; a sequence that joined at step s0 owns columns s0.. (earlier columns are masked).
// Scores are computed in fp32 (fp64 for fp64 models) from K stored in that dtype, as SDPA computes
// prefill's and training's scores: the bf16 values of Q and K, products accumulated in fp32, softmax
// in fp32; the probabilities are rounded to the model dtype for the product with V (as SDPA's kernels
// do). Prefix and own-token scores are one softmax over the concatenated keys.
#include <torch/torch.h>

#include <map>
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
  // reserve: expected number of new tokens per sequence (own-token capacity grows beyond it when needed).
  explicit DecodeBatch(int64_t reserve = 64);
  // The groups' sequences in order (sequence ids 0, 1, ...: group 0's first).
  DecodeBatch(std::vector<PrefixGroup> groups, int64_t reserve = 64);

  // Starts `count` sequences continuing `prefix` (they share the group already reading it, if any);
  // returns their ids. Their first token is fed at the next step.
  std::vector<int64_t> add(const std::shared_ptr<const PrefixCache>& prefix, int64_t count);
  // Ends a sequence (its slot can be taken by a later add() of the same prefix).
  void remove(int64_t sequence);

  // Live sequences in the order of decode_step's tokens and logits rows (initially in order of add()).
  const std::vector<int64_t>& order() const { return order_; }
  // Sets that order: a permutation of the live sequences.
  void set_order(const std::vector<int64_t>& sequences);
  int64_t size() const { return static_cast<int64_t>(order_.size()); }
  // Keeps only the given rows of order() (ascending indices) and removes the rest.
  void keep(const std::vector<int64_t>& rows);
  // Number of distinct prefixes being read.
  int64_t num_groups() const;

  // M-RoPE position of the next token of each row: prefix length + own tokens so far + rope_delta.
  torch::Tensor next_positions() const;  // [B] int64 (CPU)

  // ---- used by QwenVL::decode_step ----
  torch::Dtype score_dtype() const { return score_dtype_; }
  // Makes room for one more column and builds the step's index tensors (on the cache's device).
  void begin_step();
  // Writes the new token's K/V ([B, kv_heads, d] each; K in score_dtype()) and returns the attention
  // output [B, heads * d] in V's dtype for queries q [B, heads, d] (score_dtype()).
  torch::Tensor attend(int64_t layer, const torch::Tensor& q, const torch::Tensor& k_new, const torch::Tensor& v_new);
  // Called once after all layers of a step.
  void advance();

 private:
  struct Sequence {
    int64_t group = 0;  // group row
    int64_t slot = 0;   // index within the group, < slots_per_group_
    int64_t start = 0;  // column of its first token
  };
  struct Group {
    std::shared_ptr<const PrefixCache> prefix;  // null: free row
    int64_t live = 0;
  };
  void allocate(const PrefixCache& like);
  void grow_groups(int64_t groups);
  void grow_prefix_length(int64_t length);
  void grow_slots(int64_t slots);
  void make_room_for_column();
  int64_t find_free_slot(int64_t group) const;

  int64_t reserve_;
  int64_t kv_heads_ = 0, head_dim_ = 0;
  torch::Dtype score_dtype_ = torch::kFloat32;
  std::vector<Group> groups_;
  int64_t slots_per_group_ = 0, prefix_capacity_ = 0, columns_ = 0;
  std::map<int64_t, Sequence> sequences_;
  std::vector<int64_t> order_;
  int64_t next_id_ = 0;
  int64_t column_ = 0;  // column written by the next step
  bool groups_changed_ = true;
  std::vector<LayerKV> prefix_;  // per layer: K [kv_heads, G, prefix_capacity_, d] (score dtype), V (model dtype)
  std::vector<LayerKV> own_;     // per layer: K [kv_heads, G * S, columns_, d] (score dtype), V (model dtype)
  // Step state: slot of each row, row of each slot, masks (0 / -inf) and the first column read.
  torch::Tensor row_slot_, slot_row_, prefix_bias_, own_bias_;
  int64_t first_column_ = 0;
};

}  // namespace evoq::model
