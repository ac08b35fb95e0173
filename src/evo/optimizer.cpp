#include "evoq/evo/optimizer.h"

#include <H5Cpp.h>

#include <algorithm>
#include <cmath>

#include "evoq/core/error.h"
#include "evoq/dist/communicator.h"
#include "evoq/io/h5.h"

namespace evoq::evo {

namespace h5 = io::h5;
namespace {

constexpr const char* kStateFormat = "evoq-optimizer-state";
constexpr int64_t kStateVersion = 1;

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

void write_float_tensor(H5::Group& where, const std::string& name, const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  h5::write_raw(where, name, H5::PredType::NATIVE_FLOAT, c.data_ptr<float>(), std::uint64_t(c.numel()));
}

torch::Tensor read_float_tensor(const H5::Group& where, const std::string& name, int64_t expected,
                                const std::string& path) {
  EVOQ_CHECK(where.nameExists(name), path, ": optimizer state has no dataset '", name, "'");
  const auto n = h5::dataset_length(where, name);
  EVOQ_CHECK(int64_t(n) == expected, path, ": dataset '", name, "' has ", n, " elements, this run needs ", expected);
  auto t = torch::empty({expected}, torch::kFloat32);
  h5::read_raw(where, name, H5::PredType::NATIVE_FLOAT, t.data_ptr<float>(), n);
  return t;
}

}  // namespace

struct DistributedAdamW::Impl {
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
        if (s.master_off >= 0) master.narrow(0, s.master_off, s.len).copy_(flat_param(s.param).narrow(0, s.param_off, s.len));
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

DistributedAdamW::DistributedAdamW(std::vector<std::pair<std::string, torch::Tensor>> params, OptimizerConfig config,
                                   std::shared_ptr<dist::Communicator> comm)
    : impl_(std::make_unique<Impl>()) {
  auto& m = *impl_;
  EVOQ_CHECK(comm != nullptr, "DistributedAdamW needs a communicator");
  EVOQ_CHECK(config.total_steps >= 1, "optimizer: total_steps must be >= 1 (got ", config.total_steps, ")");
  EVOQ_CHECK(config.warmup_steps >= 0, "optimizer: warmup_steps must be >= 0");
  EVOQ_CHECK(config.bucket_mb > 0, "optimizer: bucket_mb must be > 0");
  m.config = config;
  m.comm = std::move(comm);
  m.rank = m.comm->rank();
  m.world = m.comm->size();
  for (auto& [name, t] : params) {
    EVOQ_CHECK(t.defined(), "optimizer: parameter ", name, " is undefined");
    const auto dt = t.scalar_type();
    EVOQ_CHECK(dt == torch::kFloat32 || dt == torch::kBFloat16 || dt == torch::kFloat16, "optimizer: parameter ", name,
               " has dtype ", c10::toString(dt), " (fp32, bf16 or fp16 expected)");
    EVOQ_CHECK(t.is_contiguous(), "optimizer: parameter ", name, " is not contiguous");
    if (m.params.empty()) m.device = t.device();
    EVOQ_CHECK(t.device() == m.device, "optimizer: parameter ", name, " is on ", t.device(), ", others on ", m.device);
    Param p{name, t, m.numel, t.numel(), dt != torch::kFloat32};
    m.numel += p.numel;
    m.params.push_back(std::move(p));
  }
  m.build_layout();
  m.exp_avg = torch::zeros({m.owned}, m.f32());
  m.exp_avg_sq = torch::zeros({m.owned}, m.f32());
  m.master = torch::zeros({m.master_numel}, m.f32());
  m.load_masters_from_params();
}

DistributedAdamW::~DistributedAdamW() = default;

double DistributedAdamW::lr_at(int64_t step) const {
  const auto& c = impl_->config;
  double factor;
  if (step < c.warmup_steps)
    factor = double(step) / double(std::max<int64_t>(1, c.warmup_steps));
  else
    factor = std::max(0.0, double(c.total_steps - step) / double(std::max<int64_t>(1, c.total_steps - c.warmup_steps)));
  return c.lr * factor;
}

int64_t DistributedAdamW::steps_taken() const { return impl_->steps; }
int64_t DistributedAdamW::adam_steps() const { return impl_->adam_t; }
const OptimizerConfig& DistributedAdamW::config() const { return impl_->config; }
void DistributedAdamW::set_total_steps(int64_t total_steps) {
  EVOQ_CHECK(total_steps >= 1, "optimizer: total_steps must be >= 1 (got ", total_steps, ")");
  impl_->config.total_steps = total_steps;
}
void DistributedAdamW::reload_from_params() { impl_->load_masters_from_params(); }
int64_t DistributedAdamW::numel() const { return impl_->numel; }
int64_t DistributedAdamW::owned_numel() const { return impl_->owned; }
std::size_t DistributedAdamW::state_bytes() const { return std::size_t(2 * impl_->owned + impl_->master_numel) * 4; }

void DistributedAdamW::zero_grad() {
  for (auto& p : impl_->params) p.tensor.mutable_grad() = torch::Tensor();
}

StepReport DistributedAdamW::step() {
  auto& m = *impl_;
  torch::NoGradGuard no_grad;
  const bool sharded = m.config.shard_state && m.world > 1;
  StepReport report;
  report.step = m.steps;
  report.lr = lr_at(m.steps);

  // 1. Sum the gradients over ranks, bucket by bucket, keeping the elements this rank owns (fp32).
  auto grads = torch::empty({m.owned}, m.f32());
  auto buf = torch::empty({m.max_padded}, m.f32());
  for (const auto& b : m.buckets) {
    auto view = buf.narrow(0, 0, b.padded);
    m.pack_grads(b, view);
    const int64_t own = b.own_hi - b.own_lo;
    if (sharded) {
      auto chunk = torch::empty({b.padded / m.world}, m.f32());
      m.comm->reduce_scatter(view, chunk, dist::ReduceOp::sum);
      if (own > 0) grads.narrow(0, b.owned_off, own).copy_(chunk.narrow(0, 0, own));
    } else {
      if (m.world > 1) m.comm->all_reduce(view, dist::ReduceOp::sum);
      grads.narrow(0, b.owned_off, own).copy_(view.narrow(0, 0, own));
    }
  }

  // 2. Global L2 norm: per-bucket fp32 norms, squared and summed in fp64 on the device (one host
  // sync per step); sharded: all-reduced over the owners.
  auto sumsq = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat64).device(m.device));
  for (const auto& b : m.buckets) {
    const int64_t own = b.own_hi - b.own_lo;
    if (own > 0) sumsq.add_(grads.narrow(0, b.owned_off, own).norm().to(torch::kFloat64).square());
  }
  if (sharded) m.comm->all_reduce(sumsq, dist::ReduceOp::sum);
  report.grad_norm = std::sqrt(sumsq.cpu().item<double>());
  if (!std::isfinite(report.grad_norm)) {  // NaN/Inf anywhere: identical on every rank after the sum
    report.nonfinite = true;
    ++m.steps;
    zero_grad();
    return report;
  }
  // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6), capped at 1.
  if (m.config.max_grad_norm > 0) {
    const double coef = std::min(1.0, m.config.max_grad_norm / (report.grad_norm + 1e-6));
    grads.mul_(coef);
  }

