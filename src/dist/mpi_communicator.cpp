// MPI backend of the Communicator (CPU tensors).
#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <mutex>

#include "evoq/core/error.h"
#include "evoq/dist/communicator.h"

namespace evoq::dist {
namespace {

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fail("MPI ", what, " failed: ", std::string(msg, len));
  }
}

MPI_Datatype mpi_type(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kUInt8: return MPI_UINT8_T;
    case torch::kInt8: return MPI_INT8_T;
    default: fail("MPI communicator: unsupported dtype ", c10::toString(t));
  }
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::mean: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  return MPI_SUM;
}

// Half-precision tensors have no MPI type: reduce a float32 copy and write it back.
bool needs_upcast(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 || t.scalar_type() == torch::kFloat16;
}

void check_cpu_contiguous(const torch::Tensor& t, const char* what) {
  EVOQ_CHECK(t.device().is_cpu(), "MPI communicator ", what, ": tensor must be on the CPU (got ", t.device(), ")");
  EVOQ_CHECK(t.is_contiguous(), "MPI communicator ", what, ": tensor must be contiguous");
}

// MPI counts are int: large buffers go in chunks.
constexpr int64_t kMaxChunk = INT_MAX / 8;

class MpiRuntime {
 public:
  MpiRuntime() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "Init_thread");
      owns_ = true;
    }
  }
  ~MpiRuntime() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }

 private:
  bool owns_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    static MpiRuntime runtime;
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "Comm_dup");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_), "Comm_split_type");
    MPI_Comm_rank(node_, &local_rank_);
    MPI_Comm_size(node_, &local_size_);
  }

  std::string backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }

  void all_reduce(torch::Tensor& t, ReduceOp op) override {
    check_cpu_contiguous(t, "all_reduce");
    if (needs_upcast(t)) {
      auto f = t.to(torch::kFloat32);
      all_reduce(f, op);
      t.copy_(f);
      return;
    }
    auto type = mpi_type(t.scalar_type());
    auto* base = static_cast<char*>(t.data_ptr());
    const int64_t n = t.numel(), elem = t.element_size();
    for (int64_t off = 0; off < n; off += kMaxChunk) {
      int count = int(std::min(kMaxChunk, n - off));
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, base + off * elem, count, type, mpi_op(op), comm_), "Allreduce");
    }
    if (op == ReduceOp::mean) {
      if (t.is_floating_point()) t.div_(size_);
      else t.floor_divide_(size_);
    }
  }

  void broadcast(torch::Tensor& t, int root) override {
    check_cpu_contiguous(t, "broadcast");
    auto* base = static_cast<char*>(t.data_ptr());
    const int64_t bytes = t.numel() * t.element_size();
    for (int64_t off = 0; off < bytes; off += kMaxChunk)
      check_mpi(MPI_Bcast(base + off, int(std::min(kMaxChunk, bytes - off)), MPI_BYTE, root, comm_), "Bcast");
  }

  void reduce_scatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) override {
    check_cpu_contiguous(input, "reduce_scatter");
    check_cpu_contiguous(output, "reduce_scatter");
    EVOQ_CHECK(input.numel() == output.numel() * size_, "reduce_scatter: input has ", input.numel(),
               " elements, expected ", output.numel() * size_);
    EVOQ_CHECK(output.numel() <= kMaxChunk, "reduce_scatter: shard too large for one MPI call");
    if (needs_upcast(input)) {
      auto in = input.to(torch::kFloat32);
      auto out = torch::empty({output.numel()}, in.options());
      reduce_scatter(in, out, op);
      output.copy_(out.view_as(output));
      return;
    }
    check_mpi(MPI_Reduce_scatter_block(input.data_ptr(), output.data_ptr(), int(output.numel()),
                                       mpi_type(input.scalar_type()), mpi_op(op), comm_),
              "Reduce_scatter_block");
    if (op == ReduceOp::mean) output.div_(size_);
  }

  void all_gather(const torch::Tensor& shard, torch::Tensor& output) override {
    check_cpu_contiguous(shard, "all_gather");
    check_cpu_contiguous(output, "all_gather");
    EVOQ_CHECK(output.numel() == shard.numel() * size_, "all_gather: output has ", output.numel(),
               " elements, expected ", shard.numel() * size_);
    EVOQ_CHECK(shard.scalar_type() == output.scalar_type(), "all_gather: dtype mismatch");
    const int64_t bytes = shard.numel() * shard.element_size();
    EVOQ_CHECK(bytes <= INT_MAX, "all_gather: shard too large for one MPI call");
    check_mpi(MPI_Allgather(shard.data_ptr(), int(bytes), MPI_BYTE, output.data_ptr(), int(bytes), MPI_BYTE, comm_),
              "Allgather");
  }

  void barrier() override { check_mpi(MPI_Barrier(comm_), "Barrier"); }

  [[noreturn]] void abort(int exit_code) override {
    MPI_Abort(comm_, exit_code);
    std::_Exit(exit_code);
  }

  std::vector<std::vector<std::uint8_t>> all_gather_bytes(const std::vector<std::uint8_t>& mine) override {
    EVOQ_CHECK(mine.size() <= size_t(INT_MAX), "all_gather_bytes: blob larger than 2 GiB");
    int my_size = int(mine.size());
    std::vector<int> sizes(size_), offsets(size_);
    check_mpi(MPI_Allgather(&my_size, 1, MPI_INT, sizes.data(), 1, MPI_INT, comm_), "Allgather(sizes)");
    int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[r] = int(total);
      total += sizes[r];
    }
    EVOQ_CHECK(total <= INT_MAX, "all_gather_bytes: total larger than 2 GiB");
    std::vector<std::uint8_t> all(std::max<int64_t>(total, 1));
    check_mpi(MPI_Allgatherv(mine.data(), my_size, MPI_BYTE, all.data(), sizes.data(), offsets.data(), MPI_BYTE, comm_),
              "Allgatherv");
    std::vector<std::vector<std::uint8_t>> out(size_);
    for (int r = 0; r < size_; ++r) out[r].assign(all.begin() + offsets[r], all.begin() + offsets[r] + sizes[r]);
    return out;
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL, node_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

}  // namespace

std::shared_ptr<Communicator> mpi_world() {
  static std::once_flag once;
  static std::shared_ptr<Communicator> world;
  std::call_once(once, [] { world = std::make_shared<MpiCommunicator>(); });
  return world;
}

std::shared_ptr<Communicator> for_device(const torch::Device& device) {
  // A new NCCL communicator each time, owned by the caller: no static keeps it, so it is finalized and
  // destroyed when the caller lets go of it, before MPI_Finalize (nccl_communicator.cpp).
  if (device.is_cuda()) return make_nccl(mpi_world());
  return mpi_world();
}

std::vector<std::uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string to_string(const std::vector<std::uint8_t>& b) { return {b.begin(), b.end()}; }

#ifndef EVOQ_HAVE_NCCL
bool nccl_available() { return false; }
std::shared_ptr<Communicator> make_nccl(const std::shared_ptr<Communicator>&, double) {
  fail("this evoq build has no NCCL backend (configure with the CUDA toolkit and a CUDA torch)");
}
#endif

}  // namespace evoq::dist
