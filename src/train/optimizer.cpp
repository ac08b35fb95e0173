// DistributedAdamW: parameter layout and the step (torch only); saving and loading its state is in
// optimizer_state.cpp.
#include "evoq/train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "evoq/core/error.h"
#include "evoq/dist/communicator.h"
#include "optimizer_impl.h"

namespace evoq::train {

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
    Impl::Param p{name, t, m.numel, t.numel(), dt != torch::kFloat32};
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

}  // namespace evoq::train