  // 3. AdamW on the owned elements (torch.optim.AdamW: decay first, then the bias-corrected update).
  ++m.adam_t;
  const auto& c = m.config;
  const double lr = report.lr;
  const double bc1 = 1.0 - std::pow(c.beta1, double(m.adam_t));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(c.beta2, double(m.adam_t)));
  const double step_size = lr / bc1;
  m.exp_avg.lerp_(grads, 1.0 - c.beta1);
  m.exp_avg_sq.mul_(c.beta2).addcmul_(grads, grads, 1.0 - c.beta2);
  grads = torch::Tensor();
  for (const auto& b : m.buckets) {
    const int64_t own = b.own_hi - b.own_lo;
    if (own == 0) continue;
    // The denominator one bucket at a time (bounded scratch memory).
    auto denom = (m.exp_avg_sq.narrow(0, b.owned_off, own).sqrt() / bc2_sqrt).add_(c.eps);
    for (const auto& s : b.segments) {
      auto x = m.target(s);
      if (c.weight_decay != 0.0) x.mul_(1.0 - lr * c.weight_decay);
      x.addcdiv_(m.exp_avg.narrow(0, s.owned_off, s.len), denom.narrow(0, s.owned_off - b.owned_off, s.len),
                 -step_size);
      if (!sharded && s.master_off >= 0) m.flat_param(s.param).narrow(0, s.param_off, s.len).copy_(x);
    }
  }

  // 4. Sharded: every rank receives the updated values of the elements the others own.
  if (sharded) {
    for (const auto& b : m.buckets) {
      const int64_t chunk_len = b.padded / m.world;
      auto chunk = torch::zeros({chunk_len}, m.f32());
      for (const auto& s : b.segments) chunk.narrow(0, s.owned_off - b.owned_off, s.len).copy_(m.target(s));
      auto gathered = buf.narrow(0, 0, b.padded);
      m.comm->all_gather(chunk, gathered);
      m.for_each_piece(b.start, b.start + b.len, [&](std::size_t i, int64_t param_off, int64_t len, int64_t flat) {
        m.flat_param(i).narrow(0, param_off, len).copy_(gathered.narrow(0, flat - b.start, len));
      });
    }
  }
  ++m.steps;
  zero_grad();
  report.applied = true;
  return report;
}

