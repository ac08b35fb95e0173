#pragma once
// Failures that every rank agrees on. A rank that fails alone (its disk is full, its file is corrupt)
// must not leave the others waiting in the next collective, and every rank of the job should end
// with the same exit status and the same one-line reason. run_agreed() runs a piece of work, then
// exchanges the outcome over host bytes (MPI, also for NCCL jobs: no waiting-time limit there, so a
// rank may spend minutes writing a large file while the others wait).
#include <functional>
#include <string>

#include "evoq/dist/communicator.h"

namespace evoq::dist {

// Collective. Runs fn on every rank (or on rank 0 only, with root_only), then: if fn threw on any rank,
// every rank throws evoq::Error "<what>: <message>" (the message of the lowest failing rank, naming
// it when that is another rank). Other exception types are turned into the same error.
void run_agreed(Communicator& comm, const std::string& what, bool root_only, const std::function<void()>& fn);

// Collective: rank 0's error message (or the lowest failing rank's) when any rank passes a non-empty
// `error`, else "". For loops that catch their own failure and must still reach the agreement.
std::string agree_on_error(Communicator& comm, const std::string& error);

// Collective: rank 0 runs `check`, which returns "" when all is well or a usage error's message; then every
// rank throws evoq::UsageError with that message (exit status 2 everywhere). A check that throws is agreed
// as in run_agreed. For refusals that depend on files rank 0 is about to write.
void refuse_alike(Communicator& comm, const std::string& what, const std::function<std::string()>& check);

// Collective: rank 0's SHA-256 of the weights in model_dir (io::weights_checksum; only rank 0 reads them),
// known to every rank; a failure is agreed as in run_agreed(what, ...). The one way stages fingerprint the
// model they run with.
std::string shared_weights_checksum(Communicator& comm, const std::string& what, const std::string& model_dir);

}  // namespace evoq::dist
