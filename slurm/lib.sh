# shellcheck shell=bash
# Helpers shared by the evoq batch scripts (sourced after env.sh). Bash only.
#
# Pre-emption protocol (docs/SLURM.md): jobs are submitted with `--requeue --signal=B:USR1@<s>`, so
# Slurm sends SIGUSR1 to this batch shell <s> seconds before the time limit (or before pre-emption
# with PreemptMode=REQUEUE and a GraceTime). What happens next depends on the stage:
#   forward  (training): the signal is passed on to the srun step (srun hands it to every rank); the
#            ranks finish their step, write a checkpoint and exit with status 75; the script then
#            requeues its own job, which resumes from that checkpoint.
#   requeue  (voting, evaluation): the job requeues itself at once; finished work is already on disk
#            (vote shards / eval score files, flushed every few pairs or images) and is skipped on rerun.
# `scontrol requeue <job>` from outside (an admin, a test) sends SIGTERM to every process of the job;
# evoq's training ranks treat SIGTERM like SIGUSR1 (checkpoint after the current step), so a requeue
# within KillWait seconds of the step end loses nothing either.

# shellcheck disable=SC2034
EVOQ_EXIT_STOPPED=75   # evoq train: "stopped by a signal, checkpoint written, resume me" (EX_TEMPFAIL)

evoq_log() { echo "[$(date +%H:%M:%S) ${SLURM_JOB_ID:-nojob}] $*" >&2; }

# The srun prefix of an MPI step over the whole allocation ("${EVOQ_SRUN[@]}" evoq ...). One failing
# rank ends the step (the others may be waiting in a collective).
# shellcheck disable=SC2034  # used by the scripts that source this file
EVOQ_SRUN=(srun --mpi="$EVOQ_SRUN_MPI" --kill-on-bad-exit=1)

# evoq_requeue: put this job back in the queue (it resumes from its on-disk state) and set
# EVOQ_REQUEUED=1 on success. A job that Slurm is already requeueing answers "Job is pending
# execution": that counts as success.
# shellcheck disable=SC2034
EVOQ_REQUEUED=0
evoq_requeue() {
  local msg
  evoq_log "requeueing job $SLURM_JOB_ID (restart count ${SLURM_RESTART_COUNT:-0})"
  if msg=$(scontrol requeue "$SLURM_JOB_ID" 2>&1) || [[ $msg == *"pending execution"* ]]; then
    EVOQ_REQUEUED=1
  else
    evoq_log "scontrol requeue failed: $msg"
  fi
}

# evoq_step_failed STAGE RC RESUME: the one line that says why the job fails (before `exit RC`). A rank
# that fails, or a node that is lost, ends the whole srun step (--kill-on-bad-exit); srun names the
# node and tasks on the lines above. The jobs that depend on this one are then cancelled.
evoq_step_failed() {
  evoq_log "$1: FAILED: the srun step ended with status $2 (a rank failed or a node was lost: see the srun lines above); jobs waiting on this one (afterok) are cancelled. $3"
}

# evoq_run_step MODE CMD...: runs CMD (an srun line) in the background with the pre-emption trap of
# MODE (forward | requeue) and returns CMD's exit status. Bash runs a trap only between commands, so the
# step must not run in the foreground: `wait` returns early on a signal and is called again until the
# step has really ended.
evoq_run_step() {
  local mode=$1; shift
  local pid rc
  "$@" &
  pid=$!
  EVOQ_STEP_PID=$pid
  # shellcheck disable=SC2034
  EVOQ_PREEMPTED=0
  if [ "$mode" = forward ]; then
    trap 'EVOQ_PREEMPTED=1; evoq_log "SIGUSR1: forwarding to the ranks"; kill -USR1 "$EVOQ_STEP_PID" 2>/dev/null || true' USR1
  else
    trap 'EVOQ_PREEMPTED=1; evoq_log "SIGUSR1: requeue (finished work is on disk)"; evoq_requeue; kill -TERM "$EVOQ_STEP_PID" 2>/dev/null || true' USR1
  fi
  # SIGTERM (scancel, scontrol requeue, node shutdown) reaches the ranks from slurmd directly; the
  # shell only has to keep waiting for them.
  trap 'EVOQ_PREEMPTED=1; evoq_log "SIGTERM: waiting for the ranks to stop"' TERM
  while :; do
    rc=0
    wait "$pid" || rc=$?
    kill -0 "$pid" 2>/dev/null || break
  done
  trap - USR1 TERM
  return "$rc"
}
