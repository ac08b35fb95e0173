#include "evoq/dist/agreement.h"

#include "evoq/io/checkpoint_summary.h"

#include "evoq/core/error.h"

namespace evoq::dist {

std::string agree_on_error(Communicator& comm, const std::string& error) {
  const auto all = comm.size() > 1 ? comm.all_gather_bytes(to_bytes(error))
                                   : std::vector<std::vector<std::uint8_t>>{to_bytes(error)};
  for (std::size_t r = 0; r < all.size(); ++r) {
    if (all[r].empty()) continue;
    if (int(r) == comm.rank() || comm.size() == 1) return to_string(all[r]);
    return "failed on rank " + std::to_string(r) + ": " + to_string(all[r]);
  }
  return "";
}

void run_agreed(Communicator& comm, const std::string& what, bool root_only, const std::function<void()>& fn) {
  std::string error;
  if (!root_only || comm.is_root()) {
    try {
      fn();
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "unknown error";
    }
  }
  const auto agreed = agree_on_error(comm, error);
  if (!agreed.empty()) fail(what.empty() ? agreed : what + ": " + agreed);
}

void refuse_alike(Communicator& comm, const std::string& what, const std::function<std::string()>& check) {
  std::string usage;
  run_agreed(comm, what, true, [&] { usage = check(); });
  usage = to_string(comm.all_gather_bytes(to_bytes(usage)).front());
  if (!usage.empty()) throw UsageError(usage);
}

std::string shared_weights_checksum(Communicator& comm, const std::string& what, const std::string& model_dir) {
  std::string mine;
  run_agreed(comm, what, true, [&] { mine = io::weights_checksum(model_dir); });
  return to_string(comm.all_gather_bytes(to_bytes(mine)).front());
}

}  // namespace evoq::dist
