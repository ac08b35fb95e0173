// NCCL backend of the Communicator (CUDA tensors). Compiled only when the CUDA toolkit, NCCL and a
// CUDA build of torch are present (EVOQ_HAVE_NCCL). It has not run on a GPU yet; the rules for NCCL's
// result codes live in nccl_status.h and are unit-tested on the CPU.
//
// What it does, and how that compares with PyTorch's ProcessGroupNCCL (read for behaviour, not copied):
//  * Bootstrap: rank 0 creates the ncclUniqueId, the bootstrap communicator (MPI, or the single-process
//    one of the GPU acceptance tool) broadcasts it, each rank binds the GPU of its local rank.
//  * Non-blocking communicator (config.blocking = 0), as PyTorch's nonblocking mode: init and every
//    collective may answer ncclInProgress, and the state is then polled with ncclCommGetAsyncError
//    until it settles (sleeping between polls at init/finalize, yielding for collectives), bounded by
//    the timeout. That keeps a hung peer from freezing a rank inside an NCCL call.
//  * Streams: each collective runs on this communicator's own NCCL stream. The NCCL stream first waits
//    for an event recorded on the caller's (compute) stream, so the inputs are ready; after the launch
//    an event is recorded on the NCCL stream and the compute stream waits for it. Neither wait blocks
//    the host: kernels queued later on the compute stream simply run after the collective (PyTorch's
//    Work::wait() without blocking-wait mode). No recordStream is needed: the compute stream is
//    ordered after the collective before the call returns, so memory the caller frees afterwards is
//    only reused by work that runs after it (the reason PyTorch unstashes its tensors after the wait).
//  * Watchdog: a background thread scans the enqueued collectives' events (as PyTorch's watchdog) and
//    ncclCommGetAsyncError; a CUDA error, an NCCL error, or a collective pending longer than the
//    timeout aborts the communicator and ends the job (MPI_Abort) instead of hanging, also while the
//    main thread is blocked in a CUDA synchronisation that waits for the collective. The timeout thus
//    bounds enqueue-to-completion, including compute queued before the collective.
//  * End: ncclCommFinalize (polled until settled), then ncclCommDestroy; while an exception unwinds or
//    when finalize fails or times out, ncclCommAbort instead (PyTorch aborts a process group that
//    was never shut down). The owner must destroy the communicator before main returns: a static
//    owner would run this after MPI_Finalize and after the CUDA runtime began its own teardown, so
//    for_device() and make_nccl() return a communicator owned by the caller and keep no copy.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/communicator.h"
#include "evoq/dist/nccl_status.h"

namespace evoq::dist {
namespace {

namespace ns = nccl_status;

void check_cuda(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) fail("CUDA ", what, " failed: ", cudaGetErrorString(rc));
}

ncclDataType_t nccl_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kFloat16: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kInt64: return ncclInt64;
    case torch::kInt32: return ncclInt32;
    case torch::kUInt8: return ncclUint8;
    case torch::kInt8: return ncclInt8;
    default: fail("NCCL communicator: unsupported dtype ", c10::toString(t));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
    case ReduceOp::mean: return ncclAvg;
  }
  return ncclSum;
}

// A CUDA event without timing, destroyed with its owner.
class Event {
 public:
  Event() { check_cuda(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "EventCreate"); }
  ~Event() { cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t stream) { check_cuda(cudaEventRecord(event_, stream), "EventRecord"); }
  void make_wait(cudaStream_t stream) { check_cuda(cudaStreamWaitEvent(stream, event_, 0), "StreamWaitEvent"); }
  ns::EventState query() const {
    const cudaError_t q = cudaEventQuery(event_);
    if (q == cudaSuccess) return ns::EventState::done;
    if (q == cudaErrorNotReady) return ns::EventState::pending;
    return ns::EventState::error;
  }

 private:
  cudaEvent_t event_{};
};

