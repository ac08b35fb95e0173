#include "evoq/model/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "evoq/core/error.h"
#include "evoq/model/cpu_kernels.h"

namespace evoq::model {

namespace {
constexpr float kMasked = -std::numeric_limits<float>::infinity();
}  // namespace

DecodeBatch::DecodeBatch(int64_t reserve) : reserve_(std::max<int64_t>(reserve, 1)) {}

DecodeBatch::DecodeBatch(std::vector<PrefixGroup> groups, int64_t reserve) : DecodeBatch(reserve) {
  for (auto& g : groups) {
    EVOQ_CHECK(g.prefix, "DecodeBatch: a group has no prefix cache");
    if (g.count > 0) add(g.prefix, g.count);
  }
  EVOQ_CHECK(!order_.empty(), "DecodeBatch: no sequences");
}

void DecodeBatch::allocate(const PrefixCache& like) {
  EVOQ_CHECK(!like.layers.empty() && like.layers.front().k.defined(), "DecodeBatch: empty prefix cache");
  const auto& k = like.layers.front().k;
  kv_heads_ = k.size(1);
  head_dim_ = k.size(3);
  score_dtype_ = k.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  columns_ = reserve_;
  prefix_.resize(like.layers.size());
  own_.resize(like.layers.size());
  for (size_t l = 0; l < like.layers.size(); ++l) {
    const auto& v = like.layers[l].v;
    auto k_opts = v.options().dtype(score_dtype_);
    prefix_[l] = {torch::zeros({kv_heads_, 0, 0, head_dim_}, k_opts),
                  torch::zeros({kv_heads_, 0, 0, head_dim_}, v.options())};
    own_[l] = {torch::zeros({kv_heads_, 0, columns_, head_dim_}, k_opts),
               torch::zeros({kv_heads_, 0, columns_, head_dim_}, v.options())};
  }
}

// Growth re-allocates and copies; group rows double (their number changes as prompts are admitted
// one by one), slots and prefix length grow to what is needed (they change rarely).
void DecodeBatch::grow_groups(int64_t groups) {
  const int64_t old = static_cast<int64_t>(groups_.size()), s = slots_per_group_;
  for (auto* set : {&prefix_, &own_})
    for (auto& kv : *set)
      for (auto* t : {&kv.k, &kv.v}) {
        auto sizes = t->sizes().vec();
        const bool own = set == &own_;
        sizes[1] = own ? groups * s : groups;
        auto grown = torch::zeros(sizes, t->options());
        grown.narrow(1, 0, own ? old * s : old).copy_(*t);
        *t = grown;
      }
  groups_.resize(static_cast<size_t>(groups));
  groups_changed_ = true;
}

void DecodeBatch::grow_prefix_length(int64_t length) {
  for (auto& kv : prefix_)
    for (auto* t : {&kv.k, &kv.v}) {
      auto grown = torch::zeros({kv_heads_, t->size(1), length, head_dim_}, t->options());
      grown.narrow(2, 0, prefix_capacity_).copy_(*t);
      *t = grown;
    }
  prefix_capacity_ = length;
  groups_changed_ = true;
}

void DecodeBatch::grow_slots(int64_t slots) {
  const int64_t g = static_cast<int64_t>(groups_.size());
  for (auto& kv : own_)
    for (auto* t : {&kv.k, &kv.v}) {
      auto grown = torch::zeros({kv_heads_, g * slots, columns_, head_dim_}, t->options());
      grown.view({kv_heads_, g, slots, columns_, head_dim_})
          .narrow(2, 0, slots_per_group_)
          .copy_(t->view({kv_heads_, g, slots_per_group_, columns_, head_dim_}));
      *t = grown;
    }
  slots_per_group_ = slots;
}

int64_t DecodeBatch::find_free_slot(int64_t group) const {
  std::vector<bool> used(static_cast<size_t>(slots_per_group_), false);
  for (const auto& [id, s] : sequences_)
    if (s.group == group) used[static_cast<size_t>(s.slot)] = true;
  for (int64_t i = 0; i < slots_per_group_; ++i)
    if (!used[static_cast<size_t>(i)]) return i;
  return -1;
}

std::vector<int64_t> DecodeBatch::add(const std::shared_ptr<const PrefixCache>& prefix, int64_t count) {
  EVOQ_CHECK(prefix, "DecodeBatch: a group has no prefix cache");
  EVOQ_CHECK(count >= 1, "DecodeBatch::add: count must be >= 1");
  if (prefix_.empty()) allocate(*prefix);
  EVOQ_CHECK(prefix->layers.size() == prefix_.size() && prefix->layers.front().k.size(1) == kv_heads_ &&
                 prefix->layers.front().k.size(3) == head_dim_,
             "DecodeBatch: prefix caches of different models");
  if (sequences_.empty()) column_ = 0;  // nothing live: every column is free again

  int64_t g = -1;
  for (size_t i = 0; i < groups_.size() && g < 0; ++i)
    if (groups_[i].prefix == prefix) g = static_cast<int64_t>(i);
  if (g < 0) {
    for (size_t i = 0; i < groups_.size() && g < 0; ++i)
      if (!groups_[i].prefix) g = static_cast<int64_t>(i);
    if (g < 0) {
      g = static_cast<int64_t>(groups_.size());
      grow_groups(std::max<int64_t>(1, 2 * g));
    }
    if (prefix->length > prefix_capacity_) grow_prefix_length(prefix->length);
    torch::NoGradGuard no_grad;
    for (size_t l = 0; l < prefix_.size(); ++l) {
      const auto& kv = prefix->layers[l];
      prefix_[l].k.select(1, g).narrow(1, 0, prefix->length).copy_(kv.k[0]);
      prefix_[l].v.select(1, g).narrow(1, 0, prefix->length).copy_(kv.v[0]);
    }
    groups_[static_cast<size_t>(g)] = {prefix, 0};
    groups_changed_ = true;
  }
  const int64_t needed = groups_[static_cast<size_t>(g)].live + count;
  if (needed > slots_per_group_) grow_slots(needed);

  std::vector<int64_t> ids;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t id = next_id_++, slot = find_free_slot(g);
    EVOQ_CHECK(slot >= 0, "internal error: DecodeBatch group ", g, " has no free slot");
    sequences_.emplace(id, Sequence{g, slot, column_});
    order_.push_back(id);
    ids.push_back(id);
  }
  groups_[static_cast<size_t>(g)].live += count;
  return ids;
}

