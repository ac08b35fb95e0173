#include "evoq/dist/stop_signal.h"

#include <csignal>
#include <cstdint>

#include "evoq/dist/communicator.h"

namespace evoq::dist {
namespace {

// Lock-free so that storing from a signal handler is async-signal-safe.
std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_stop_signal(int /*signo*/) { g_stop.store(1, std::memory_order_relaxed); }

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // blocking calls (MPI, file I/O) resume instead of failing with EINTR
  sigaction(SIGUSR1, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool stop_requested() { return g_stop.load(std::memory_order_relaxed) != 0; }
void request_stop() { g_stop.store(1, std::memory_order_relaxed); }
void clear_stop_request() { g_stop.store(0, std::memory_order_relaxed); }

bool stop_requested_anywhere(Communicator& comm) {
  if (comm.size() == 1) return stop_requested();
  // Host bytes (over MPI for either backend): no device tensor, no GPU synchronisation.
  const auto all = comm.all_gather_bytes({std::uint8_t(stop_requested() ? 1 : 0)});
  for (const auto& flag : all)
    if (!flag.empty() && flag[0] != 0) return true;
  return false;
}

}  // namespace evoq::dist
