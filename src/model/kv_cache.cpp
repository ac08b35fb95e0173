#include "evoq/model/kv_cache.h"

#include <cmath>

#include "evoq/core/error.h"

namespace evoq::model {

DecodeBatch::DecodeBatch(std::vector<PrefixGroup> groups, int64_t reserve) : reserve_(std::max<int64_t>(reserve, 1)) {
  for (auto& g : groups) {
    EVOQ_CHECK(g.prefix, "DecodeBatch: a group has no prefix cache");
    if (g.count > 0) groups_.push_back(std::move(g));
  }
  EVOQ_CHECK(!groups_.empty(), "DecodeBatch: no sequences");
  suffix_.resize(groups_.front().prefix->layers.size());
}

int64_t DecodeBatch::size() const {
  int64_t n = 0;
  for (const auto& g : groups_) n += g.count;
  return n;
}

std::vector<int64_t> DecodeBatch::row_groups() const {
  std::vector<int64_t> rows;
  for (size_t g = 0; g < groups_.size(); ++g) rows.insert(rows.end(), groups_[g].count, static_cast<int64_t>(g));
  return rows;
}

torch::Tensor DecodeBatch::next_positions() const {
  std::vector<int64_t> pos;
  for (const auto& g : groups_)
    pos.insert(pos.end(), g.count, g.prefix->length + suffix_len_ + g.prefix->rope_delta);
  return torch::tensor(pos, torch::kInt64);
}

void DecodeBatch::keep(const std::vector<int64_t>& rows) {
  const auto owner = row_groups();
  std::vector<int64_t> counts(groups_.size(), 0);
  int64_t last = -1;
  for (int64_t r : rows) {
    EVOQ_CHECK(r > last && r < static_cast<int64_t>(owner.size()), "DecodeBatch::keep: rows must be ascending and < ",
               owner.size());
    ++counts[owner[r]];
    last = r;
  }
  std::vector<PrefixGroup> kept;
  for (size_t g = 0; g < groups_.size(); ++g)
    if (counts[g] > 0) kept.push_back({groups_[g].prefix, counts[g]});
  groups_ = std::move(kept);
  if (!suffix_.empty() && suffix_.front().k.defined()) {
    auto index = torch::tensor(rows, torch::kInt64).to(suffix_.front().k.device());
    for (auto& s : suffix_) {
      s.k = s.k.index_select(0, index);
      s.v = s.v.index_select(0, index);
    }
  }
}

void DecodeBatch::ensure_capacity(int64_t layer, const torch::Tensor& like) {
  auto& s = suffix_[layer];
  const int64_t b = like.size(0), kvh = like.size(1), d = like.size(3);
  if (!s.k.defined()) {
    s.k = torch::zeros({b, kvh, reserve_, d}, like.options());
    s.v = torch::zeros({b, kvh, reserve_, d}, like.options());
  }
  EVOQ_CHECK(s.k.size(0) == b, "DecodeBatch: step has ", b, " sequences but the batch has ", s.k.size(0));
  if (suffix_len_ >= s.k.size(2)) {
    auto grow = torch::zeros({b, kvh, s.k.size(2), d}, like.options());
    s.k = torch::cat({s.k, grow}, 2);
    s.v = torch::cat({s.v, grow}, 2);
  }
}

// Softmax pieces of one key segment: running max m, sum of exp l, unnormalised output o (fp32).
struct Partial {
  torch::Tensor m, l, o;
};

static Partial partial_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale) {
  const auto acc = q.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;  // at least fp32
  auto scores = torch::matmul(q, k.transpose(-1, -2)).to(acc) * scale;
  auto m = std::get<0>(scores.max(-1, /*keepdim=*/true));
  auto e = torch::exp(scores - m);
  return {m, e.sum(-1, true), torch::matmul(e.to(v.scalar_type()), v).to(acc)};
}

torch::Tensor DecodeBatch::attend(int64_t layer, const torch::Tensor& q, const torch::Tensor& k_new,
                                  const torch::Tensor& v_new) {
  ensure_capacity(layer, k_new);
  auto& s = suffix_[layer];
  s.k.narrow(2, suffix_len_, 1).copy_(k_new);
  s.v.narrow(2, suffix_len_, 1).copy_(v_new);
  const int64_t b = q.size(0), heads = q.size(1), d = q.size(3), kvh = k_new.size(1), rep = heads / kvh;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  auto qg = q.reshape({b, kvh, rep, d});

  // Each sequence's own tokens.
  auto own = partial_attention(qg, s.k.narrow(2, 0, suffix_len_ + 1), s.v.narrow(2, 0, suffix_len_ + 1), scale);

  // The shared prompt: all queries of a group against its prefix in one matmul per kv head.
  std::vector<torch::Tensor> ms, ls, os;
  int64_t offset = 0;
  for (const auto& g : groups_) {
    const auto& kv = g.prefix->layers[layer];
    const int64_t n = g.count;
    auto qp = qg.narrow(0, offset, n).permute({1, 0, 2, 3}).reshape({kvh, n * rep, d});
    auto p = partial_attention(qp, kv.k[0], kv.v[0], scale);  // [kvh, n*rep, *]
    auto back = [&](const torch::Tensor& t) { return t.view({kvh, n, rep, t.size(-1)}).permute({1, 0, 2, 3}); };
    ms.push_back(back(p.m));
    ls.push_back(back(p.l));
    os.push_back(back(p.o));
    offset += n;
  }
  auto m_p = torch::cat(ms, 0), l_p = torch::cat(ls, 0), o_p = torch::cat(os, 0);
  // Joint softmax over both segments.
  auto m = torch::maximum(m_p, own.m);
  auto a_p = torch::exp(m_p - m), a_s = torch::exp(own.m - m);
  auto out = (o_p * a_p + own.o * a_s) / (l_p * a_p + own.l * a_s);
  return out.to(q.scalar_type()).reshape({b, heads, 1, d});
}

}  // namespace evoq::model
