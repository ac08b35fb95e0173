// The NCCL result-code rules of nccl_status.h with scripted NCCL answers and a scripted clock: no GPU
// is needed, only the NCCL headers and library (ncclGetErrorString).
#ifdef EVOQ_HAVE_NCCL
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "evoq/dist/nccl_status.h"

namespace ns = evoq::dist::nccl_status;

namespace {

// ncclCommGetAsyncError stand-in: answers the scripted states in order, then repeats the last one.
struct ScriptedState {
  std::vector<ncclResult_t> answers;
  int polls = 0;
  ncclResult_t operator()() {
    const auto i = std::min<std::size_t>(std::size_t(polls), answers.size() - 1);
    ++polls;
    return answers[i];
  }
};

// A clock that only moves when the poller pauses: one pause = `step` seconds.
struct ScriptedClock {
  double t = 0.0, step = 1.0;
  int pauses = 0;
  ns::PollClock clock() {
    return {[this] { return t; }, [this] {
              t += step;
              ++pauses;
            }};
  }
};

}  // namespace

TEST(NcclStatus, SuccessSettlesWithoutPolling) {
  ScriptedState state{{ncclInternalError}};
  ScriptedClock clock;
  const auto out = ns::settle(ncclSuccess, std::ref(state), 10.0, clock.clock());
  EXPECT_TRUE(out.ok());
  EXPECT_EQ(state.polls, 0);  // an enqueued collective's later errors are the watchdog's business
}

TEST(NcclStatus, AnErrorReturnedAtOnceFailsWithoutPolling) {
  ScriptedState state{{ncclSuccess}};
  ScriptedClock clock;
  const auto out = ns::settle(ncclInvalidArgument, std::ref(state), 10.0, clock.clock());
  EXPECT_EQ(out.state, ns::Settled::failed);
  EXPECT_EQ(out.code, ncclInvalidArgument);
  EXPECT_EQ(state.polls, 0);
  EXPECT_EQ(out.describe("AllReduce"), std::string("AllReduce failed: ") + ncclGetErrorString(ncclInvalidArgument));
}

TEST(NcclStatus, InProgressIsPolledUntilSuccess) {
  // ncclInProgress is not a failure: the state is polled, with a pause between polls, until it settles.
  ScriptedState state{{ncclInProgress, ncclInProgress, ncclSuccess}};
  ScriptedClock clock;
  const auto out = ns::settle(ncclInProgress, std::ref(state), 10.0, clock.clock());
  EXPECT_TRUE(out.ok());
  EXPECT_EQ(state.polls, 3);
  EXPECT_EQ(clock.pauses, 2);
  EXPECT_DOUBLE_EQ(out.waited_s, 2.0);
}

TEST(NcclStatus, InProgressThatTurnsIntoAnErrorFailsWithThatError) {
  ScriptedState state{{ncclInProgress, ncclRemoteError}};
  ScriptedClock clock;
  const auto out = ns::settle(ncclInProgress, std::ref(state), 10.0, clock.clock());
  EXPECT_EQ(out.state, ns::Settled::failed);
  EXPECT_EQ(out.code, ncclRemoteError);
  EXPECT_EQ(state.polls, 2);
}

TEST(NcclStatus, InProgressForeverTimesOut) {
  ScriptedState state{{ncclInProgress}};
  ScriptedClock clock;  // 1 s per pause, timeout 5 s: polls at t = 0..6, the one at t = 6 is past it
  const auto out = ns::settle(ncclInProgress, std::ref(state), 5.0, clock.clock());
  EXPECT_EQ(out.state, ns::Settled::timed_out);
  EXPECT_EQ(out.code, ncclInProgress);
  EXPECT_EQ(state.polls, 7);
  EXPECT_DOUBLE_EQ(out.waited_s, 6.0);
  EXPECT_EQ(out.describe("CommInitRank"), "CommInitRank timed out after 6 s (still in progress)");
}

TEST(NcclStatus, PendingWorkRetiresFinishedCollectivesInAnyOrder) {
  ns::PendingWork pending;
  pending.add(10, "AllReduce", 0.0);
  pending.add(11, "AllGather", 1.0);
  pending.add(12, "Broadcast", 2.0);
  std::vector<std::uint64_t> retired;
  auto query = [](std::uint64_t id) { return id == 11 ? ns::EventState::pending : ns::EventState::done; };
  const auto reason = pending.scan(query, ncclSuccess, 3.0, 60.0, [&](std::uint64_t id) { retired.push_back(id); });
  EXPECT_FALSE(reason.has_value());
  EXPECT_EQ(retired, (std::vector<std::uint64_t>{10, 12}));
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending.work().front().what, "AllGather");
  // An NCCL state still in progress (another call settling) is not an error.
  EXPECT_FALSE(pending.scan(query, ncclInProgress, 4.0, 60.0).has_value());
}

