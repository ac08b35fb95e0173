// The NCCL communicator with one rank (bootstrapped without MPI): every collective on several dtypes
// against the values one rank must give, the stream ordering (the collective waits for compute queued
// before it, compute queued after it waits for the collective, the host does not wait), and a clean
// finalize + destroy.
#include <algorithm>
#include <chrono>

#include "accept.h"
#include "evoq/core/error.h"
#include "evoq/dist/communicator.h"

namespace evoq::accept {

#ifdef EVOQ_HAVE_NCCL
namespace {

using Clock = std::chrono::steady_clock;

// With one rank: sum, max, min and mean of one contribution are that contribution.
nlohmann::json check_collectives(dist::Communicator& comm, const torch::Device& device) {
  nlohmann::json out;
  int failures = 0;
  auto expect = [&](const std::string& what, const torch::Tensor& got, const torch::Tensor& want) {
    const bool ok = torch::equal(got.cpu(), want.cpu());
    out[what] = ok;
    if (!ok) ++failures;
  };
  for (auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kInt64}) {
    const std::string name = c10::toString(dtype);
    const auto values = (torch::arange(1000, torch::kFloat64) * 3 - 1500).to(dtype);
    for (auto [op, op_name] : {std::pair{dist::ReduceOp::sum, "sum"}, std::pair{dist::ReduceOp::max, "max"},
                               std::pair{dist::ReduceOp::min, "min"}, std::pair{dist::ReduceOp::mean, "mean"}}) {
      if (op == dist::ReduceOp::mean && dtype == torch::kInt64) continue;  // ncclAvg is for floating types
      auto t = values.to(device);
      comm.all_reduce(t, op);
      expect("all_reduce_" + std::string(op_name) + "_" + name, t, values);
    }
    auto b = values.to(device);
    comm.broadcast(b, 0);
    expect("broadcast_" + name, b, values);
    auto scattered = torch::zeros_like(values).to(device);
    comm.reduce_scatter(values.to(device), scattered, dist::ReduceOp::sum);
    expect("reduce_scatter_" + name, scattered, values);
    auto gathered = torch::zeros_like(values).to(device);
    comm.all_gather(values.to(device), gathered);
    expect("all_gather_" + name, gathered, values);
  }
  out["failures"] = failures;
  return out;
}

// Queues ~300 ms of matrix products on the compute stream, then a fill of `input`, then an out-of-place collective into
// `output`, then a product of `output`: the collective must see the fill (NCCL stream waits for compute) and the
// product must see the collective (compute waits for the NCCL stream), and the call must return long before the queued
// compute ends.
nlohmann::json check_stream_order(dist::Communicator& comm, const torch::Device& device) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  auto a = torch::randn({4096, 4096}, f32);
  auto probe = a.matmul(a);  // warm-up (cuBLAS handle, kernel choice)
  synchronize(device);
  // Time one product, then queue enough of them for ~300 ms.
  auto start = Clock::now();
  probe = a.matmul(a);
  synchronize(device);
  const double one_ms = std::max(1e-3, 1e3 * seconds_since(start));
  const int products = int(std::min(2000.0, std::max(4.0, 300.0 / one_ms)));

  auto input = torch::zeros({1 << 20}, f32);
  auto output = torch::full({1 << 20}, -1.0, f32);
  start = Clock::now();
  for (int i = 0; i < products; ++i) probe = a.matmul(a);
  input.fill_(1.0);  // runs after the products (same stream)
  const auto call_start = Clock::now();
  comm.reduce_scatter(input, output, dist::ReduceOp::sum);
  const double call_ms = 1e3 * seconds_since(call_start);
  auto after = output * 2.0;  // queued after the collective on the compute stream
  const double total = after.sum().item<double>();  // host waits here, for everything
  const double queued_ms = 1e3 * seconds_since(start);
  const double want = 2.0 * double(1 << 20);
  return {{"products", products},
          {"queued_compute_ms", queued_ms},
          {"collective_call_ms", call_ms},
          {"host_not_blocked", call_ms < 0.25 * queued_ms},
          {"ordered", total == want},
          {"result", total},
          {"expected", want}};
}

}  // namespace

nlohmann::json run_nccl(Context& ctx) {
  if (!ctx.device.is_cuda()) return {{"skipped", "needs --device cuda"}};
  const double timeout = ctx.options.number("nccl-timeout");
  auto start = Clock::now();
  auto comm = dist::make_nccl(dist::single_process(), timeout);
  nlohmann::json out;
  out["init_seconds"] = seconds_since(start);
  out["backend"] = comm->backend();
  out["collectives"] = check_collectives(*comm, ctx.device);
  out["stream_order"] = check_stream_order(*comm, ctx.device);
  start = Clock::now();
  comm.reset();  // ncclCommFinalize until settled, then ncclCommDestroy
  out["end_seconds"] = seconds_since(start);
  const bool ok = out["collectives"]["failures"] == 0 && out["stream_order"]["ordered"].get<bool>() &&
                  out["stream_order"]["host_not_blocked"].get<bool>();
  out["pass"] = ok;
  return out;
}
#else
nlohmann::json run_nccl(Context&) { return {{"skipped", "this build has no NCCL (EVOQ_HAVE_NCCL off)"}}; }
#endif

}  // namespace evoq::accept
