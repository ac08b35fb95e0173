#pragma once
// Communicator: the only way evoq code talks across ranks. Backends: MPI (CPU tensors; also used with
// one rank and no mpirun) and NCCL (CUDA tensors, bootstrapped over MPI). Collectives must be called
// in the same order on every rank.
#include <torch/torch.h>

#include "evoq/core/error.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace evoq::dist {

enum class ReduceOp { sum, max, min, mean };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string backend() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Rank among the processes on this node (MPI_Comm_split_type(SHARED)); picks the GPU.
  virtual int local_rank() const = 0;
  virtual int local_size() const = 0;

  // In place on a contiguous tensor of this backend's device.
  virtual void all_reduce(torch::Tensor& tensor, ReduceOp op) = 0;
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  // input holds size() equal chunks along its flat layout; output receives the reduced chunk rank().
  virtual void reduce_scatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) = 0;
  // output (flat size() * shard.numel()) receives every rank's shard in rank order.
  virtual void all_gather(const torch::Tensor& shard, torch::Tensor& output) = 0;
  virtual void barrier() = 0;
  // Every rank contributes a byte blob of any size (zero allowed); all ranks receive all blobs.
  virtual std::vector<std::vector<std::uint8_t>> all_gather_bytes(const std::vector<std::uint8_t>& mine) = 0;

  bool is_root() const { return rank() == 0; }
  // Ends every rank of the job (MPI_Abort): for a rank that fails while others may wait in a collective.
  [[noreturn]] virtual void abort(int exit_code) = 0;
};

// MPI world communicator. Initialises MPI (thread level FUNNELED) on first use and finalises it at
// process exit; works as a singleton when the process was not started by mpirun/srun.
std::shared_ptr<Communicator> mpi_world();

// NCCL communicator over the same ranks, one GPU per local rank. Throws evoq::Error when this build
// has no NCCL or no GPU is visible. timeout_s bounds every collective: past it the communicator is
// aborted and the job ends with MPI_Abort rather than hanging.
std::shared_ptr<Communicator> make_nccl(const std::shared_ptr<Communicator>& mpi, double timeout_s = 600.0);
bool nccl_available();

// The communicator for tensors on `device`: NCCL for CUDA, MPI for CPU.
std::shared_ptr<Communicator> for_device(const torch::Device& device);

// Byte helpers for all_gather_bytes payloads.
std::vector<std::uint8_t> to_bytes(const std::string& s);
std::string to_string(const std::vector<std::uint8_t>& bytes);

}  // namespace evoq::dist