TEST(NcclStatus, PendingWorkPastTheTimeoutAborts) {
  ns::PendingWork pending;
  pending.add(1, "ReduceScatter", 100.0);
  auto pending_query = [](std::uint64_t) { return ns::EventState::pending; };
  EXPECT_FALSE(pending.scan(pending_query, ncclSuccess, 160.0, 60.0).has_value());  // 60 s: not yet past
  const auto reason = pending.scan(pending_query, ncclSuccess, 161.0, 60.0);
  ASSERT_TRUE(reason.has_value());
  EXPECT_EQ(*reason, "ReduceScatter timed out after 61 s");
  EXPECT_EQ(pending.size(), 1u);
}

TEST(NcclStatus, CudaOrAsyncNcclErrorsAbort) {
  ns::PendingWork pending;
  pending.add(1, "AllReduce", 0.0);
  const auto cuda = pending.scan([](std::uint64_t) { return ns::EventState::error; }, ncclSuccess, 1.0, 60.0);
  ASSERT_TRUE(cuda.has_value());
  EXPECT_EQ(*cuda, "AllReduce: CUDA error while it ran");
  const auto nccl = pending.scan([](std::uint64_t) { return ns::EventState::pending; }, ncclSystemError, 1.0, 60.0);
  ASSERT_TRUE(nccl.has_value());
  EXPECT_EQ(*nccl, std::string("asynchronous NCCL error: ") + ncclGetErrorString(ncclSystemError));
}

namespace {

// Records which of finalize / destroy / abort an ending called, in order.
struct EndingScript {
  ncclResult_t finalize_returns = ncclInProgress;
  ScriptedState state;
  std::vector<std::string> calls;
  ns::EndingOps ops() {
    return {[this] {
              calls.push_back("finalize");
              return finalize_returns;
            },
            [this] { return state(); },
            [this] {
              calls.push_back("destroy");
              return ncclSuccess;
            },
            [this] {
              calls.push_back("abort");
              return ncclSuccess;
            }};
  }
};

}  // namespace

TEST(NcclStatus, CleanEndFinalizesUntilSettledThenDestroys) {
  EndingScript s{ncclInProgress, {{ncclInProgress, ncclInProgress, ncclSuccess}}};
  ScriptedClock clock;
  const auto end = ns::end_communicator(s.ops(), false, 30.0, clock.clock());
  EXPECT_EQ(end.ending, ns::Ending::destroyed);
  EXPECT_EQ(s.calls, (std::vector<std::string>{"finalize", "destroy"}));
  EXPECT_EQ(s.state.polls, 3);  // destroy only once the finalize settled
}

TEST(NcclStatus, FailedOrHungFinalizeAbortsInsteadOfDestroying) {
  EndingScript failed{ncclInProgress, {{ncclInProgress, ncclRemoteError}}};
  ScriptedClock c1;
  const auto a = ns::end_communicator(failed.ops(), false, 30.0, c1.clock());
  EXPECT_EQ(a.ending, ns::Ending::aborted);
  EXPECT_EQ(failed.calls, (std::vector<std::string>{"finalize", "abort"}));
  EXPECT_EQ(a.why, std::string("CommFinalize failed: ") + ncclGetErrorString(ncclRemoteError));

  EndingScript hung{ncclInProgress, {{ncclInProgress}}};
  ScriptedClock c2;
  const auto b = ns::end_communicator(hung.ops(), false, 3.0, c2.clock());
  EXPECT_EQ(b.ending, ns::Ending::aborted);
  EXPECT_EQ(hung.calls, (std::vector<std::string>{"finalize", "abort"}));
  EXPECT_EQ(b.why, "CommFinalize timed out after 4 s (still in progress)");
}

TEST(NcclStatus, EndWhileUnwindingAbortsWithoutFinalizing) {
  EndingScript s{ncclSuccess, {{ncclSuccess}}};
  ScriptedClock clock;
  const auto end = ns::end_communicator(s.ops(), true, 30.0, clock.clock());
  EXPECT_EQ(end.ending, ns::Ending::aborted);
  EXPECT_EQ(s.calls, (std::vector<std::string>{"abort"}));
  EXPECT_EQ(s.state.polls, 0);
}
#endif  // EVOQ_HAVE_NCCL