void DecodeBatch::remove(int64_t sequence) {
  auto it = sequences_.find(sequence);
  EVOQ_CHECK(it != sequences_.end(), "DecodeBatch::remove: unknown sequence ", sequence);
  auto& group = groups_[static_cast<size_t>(it->second.group)];
  if (--group.live == 0) {
    group.prefix.reset();  // the row is free for another prompt
    groups_changed_ = true;
  }
  sequences_.erase(it);
  order_.erase(std::find(order_.begin(), order_.end(), sequence));
}

void DecodeBatch::set_order(const std::vector<int64_t>& sequences) {
  EVOQ_CHECK(sequences.size() == sequences_.size(), "DecodeBatch::set_order: ", sequences.size(),
             " sequences given but ", sequences_.size(), " are live");
  std::vector<int64_t> sorted = sequences;
  std::sort(sorted.begin(), sorted.end());
  EVOQ_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(),
             "DecodeBatch::set_order: repeated sequence");
  for (int64_t s : sorted) EVOQ_CHECK(sequences_.count(s), "DecodeBatch::set_order: unknown sequence ", s);
  order_ = sequences;
}

void DecodeBatch::keep(const std::vector<int64_t>& rows) {
  int64_t last = -1;
  for (int64_t r : rows) {
    EVOQ_CHECK(r > last && r < size(), "DecodeBatch::keep: rows must be ascending and < ", size());
    last = r;
  }
  std::vector<int64_t> gone;
  size_t next = 0;
  for (int64_t r = 0; r < size(); ++r) {
    if (next < rows.size() && rows[next] == r) ++next;
    else gone.push_back(order_[static_cast<size_t>(r)]);
  }
  for (int64_t s : gone) remove(s);
}

