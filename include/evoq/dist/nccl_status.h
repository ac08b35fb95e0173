#pragma once
// The rules evoq follows for the result codes of a non-blocking NCCL communicator (only in builds
// with NCCL: EVOQ_HAVE_NCCL), apart from every CUDA call so that they can be tested on a machine
// without a GPU (tests/unit/dist/test_nccl_status.cpp feeds them scripted result sequences).
//
// What NCCL documents for a communicator created with config.blocking = 0:
//  * any call (init, a collective, finalize) may return ncclInProgress; the communicator's state must
//    then be polled with ncclCommGetAsyncError until it is no longer ncclInProgress before any other
//    NCCL call is made or anything else is enqueued on the collective's stream;
//  * a collective that returns ncclSuccess has been enqueued; errors while it runs are reported later
//    by ncclCommGetAsyncError;
//  * after an error nothing can be assumed about enqueued work: the communicator must be aborted
//    (ncclCommAbort), never finalized;
//  * ncclCommFinalize flushes every issued operation (its state goes ncclInProgress -> ncclSuccess),
//    after which ncclCommDestroy frees the local resources.
#include <nccl.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>

namespace evoq::dist::nccl_status {

// The clock (seconds) and the pause between two polls; tests pass scripted ones.
struct PollClock {
  std::function<double()> now;
  std::function<void()> pause;
};
// steady_clock; `sleep_ms` > 0 sleeps between polls (init, finalize: slow), 0 yields (collectives).
PollClock real_clock(int sleep_ms);

enum class Settled { success, failed, timed_out };

struct Outcome {
  Settled state = Settled::success;
  ncclResult_t code = ncclSuccess;  // the failing code (failed), ncclInProgress (timed_out)
  double waited_s = 0.0;
  bool ok() const { return state == Settled::success; }
  // One line naming the call: "AllReduce failed: <NCCL's text>" / "AllReduce timed out after 600 s".
  std::string describe(const std::string& what) const;
};

// The outcome of a call that returned `returned`: ncclSuccess settles at once, another error fails at
// once, ncclInProgress is polled through `state()` (ncclCommGetAsyncError) until it is something else
// or `timeout_s` has passed.
Outcome settle(ncclResult_t returned, const std::function<ncclResult_t()>& state, double timeout_s,
               const PollClock& clock);

// The completion of one enqueued collective as its CUDA event reports it.
enum class EventState { done, pending, error };

// Enqueued collectives not yet seen complete, oldest first, watched by a background thread: each scan
// retires those whose event is done and decides whether the job must be aborted (a CUDA error on an
// event, an asynchronous NCCL error, or the oldest pending collective older than the timeout).
class PendingWork {
 public:
  struct Work {
    std::uint64_t id = 0;  // the caller's handle (its event)
    std::string what;      // "AllReduce", ...
    double started = 0.0;  // clock time of the enqueue
  };

  void add(std::uint64_t id, std::string what, double started);
  bool empty() const { return work_.empty(); }
  std::size_t size() const { return work_.size(); }
  const std::deque<Work>& work() const { return work_; }

  // Retires every completed work item (calling `retire` for each, e.g. to free its event) and returns
  // the reason to abort, if any. `async_state` is ncclCommGetAsyncError's answer at scan time.
  std::optional<std::string> scan(const std::function<EventState(std::uint64_t)>& query, ncclResult_t async_state,
                                  double now, double timeout_s,
                                  const std::function<void(std::uint64_t)>& retire = {});

 private:
  std::deque<Work> work_;
};

// How a communicator ends. A clean end finalizes (flushing what was issued), waits for that to settle
// and destroys; a finalize that fails or does not settle in time, or an end while an exception
// unwinds (other ranks may be gone), aborts instead.
enum class Ending { destroyed, aborted };
struct EndingOps {
  std::function<ncclResult_t()> finalize, state, destroy, abort;
};
struct EndingReport {
  Ending ending = Ending::destroyed;
  std::string why;  // empty when destroyed cleanly
};
EndingReport end_communicator(const EndingOps& ops, bool unwinding, double timeout_s, const PollClock& clock);

}  // namespace evoq::dist::nccl_status
