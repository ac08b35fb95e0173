#pragma once
// DistributedAdamW's internals, shared by optimizer.cpp (layout, step: torch only) and
// optimizer_state.cpp (save/load in HDF5), so that the step compiles without HDF5 (the GPU acceptance
// tool builds it against plain LibTorch).
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "evoq/dist/communicator.h"
#include "evoq/train/optimizer.h"

namespace evoq::train {
namespace optimizer_detail {

struct Param {
  std::string name;
  torch::Tensor tensor;
  int64_t offset = 0;  // first element in the flat space
  int64_t numel = 0;
  bool needs_master = false;  // non-fp32: updated through an fp32 master copy
};

// Part of one parameter inside the elements this rank owns.
struct Segment {
  std::size_t param = 0;
  int64_t param_off = 0;   // first element inside the parameter
  int64_t len = 0;
  int64_t owned_off = 0;   // position in the owned state arrays (moments, reduced grads)
  int64_t master_off = -1; // position in the master array, -1 when the parameter is fp32
};

struct Bucket {
  int64_t start = 0, len = 0;  // flat range [start, start + len)
  int64_t padded = 0;          // len rounded up to a multiple of the rank count (sharded)
  int64_t own_lo = 0, own_hi = 0;  // owned flat range (inside the bucket)
  int64_t owned_off = 0;           // position of own_lo in the owned state arrays
  std::vector<Segment> segments;
};

}  // namespace optimizer_detail

struct DistributedAdamW::Impl {
  using Param = optimizer_detail::Param;
  using Segment = optimizer_detail::Segment;
  using Bucket = optimizer_detail::Bucket;

  OptimizerConfig config;
  std::shared_ptr<dist::Communicator> comm;
  int rank = 0, world = 1;
  std::vector<Param> params;
  std::vector<Bucket> buckets;
  int64_t numel = 0, owned = 0, master_numel = 0, bucket_elements = 0, max_padded = 0;
  torch::Device device = torch::kCPU;
  torch::Tensor exp_avg, exp_avg_sq, master;  // fp32, owned elements (master: of non-fp32 parameters)
  int64_t steps = 0, adam_t = 0;

  torch::TensorOptions f32() const { return torch::TensorOptions().dtype(torch::kFloat32).device(device); }

  // Calls fn(param index, offset inside the parameter, length, flat offset) for each parameter piece of [lo, hi).
  template <typename Fn>
  void for_each_piece(int64_t lo, int64_t hi, Fn&& fn) const {
    if (lo >= hi) return;
    auto it = std::upper_bound(params.begin(), params.end(), lo,
                               [](int64_t v, const Param& p) { return v < p.offset; });
    std::size_t i = std::size_t(it - params.begin()) - 1;
    for (; i < params.size() && params[i].offset < hi; ++i) {
      const auto& p = params[i];
      const int64_t a = std::max(lo, p.offset), b = std::min(hi, p.offset + p.numel);
      if (a < b) fn(i, a - p.offset, b - a, a);
    }
  }

  torch::Tensor flat_param(std::size_t i) const { return params[i].tensor.detach().view({-1}); }

  void build_layout() {
    bucket_elements = std::max<int64_t>(1, int64_t(config.bucket_mb * 1024.0 * 1024.0 / 4.0));
    const bool sharded = config.shard_state && world > 1;
    for (int64_t start = 0; start < numel; start += bucket_elements) {
      Bucket b;
      b.start = start;
      b.len = std::min(bucket_elements, numel - start);
      if (sharded) {
        b.padded = (b.len + world - 1) / world * world;
        const int64_t chunk = b.padded / world;
        b.own_lo = std::min(b.start + b.len, b.start + rank * chunk);
        b.own_hi = std::min(b.start + b.len, b.start + (rank + 1) * chunk);
      } else {
        b.padded = b.len;
        b.own_lo = b.start;
        b.own_hi = b.start + b.len;
      }
      b.owned_off = owned;
      owned += b.own_hi - b.own_lo;
      for_each_piece(b.own_lo, b.own_hi, [&](std::size_t i, int64_t param_off, int64_t len, int64_t flat) {
        Segment s{i, param_off, len, b.owned_off + (flat - b.own_lo), -1};
        if (params[i].needs_master) {
          s.master_off = master_numel;
          master_numel += len;
        }
        b.segments.push_back(s);
      });
      max_padded = std::max(max_padded, b.padded);
      buckets.push_back(std::move(b));
    }
  }

  void load_masters_from_params() {
    torch::NoGradGuard no_grad;
    for (const auto& b : buckets)
      for (const auto& s : b.segments)
        if (s.master_off >= 0)
          master.narrow(0, s.master_off, s.len).copy_(flat_param(s.param).narrow(0, s.param_off, s.len));
  }

  // The value tensor AdamW updates for a segment: the fp32 master, or the fp32 parameter itself.
  torch::Tensor target(const Segment& s) const {
    if (s.master_off >= 0) return master.narrow(0, s.master_off, s.len);
    return flat_param(s.param).narrow(0, s.param_off, s.len);
  }

  // Packs this rank's gradients of a bucket into buf[0, len) (fp32; undefined grads are zeros).
  void pack_grads(const Bucket& b, torch::Tensor& buf) const {
    buf.zero_();
    for_each_piece(b.start, b.start + b.len, [&](std::size_t i, int64_t param_off, int64_t len, int64_t flat) {
      const auto& g = params[i].tensor.grad();
      if (!g.defined()) return;
      buf.narrow(0, flat - b.start, len).copy_(g.reshape({-1}).narrow(0, param_off, len));
    });
  }
};

}  // namespace evoq::train