int64_t DecodeBatch::num_groups() const {
  return std::count_if(groups_.begin(), groups_.end(), [](const Group& g) { return g.prefix != nullptr; });
}

torch::Tensor DecodeBatch::next_positions() const {
  std::vector<int64_t> pos;
  pos.reserve(order_.size());
  for (int64_t id : order_) {
    const auto& s = sequences_.at(id);
    const auto& p = *groups_[static_cast<size_t>(s.group)].prefix;
    pos.push_back(p.length + column_ - s.start + p.rope_delta);
  }
  return torch::tensor(pos, torch::kInt64);
}

// Before a step writes column_: if it is past the capacity, columns no live sequence reads are
// dropped (shifted out), and only then is the capacity doubled.
void DecodeBatch::make_room_for_column() {
  if (column_ < columns_) return;
  int64_t first = column_;
  for (const auto& [id, s] : sequences_) first = std::min(first, s.start);
  torch::NoGradGuard no_grad;
  if (first > 0) {
    const int64_t kept = column_ - first;
    for (auto& kv : own_)
      for (auto* t : {&kv.k, &kv.v})
        if (kept > 0) t->narrow(2, 0, kept).copy_(t->narrow(2, first, kept).clone());
    for (auto& [id, s] : sequences_) s.start -= first;
    column_ -= first;
  }
  if (column_ < columns_) return;
  const int64_t grown_columns = std::max<int64_t>(2 * columns_, column_ + 1);
  for (auto& kv : own_)
    for (auto* t : {&kv.k, &kv.v}) {
      auto grown = torch::zeros({kv_heads_, t->size(1), grown_columns, head_dim_}, t->options());
      grown.narrow(2, 0, columns_).copy_(*t);
      *t = grown;
    }
  columns_ = grown_columns;
}

void DecodeBatch::begin_step() {
  EVOQ_CHECK(!order_.empty(), "DecodeBatch: no sequences to decode");
  make_room_for_column();
  const int64_t g = static_cast<int64_t>(groups_.size()), s = slots_per_group_, slots = g * s;
  first_column_ = column_;
  for (const auto& [id, seq] : sequences_) first_column_ = std::min(first_column_, seq.start);
  const int64_t width = column_ + 1 - first_column_;
  const auto device = own_.front().k.device();

  std::vector<int64_t> row_slot(order_.size()), slot_row(static_cast<size_t>(slots), 0);
  std::vector<float> own_bias(static_cast<size_t>(slots * width), kMasked);
  for (size_t r = 0; r < order_.size(); ++r) {
    const auto& seq = sequences_.at(order_[r]);
    const int64_t slot = seq.group * s + seq.slot;
    row_slot[r] = slot;
    slot_row[static_cast<size_t>(slot)] = static_cast<int64_t>(r);
    // Own columns: from the sequence's first token to the one fed now.
    std::fill(own_bias.begin() + slot * width + (seq.start - first_column_), own_bias.begin() + (slot + 1) * width,
              0.0f);
  }
  row_slot_ = torch::tensor(row_slot, torch::kInt64).to(device);
  slot_row_ = torch::tensor(slot_row, torch::kInt64).to(device);
  auto bias_opts = torch::TensorOptions().dtype(score_dtype_).device(device);
  // copy = true: the host vectors die here (to() alone would alias them when the dtypes match).
  own_bias_ = torch::from_blob(own_bias.data(), {1, slots, 1, width}, torch::kFloat32)
                  .to(bias_opts, /*non_blocking=*/false, /*copy=*/true)
                  .expand({kv_heads_, slots, 1, width})
                  .reshape({kv_heads_ * slots, 1, width});
  if (groups_changed_) {
    // Each group's prompt columns; a free row reads its (finite) stale keys so that no row is empty.
    std::vector<float> bias(static_cast<size_t>(g * prefix_capacity_), 0.0f);
    for (int64_t i = 0; i < g; ++i)
      if (const auto& p = groups_[static_cast<size_t>(i)].prefix)
        std::fill(bias.begin() + i * prefix_capacity_ + p->length, bias.begin() + (i + 1) * prefix_capacity_, kMasked);
    prefix_bias_ = torch::from_blob(bias.data(), {1, g, 1, prefix_capacity_}, torch::kFloat32)
                       .to(bias_opts, /*non_blocking=*/false, /*copy=*/true)
                       .expand({kv_heads_, g, 1, prefix_capacity_})
                       .reshape({kv_heads_ * g, 1, prefix_capacity_});
    groups_changed_ = false;
  }
}

