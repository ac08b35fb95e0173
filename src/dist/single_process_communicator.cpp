// The Communicator of one process alone: rank 0 of 1, identity collectives, no MPI (communicator.h).
#include <cstdio>
#include <cstdlib>

#include "evoq/core/error.h"
#include "evoq/dist/communicator.h"

namespace evoq::dist {
namespace {

void check_contiguous(const torch::Tensor& t, const char* what) {
  EVOQ_CHECK(t.defined() && t.is_contiguous(), "single-process communicator ", what, ": tensor must be contiguous");
}

class SingleProcessCommunicator final : public Communicator {
 public:
  std::string backend() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }

  // With one rank, sum, max, min and mean of one contribution are that contribution.
  void all_reduce(torch::Tensor& t, ReduceOp) override { check_contiguous(t, "all_reduce"); }
  void broadcast(torch::Tensor& t, int root) override {
    check_contiguous(t, "broadcast");
    EVOQ_CHECK(root == 0, "single-process communicator broadcast: root ", root, " does not exist");
  }
  void reduce_scatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp) override {
    check_contiguous(input, "reduce_scatter");
    check_contiguous(output, "reduce_scatter");
    EVOQ_CHECK(input.numel() == output.numel(), "reduce_scatter: input has ", input.numel(), " elements, expected ",
               output.numel());
    output.view(-1).copy_(input.view(-1));
  }
  void all_gather(const torch::Tensor& shard, torch::Tensor& output) override {
    check_contiguous(shard, "all_gather");
    check_contiguous(output, "all_gather");
    EVOQ_CHECK(output.numel() == shard.numel(), "all_gather: output has ", output.numel(), " elements, expected ",
               shard.numel());
    output.view(-1).copy_(shard.view(-1));
  }
  void barrier() override {}
  std::vector<std::vector<std::uint8_t>> all_gather_bytes(const std::vector<std::uint8_t>& mine) override {
    return {mine};
  }
  [[noreturn]] void abort(int exit_code) override {
    std::fflush(stderr);
    std::_Exit(exit_code);
  }
};

}  // namespace

std::shared_ptr<Communicator> single_process() { return std::make_shared<SingleProcessCommunicator>(); }

}  // namespace evoq::dist
