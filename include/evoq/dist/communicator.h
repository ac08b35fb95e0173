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

// One process alone (rank 0 of 1, no MPI): every collective leaves its tensors as they are, on any
// device; abort() ends the process. The bootstrap of a 1-rank NCCL communicator where MPI is absent
// (the GPU acceptance tool) and the reference of tests that compare a union batch with a split one.
std::shared_ptr<Communicator> single_process();

// NCCL communicator over the ranks of `bootstrap` (which carries the unique id and host metadata),
// one GPU per local rank. Throws evoq::Error when this build has no NCCL or no GPU is visible.
// Collectives return once enqueued: the caller's CUDA stream waits for them, the host does not.
// timeout_s bounds each collective from enqueue to completion: past it (or on an NCCL or CUDA error)
// a watchdog thread aborts the communicator and ends the job through bootstrap->abort() rather than
// hanging. The caller owns the communicator and must let go of it before main returns (it is
// finalized and destroyed then); never keep it in a static (nccl_communicator.cpp says why).
std::shared_ptr<Communicator> make_nccl(const std::shared_ptr<Communicator>& bootstrap, double timeout_s = 600.0);
bool nccl_available();

// The communicator for tensors on `device`: a new NCCL communicator over mpi_world() for CUDA (owned
// by the caller, as make_nccl), mpi_world() for CPU.
std::shared_ptr<Communicator> for_device(const torch::Device& device);

// Byte helpers for all_gather_bytes payloads.
std::vector<std::uint8_t> to_bytes(const std::string& s);
std::string to_string(const std::vector<std::uint8_t>& bytes);

}  // namespace evoq::dist
