#include "evoq/dist/nccl_status.h"

#include <chrono>
#include <cstdio>
#include <thread>

namespace evoq::dist::nccl_status {

PollClock real_clock(int sleep_ms) {
  const auto start = std::chrono::steady_clock::now();
  return {[start] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); },
          [sleep_ms] {
            if (sleep_ms > 0)
              std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
            else
              std::this_thread::yield();
          }};
}

std::string Outcome::describe(const std::string& what) const {
  switch (state) {
    case Settled::success: return what + " succeeded";
    case Settled::failed: return what + " failed: " + ncclGetErrorString(code);
    case Settled::timed_out: {
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%.0f", waited_s);
      return what + " timed out after " + seconds + " s (still in progress)";
    }
  }
  return what;
}

Outcome settle(ncclResult_t returned, const std::function<ncclResult_t()>& state, double timeout_s,
               const PollClock& clock) {
  Outcome out;
  if (returned == ncclSuccess) return out;
  if (returned != ncclInProgress) {
    out.state = Settled::failed;
    out.code = returned;
    return out;
  }
  const double start = clock.now();
  for (;;) {
    const ncclResult_t now_state = state();
    out.waited_s = clock.now() - start;
    if (now_state == ncclSuccess) return out;
    if (now_state != ncclInProgress) {
      out.state = Settled::failed;
      out.code = now_state;
      return out;
    }
    if (out.waited_s > timeout_s) {
      out.state = Settled::timed_out;
      out.code = ncclInProgress;
      return out;
    }
    clock.pause();
  }
}

void PendingWork::add(std::uint64_t id, std::string what, double started) {
  work_.push_back({id, std::move(what), started});
}

std::optional<std::string> PendingWork::scan(const std::function<EventState(std::uint64_t)>& query,
                                             ncclResult_t async_state, double now, double timeout_s,
                                             const std::function<void(std::uint64_t)>& retire) {
  if (async_state != ncclSuccess && async_state != ncclInProgress)
    return std::string("asynchronous NCCL error: ") + ncclGetErrorString(async_state);
  std::optional<std::string> reason;
  for (auto it = work_.begin(); it != work_.end();) {
    const EventState s = query(it->id);
    if (s == EventState::done) {
      if (retire) retire(it->id);
      it = work_.erase(it);
      continue;
    }
    if (s == EventState::error && !reason) reason = it->what + ": CUDA error while it ran";
    if (s == EventState::pending && !reason && now - it->started > timeout_s) {
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%.0f", now - it->started);
      reason = it->what + " timed out after " + seconds + " s";
    }
    ++it;
  }
  return reason;
}

EndingReport end_communicator(const EndingOps& ops, bool unwinding, double timeout_s, const PollClock& clock) {
  EndingReport report;
  if (unwinding) {
    report.why = "ended while an exception unwinds";
  } else {
    const auto finalized = settle(ops.finalize(), ops.state, timeout_s, clock);
    if (finalized.ok()) {
      ops.destroy();
      return report;
    }
    report.why = finalized.describe("CommFinalize");
  }
  ops.abort();
  report.ending = Ending::aborted;
  return report;
}

}  // namespace evoq::dist::nccl_status