constexpr int kSlowPollMs = 1;  // init and finalize take milliseconds to seconds: sleep between polls
constexpr auto kWatchdogPeriod = std::chrono::milliseconds(50);

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Communicator> bootstrap, double timeout_s)
      : bootstrap_(std::move(bootstrap)), timeout_s_(timeout_s), clock_(ns::real_clock(0)) {
    int devices = 0;
    check_cuda(cudaGetDeviceCount(&devices), "GetDeviceCount");
    EVOQ_CHECK(devices > 0, "NCCL backend: no CUDA device visible");
    EVOQ_CHECK(bootstrap_->local_rank() < devices, "NCCL backend: local rank ", bootstrap_->local_rank(),
               " but only ", devices, " GPUs visible on this node (one rank per GPU)");
    device_ = bootstrap_->local_rank();
    check_cuda(cudaSetDevice(device_), "SetDevice");
    int version = 0;
    ncclGetVersion(&version);
    log::debug("NCCL version ", version, ", rank ", rank(), " on GPU ", device_);
    ncclUniqueId id;
    if (rank() == 0) {
      const ncclResult_t made = ncclGetUniqueId(&id);  // no communicator yet: blocking, no async state
      if (made != ncclSuccess) fail("NCCL GetUniqueId failed: ", ncclGetErrorString(made));
    }
    torch::Tensor id_bytes = torch::from_blob(&id, {int64_t(sizeof id)}, torch::kUInt8);
    bootstrap_->broadcast(id_bytes, 0);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // every call returns at once; the waits below are ours, with a timeout
    const auto init = ns::settle(ncclCommInitRankConfig(&comm_, size(), id, rank(), &config),
                                 [this] { return async_state(); }, timeout_s_, ns::real_clock(kSlowPollMs));
    if (!init.ok()) abort_job(init.describe("CommInitRank"));
    nccl_stream_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device_).stream();
    watchdog_ = std::thread([this] { watch(); });
  }

  ~NcclCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
    if (!comm_) return;
    cudaSetDevice(device_);
    std::lock_guard<std::mutex> lock(mutex_);
    const auto end = ns::end_communicator(
        {[this] { return ncclCommFinalize(comm_); }, [this] { return async_state(); },
         [this] { return ncclCommDestroy(comm_); }, [this] { return ncclCommAbort(comm_); }},
        std::uncaught_exceptions() > 0, timeout_s_, ns::real_clock(kSlowPollMs));
    if (end.ending == ns::Ending::aborted) log::warn("NCCL communicator aborted at its end (", end.why, ")");
    comm_ = nullptr;
    events_.clear();
  }

  std::string backend() const override { return "nccl"; }
  int rank() const override { return bootstrap_->rank(); }
  int size() const override { return bootstrap_->size(); }
  int local_rank() const override { return bootstrap_->local_rank(); }
  int local_size() const override { return bootstrap_->local_size(); }

  void all_reduce(torch::Tensor& t, ReduceOp op) override {
    check_tensor(t, "all_reduce");
    enqueue("AllReduce", [&](cudaStream_t s) {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.scalar_type()), nccl_op(op), comm_, s);
    });
  }

  void broadcast(torch::Tensor& t, int root) override {
    check_tensor(t, "broadcast");
    enqueue("Broadcast", [&](cudaStream_t s) {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.scalar_type()), root, comm_, s);
    });
  }

  void reduce_scatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) override {
    check_tensor(input, "reduce_scatter");
    check_tensor(output, "reduce_scatter");
    EVOQ_CHECK(input.numel() == output.numel() * size(), "reduce_scatter: size mismatch");
    EVOQ_CHECK(input.scalar_type() == output.scalar_type(), "reduce_scatter: dtype mismatch");
    enqueue("ReduceScatter", [&](cudaStream_t s) {
      return ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(), nccl_type(input.scalar_type()),
                               nccl_op(op), comm_, s);
    });
  }

  void all_gather(const torch::Tensor& shard, torch::Tensor& output) override {
    check_tensor(shard, "all_gather");
    check_tensor(output, "all_gather");
    EVOQ_CHECK(output.numel() == shard.numel() * size(), "all_gather: size mismatch");
    EVOQ_CHECK(shard.scalar_type() == output.scalar_type(), "all_gather: dtype mismatch");
    enqueue("AllGather", [&](cudaStream_t s) {
      return ncclAllGather(shard.data_ptr(), output.data_ptr(), shard.numel(), nccl_type(shard.scalar_type()), comm_,
                           s);
    });
  }

  void barrier() override { bootstrap_->barrier(); }

  [[noreturn]] void abort(int exit_code) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (comm_) ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    bootstrap_->abort(exit_code);
    std::abort();  // not reached: the bootstrap's abort ends the process
  }

  std::vector<std::vector<std::uint8_t>> all_gather_bytes(const std::vector<std::uint8_t>& mine) override {
    return bootstrap_->all_gather_bytes(mine);  // host-side metadata travels over the bootstrap (MPI)
  }

 private:
  void check_tensor(const torch::Tensor& t, const char* what) const {
    EVOQ_CHECK(t.is_cuda() && t.get_device() == device_, "NCCL communicator ", what, ": tensor must be on cuda:",
               device_);
    EVOQ_CHECK(t.is_contiguous(), "NCCL communicator ", what, ": tensor must be contiguous");
  }

  ncclResult_t async_state() const {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
    return rc == ncclSuccess ? state : rc;
  }

  // Runs `launch` (one NCCL collective on the given stream) ordered after the caller's stream and
  // orders the caller's stream after it; the host returns once the collective is enqueued.
  template <typename Launch>
  void enqueue(const char* what, Launch launch) {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    const cudaStream_t compute = c10::cuda::getCurrentCUDAStream(device_).stream();
    std::lock_guard<std::mutex> lock(mutex_);
    EVOQ_CHECK(comm_ != nullptr, "NCCL communicator ", what, ": the communicator was aborted");
    Event inputs_ready;
    inputs_ready.record(compute);
    inputs_ready.make_wait(nccl_stream_);
    const auto launched = ns::settle(launch(nccl_stream_), [this] { return async_state(); }, timeout_s_, clock_);
    if (!launched.ok()) abort_job(launched.describe(what));
    auto done = std::make_unique<Event>();
    done->record(nccl_stream_);
    done->make_wait(compute);
    const std::uint64_t id = next_work_id_++;
    events_.emplace(id, std::move(done));
    pending_.add(id, what, clock_.now());
  }

  // The watchdog thread: retires finished collectives and ends the job on an error or a timeout.
  void watch() {
    cudaSetDevice(device_);
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      wake_.wait_for(lock, kWatchdogPeriod, [this] { return stopping_; });
      if (stopping_ || pending_.empty() || !comm_) continue;
      const auto reason = pending_.scan([this](std::uint64_t id) { return events_.at(id)->query(); }, async_state(),
                                        clock_.now(), timeout_s_, [this](std::uint64_t id) { events_.erase(id); });
      if (reason) abort_job(*reason);
    }
  }

  // Called with mutex_ held (or before the watchdog exists); never returns.
  [[noreturn]] void abort_job(const std::string& why) {
    log::error("NCCL ", why, " on rank ", rank(), ": aborting the communicator and the job");
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    // From the watchdog thread this calls MPI_Abort off the main thread; acceptable for a process
    // that is about to die (MPI_Abort only has to make a best attempt to end every rank).
    bootstrap_->abort(3);
    std::abort();  // not reached
  }

  std::shared_ptr<Communicator> bootstrap_;
  double timeout_s_;
  ns::PollClock clock_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t nccl_stream_ = nullptr;  // a pool stream owned by c10 (never destroyed)

  // Guards comm_ and the work list between the caller's thread and the watchdog: NCCL calls on one
  // communicator must not run concurrently.
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  ns::PendingWork pending_;
  std::map<std::uint64_t, std::unique_ptr<Event>> events_;
  std::uint64_t next_work_id_ = 0;
  std::thread watchdog_;
};

}  // namespace

bool nccl_available() {
  int devices = 0;
  return cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
}

std::shared_ptr<Communicator> make_nccl(const std::shared_ptr<Communicator>& bootstrap, double timeout_s) {
  return std::make_shared<NcclCommunicator>(bootstrap, timeout_s);
}

}  // namespace evoq::dist
