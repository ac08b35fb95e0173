// NCCL backend of the Communicator (CUDA tensors). Compiled only when the CUDA toolkit, NCCL and a
// CUDA build of torch are present (EVOQ_HAVE_NCCL); it cannot run on a machine without a GPU.
//
// Bootstrap: rank 0 creates the ncclUniqueId, MPI broadcasts it, each rank binds the GPU of its local
// rank and joins. NCCL has no per-call timeout, so every collective is followed by a poll of the stream
// and ncclCommGetAsyncError against a wall clock; on error or timeout the communicator is aborted and
// the job ends through MPI_Abort instead of hanging forever.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/communicator.h"

namespace evoq::dist {
namespace {

void check_nccl(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess) fail("NCCL ", what, " failed: ", ncclGetErrorString(rc));
}

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

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Communicator> mpi, double timeout_s)
      : mpi_(std::move(mpi)), timeout_s_(timeout_s) {
    int devices = 0;
    check_cuda(cudaGetDeviceCount(&devices), "GetDeviceCount");
    EVOQ_CHECK(devices > 0, "NCCL backend: no CUDA device visible");
    EVOQ_CHECK(mpi_->local_rank() < devices, "NCCL backend: local rank ", mpi_->local_rank(), " but only ",
               devices, " GPUs visible on this node (one rank per GPU)");
    device_ = mpi_->local_rank();
    check_cuda(cudaSetDevice(device_), "SetDevice");
    int version = 0;
    ncclGetVersion(&version);
    log::debug("NCCL version ", version, ", rank ", mpi_->rank(), " on GPU ", device_);
    ncclUniqueId id;
    if (mpi_->rank() == 0) check_nccl(ncclGetUniqueId(&id), "GetUniqueId");
    torch::Tensor id_bytes = torch::from_blob(&id, {int64_t(sizeof id)}, torch::kUInt8);
    mpi_->broadcast(id_bytes, 0);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // non-blocking so init and collectives can be polled and aborted
    check_nccl(ncclCommInitRankConfig(&comm_, mpi_->size(), id, mpi_->rank(), &config), "CommInitRank");
    wait_for_comm("CommInitRank");
  }

  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
  }

  std::string backend() const override { return "nccl"; }
  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  int local_rank() const override { return mpi_->local_rank(); }
  int local_size() const override { return mpi_->local_size(); }

  void all_reduce(torch::Tensor& t, ReduceOp op) override {
    check_tensor(t, "all_reduce");
    auto stream = c10::cuda::getCurrentCUDAStream(device_);
    check_nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.scalar_type()), nccl_op(op), comm_,
                             stream.stream()),
               "AllReduce");
    wait(stream.stream(), "AllReduce");
  }

  void broadcast(torch::Tensor& t, int root) override {
    check_tensor(t, "broadcast");
    auto stream = c10::cuda::getCurrentCUDAStream(device_);
    check_nccl(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.scalar_type()), root, comm_,
                             stream.stream()),
               "Broadcast");
    wait(stream.stream(), "Broadcast");
  }

  void reduce_scatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) override {
    check_tensor(input, "reduce_scatter");
    check_tensor(output, "reduce_scatter");
    EVOQ_CHECK(input.numel() == output.numel() * size(), "reduce_scatter: size mismatch");
    auto stream = c10::cuda::getCurrentCUDAStream(device_);
    check_nccl(ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(), nccl_type(input.scalar_type()),
                                 nccl_op(op), comm_, stream.stream()),
               "ReduceScatter");
    wait(stream.stream(), "ReduceScatter");
  }

  void all_gather(const torch::Tensor& shard, torch::Tensor& output) override {
    check_tensor(shard, "all_gather");
    check_tensor(output, "all_gather");
    EVOQ_CHECK(output.numel() == shard.numel() * size(), "all_gather: size mismatch");
    auto stream = c10::cuda::getCurrentCUDAStream(device_);
    check_nccl(ncclAllGather(shard.data_ptr(), output.data_ptr(), shard.numel(), nccl_type(shard.scalar_type()), comm_,
                             stream.stream()),
               "AllGather");
    wait(stream.stream(), "AllGather");
  }

  void barrier() override { mpi_->barrier(); }

  [[noreturn]] void abort(int exit_code) override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    mpi_->abort(exit_code);
    std::abort();  // not reached: MPI_Abort ends the process
  }

  std::vector<std::vector<std::uint8_t>> all_gather_bytes(const std::vector<std::uint8_t>& mine) override {
    return mpi_->all_gather_bytes(mine);  // host-side metadata travels over MPI
  }

 private:
  void check_tensor(const torch::Tensor& t, const char* what) const {
    EVOQ_CHECK(t.is_cuda() && t.get_device() == device_, "NCCL communicator ", what, ": tensor must be on cuda:",
               device_);
    EVOQ_CHECK(t.is_contiguous(), "NCCL communicator ", what, ": tensor must be contiguous");
  }

  [[noreturn]] void abort_job(const std::string& why) {
    log::error("NCCL ", why, " on rank ", rank(), ": aborting the communicator and the job");
    ncclCommAbort(comm_);
    comm_ = nullptr;
    MPI_Abort(MPI_COMM_WORLD, 3);
    std::abort();
  }

  void wait_for_comm(const char* what) {
    auto start = std::chrono::steady_clock::now();
    for (;;) {
      ncclResult_t state;
      ncclCommGetAsyncError(comm_, &state);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) abort_job(std::string(what) + ": " + ncclGetErrorString(state));
      if (elapsed(start) > timeout_s_) abort_job(std::string(what) + " timed out");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // Polls the stream until the collective finished, checking NCCL's async error and the deadline.
  void wait(cudaStream_t stream, const char* what) {
    wait_for_comm(what);  // the enqueue itself may still be in progress on a non-blocking communicator
    auto start = std::chrono::steady_clock::now();
    for (;;) {
      cudaError_t q = cudaStreamQuery(stream);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) abort_job(std::string(what) + ": " + cudaGetErrorString(q));
      ncclResult_t state;
      ncclCommGetAsyncError(comm_, &state);
      if (state != ncclSuccess && state != ncclInProgress)
        abort_job(std::string(what) + ": " + ncclGetErrorString(state));
      if (elapsed(start) > timeout_s_) abort_job(std::string(what) + " timed out");
      std::this_thread::yield();
    }
  }

  static double elapsed(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  std::shared_ptr<Communicator> mpi_;
  double timeout_s_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

bool nccl_available() {
  int devices = 0;
  return cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
}

std::shared_ptr<Communicator> make_nccl(const std::shared_ptr<Communicator>& mpi, double timeout_s) {
  return std::make_shared<NcclCommunicator>(mpi, timeout_s);
}

}  // namespace evoq::dist