void DistributedAdamW::save_state(const std::string& h5_path) const {
  const auto& m = *impl_;
  std::vector<std::string> names;
  std::vector<int64_t> sizes;
  for (const auto& p : m.params) {
    names.push_back(p.name);
    sizes.push_back(p.numel);
  }
  h5::write_file_atomic(h5_path, [&](H5::H5File& f) {
    h5::set_attr(f, "format", std::string(kStateFormat));
    h5::set_attr(f, "version", kStateVersion);
    h5::set_attr(f, "rank", int64_t(m.rank));
    h5::set_attr(f, "world_size", int64_t(m.world));
    h5::set_attr(f, "sharded", int64_t(m.config.shard_state && m.world > 1));
    h5::set_attr(f, "bucket_elements", m.bucket_elements);
    h5::set_attr(f, "numel", m.numel);
    h5::set_attr(f, "owned_numel", m.owned);
    h5::set_attr(f, "master_numel", m.master_numel);
    h5::set_attr(f, "steps_taken", m.steps);
    h5::set_attr(f, "adam_steps", m.adam_t);
    h5::set_attr(f, "written", h5::utc_now());
    h5::write_strings(f, "param_names", names);
    h5::write_vector(f, "param_numel", sizes);
    write_float_tensor(f, "exp_avg", m.exp_avg);
    write_float_tensor(f, "exp_avg_sq", m.exp_avg_sq);
    write_float_tensor(f, "master", m.master);
  });
}

void DistributedAdamW::load_state(const std::string& h5_path) {
  auto& m = *impl_;
  auto f = h5::open_read(h5_path);
  try {
    EVOQ_CHECK(h5::has_attr(f, "format") && h5::get_attr_string(f, "format") == kStateFormat, h5_path,
               ": not an evoq optimizer state file");
    EVOQ_CHECK(h5::get_attr_int(f, "version") == kStateVersion, h5_path, ": unsupported optimizer state version ",
               h5::get_attr_int(f, "version"));
    auto expect = [&](const char* key, int64_t want, const char* what) {
      const int64_t got = h5::get_attr_int(f, key);
      EVOQ_CHECK(got == want, h5_path, ": ", what, " is ", got, " in the file but ", want, " in this run");
    };
    expect("world_size", m.world, "the rank count");
    expect("rank", m.rank, "the rank");
    expect("sharded", int64_t(m.config.shard_state && m.world > 1), "optimizer-state sharding");
    expect("numel", m.numel, "the trainable element count");
    if (m.config.shard_state && m.world > 1) expect("bucket_elements", m.bucket_elements, "the bucket size (elements)");
    expect("owned_numel", m.owned, "this rank's owned element count");
    expect("master_numel", m.master_numel, "the fp32 master element count");
    const auto names = h5::read_strings(f, "param_names");
    const auto sizes = h5::read_vector<int64_t>(f, "param_numel");
    EVOQ_CHECK(names.size() == m.params.size() && sizes.size() == m.params.size(), h5_path, ": the file has ",
               names.size(), " parameters, this run trains ", m.params.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
      EVOQ_CHECK(names[i] == m.params[i].name, h5_path, ": parameter ", i, " is ", names[i], " in the file but ",
                 m.params[i].name, " in this run");
      EVOQ_CHECK(sizes[i] == m.params[i].numel, h5_path, ": parameter ", names[i], " has ", sizes[i],
                 " elements in the file but ", m.params[i].numel, " in this run");
    }
    auto exp_avg = read_float_tensor(f, "exp_avg", m.owned, h5_path);
    auto exp_avg_sq = read_float_tensor(f, "exp_avg_sq", m.owned, h5_path);
    auto master = read_float_tensor(f, "master", m.master_numel, h5_path);
    m.exp_avg.copy_(exp_avg);
    m.exp_avg_sq.copy_(exp_avg_sq);
    m.master.copy_(master);
    m.steps = h5::get_attr_int(f, "steps_taken");
    m.adam_t = h5::get_attr_int(f, "adam_steps");
  } catch (const H5::Exception& e) {
    fail(h5_path, ": cannot read optimizer state (", e.getDetailMsg(), ")");
  }
  // Parameters of the non-fp32 kind are the rounded masters; make them agree exactly.
  torch::NoGradGuard no_grad;
  for (const auto& b : m.buckets)
    for (const auto& s : b.segments)
      if (s.master_off >= 0 && !(m.config.shard_state && m.world > 1))
        m.flat_param(s.param).narrow(0, s.param_off, s.len).copy_(m.master.narrow(0, s.master_off, s.len));
}

}  // namespace evoq::evo
