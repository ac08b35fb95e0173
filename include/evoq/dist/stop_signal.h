#pragma once
// Graceful stop of a training run: SIGUSR1 (what Slurm sends before the time limit with
// `--signal=USR1@120`) and SIGTERM only set a flag; the trainer polls stop_requested_anywhere() once per
// step (a collective, so every rank stops after the same step), writes a checkpoint and exits with
// kExitStoppedBySignal so that a job script can tell "stopped cleanly, resume me" from success (0)
// and failure.
#include <atomic>

namespace evoq::dist {
class Communicator;
}

namespace evoq::dist {

// Exit status after a signal-requested stop whose checkpoint was written: 75 (EX_TEMPFAIL in
// sysexits.h: "temporary failure, try again" -> resubmit with --resume).
inline constexpr int kExitStoppedBySignal = 75;

// Installs the SIGUSR1 and SIGTERM handlers (idempotent). The handlers are async-signal-safe: they
// store into a lock-free atomic and nothing else.
void install_stop_handlers();

// This process received a stop signal (or request_stop() was called).
bool stop_requested();

// Sets the flag as a signal would (tests, or a trainer that wants to stop itself).
void request_stop();
void clear_stop_request();

// Collective: true on every rank when any rank has received a stop signal (an all-gather of the flags).
bool stop_requested_anywhere(Communicator& comm);

}  // namespace evoq::dist