torch::Tensor DecodeBatch::attend(int64_t layer, const torch::Tensor& q, const torch::Tensor& k_new,
                                  const torch::Tensor& v_new) {
  auto& own = own_[static_cast<size_t>(layer)];
  const auto& pre = prefix_[static_cast<size_t>(layer)];
  const int64_t b = q.size(0), heads = q.size(1), d = head_dim_, kvh = kv_heads_, rep = heads / kvh;
  const int64_t g = static_cast<int64_t>(groups_.size()), s = slots_per_group_, slots = g * s;
  const int64_t lp = prefix_capacity_, width = column_ + 1 - first_column_;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));

  own.k.select(2, column_).index_copy_(1, row_slot_, k_new.transpose(0, 1));
  own.v.select(2, column_).index_copy_(1, row_slot_, v_new.transpose(0, 1));
  // Queries by slot: [kv_heads, slots, rep, d]; a group's slots are contiguous, so per kv head and
  // group they are the rows of one matrix against that group's prompt.
  auto qs = q.reshape({b, kvh, rep, d}).permute({1, 0, 2, 3}).index_select(1, slot_row_);
  auto prompt = at::baddbmm(prefix_bias_, qs.view({kvh * g, s * rep, d}),
                            pre.k.view({kvh * g, lp, d}).transpose(1, 2), 1.0, scale);  // [kvh*g, s*rep, lp]
  auto own_k = own.k.narrow(2, first_column_, width).view({kvh * slots, width, d});
  auto mine = at::baddbmm(own_bias_, qs.view({kvh * slots, rep, d}), own_k.transpose(1, 2), 1.0, scale);
  auto prompt_scores = prompt.view({kvh * slots, rep, lp});
  torch::Tensor probs;
  if (own.v.scalar_type() == torch::kBFloat16)  // bf16 on the CPU: cat, softmax and cast in one pass
    if (auto fused = cpu_softmax_bf16(prompt_scores, mine)) probs = *fused;
  if (!probs.defined()) {
    probs = torch::cat({prompt_scores, mine}, -1).softmax(-1);
    if (probs.scalar_type() != own.v.scalar_type()) probs = probs.to(own.v.scalar_type());
  }
  auto out = at::bmm(probs.narrow(-1, 0, lp).view({kvh * g, s * rep, lp}), pre.v.view({kvh * g, lp, d}))
                 .view({kvh * slots, rep, d});
  out.baddbmm_(probs.narrow(-1, lp, width), own.v.narrow(2, first_column_, width).view({kvh * slots, width, d}));
  return out.view({kvh, slots, rep, d}).permute({1, 0, 2, 3}).index_select(0, row_slot_).view({b, heads * d});
}

void DecodeBatch::advance() { ++column_; }

}  // namespace evoq::model
