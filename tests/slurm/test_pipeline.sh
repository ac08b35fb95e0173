#!/usr/bin/env bash
# CI test of the Slurm pipeline on a real Slurm cluster of two compute nodes on this machine
# (tests/slurm/cluster.sh: slurmctld and two slurmd, each node a network namespace with its own address
# and hostname; munge and the file system shared). It submits the real slurm/ scripts, unchanged, on a
# tiny random Qwen2.5-VL with CPU ranks, one round (vote -> train -> eval) each:
#   R  reference on ONE node: submit_pipeline.sh --nodes 1 --tasks-per-node 4 --eval-tasks 2; every job
#      completes and pairs.h5, labels.h5 (h5py), the round model (transformers) and the eval results
#      read back. (--local, the CPU preset, is checked on its --dry-run sbatch lines.)
#   M  the same on TWO nodes (--nodes 2 --tasks-per-node 2), pre-empted twice: SIGUSR1 to the vote job's
#      batch shell after its first flushed pairs (what --signal=B:USR1@<s> does: the job requeues itself)
#      and `scontrol requeue` of the train job after its first checkpoint. Ranks 0-1 run on node 1 and
#      2-3 on node 2 (seen from every rank's namespace and Slurm variables); the afterok chain goes on;
#      labels, final weights and eval scores identical to R.
#   N  two nodes again: SIGUSR1 to the train job (forwarded to the ranks: checkpoint, exit 75, the job
#      requeues itself), then node 2 fails after the resumed job's next checkpoint (cluster.sh node-kill:
#      node 2's slurmd and ranks killed): the job fails with a clear line, the eval after it is cancelled
#      (--kill-on-invalid-dep); node 2 comes back and submit_pipeline.sh with the same --run finishes
#      with R's labels, weights and eval scores.
# Every fault is synchronised on observed progress, never on time: once the progress file appears
# (a checkpoint, a shard of finished pairs) the job's ranks are frozen (SIGSTOP), the test checks that
# work remains (checkpoint step < total steps, pairs voted < pairs), delivers the fault, waits until it
# has reached the ranks (signal pending, or Slurm's own SIGCONT + SIGTERM of a requeue), and thaws them
# (SIGCONT). Afterwards the logs must show the stop and the resume from that point; a fault that did not
# land fails the test (no restart, no resume, or "training ended before the fault").
# The daemons, namespaces and jobs it started are removed on exit, failure included.
# Exit status 77 (CTest: skipped) when Slurm/munge are not installed, not running as root, or the
# kernel refuses network namespaces.
# Environment: EVOQ_BIN (evoq binary), EVOQ_SOURCE_DIR, EVOQ_PYTHON (python with torch, transformers, h5py).
set -euo pipefail
src=${EVOQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
py=${EVOQ_PYTHON:-python3}
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
for b in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged; do
  [ -x "$b" ] || skip "$b not installed (Debian packages slurm-wlm and munge; scripts/setup.sh installs them)"
done
for b in sbatch ip nsenter unshare; do command -v "$b" >/dev/null || skip "$b not found"; done
[ "$(id -u)" = 0 ] || skip "slurmd and network namespaces need root"
: "${EVOQ_BIN:?set EVOQ_BIN to the evoq binary}"
EVOQ_BIN=$(realpath "$EVOQ_BIN")

work=$(mktemp -d /tmp/evoq-slurm-test.XXXXXX)
chmod 0755 "$work"
cluster=$work/cluster
t0=$(date +%s)
log() { echo "[$(($(date +%s) - t0)) s] $*"; }
cleanup() {
  local rc=$?
  if [ -f "$cluster/slurm.conf" ] && [ -n "${EVOQ_CTL_NS:-}" ]; then
    kill -CONT ${FROZEN:-} 2>/dev/null || true
    scancel --full --quiet 2>/dev/null || true   # only this private cluster's jobs
    for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  bash "$src/tests/slurm/cluster.sh" stop "$cluster" || true
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
    echo "---- FAILED (status $rc); job logs and daemon logs:"
    for f in "$work"/*/logs/* "$cluster"/log/*.log; do
      [ -f "$f" ] && { echo "==== $f"; tail -n 40 "$f"; }
    done
  fi
  rm -rf "$work"
  log "done (status $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting munged, slurmctld and two slurmd (one network namespace each) in $cluster"
rc=0
out=$(bash "$src/tests/slurm/cluster.sh" start "$cluster" 2 8) || rc=$?
[ "$rc" = 77 ] && skip "${out#SKIPPED: }"
[ "$rc" = 0 ] || fail "cluster.sh start failed ($rc): $out"
eval "$out"
# The Slurm client commands talk to slurmctld in its namespace.
in_ctl() { nsenter --net="/run/netns/$EVOQ_CTL_NS" -- "$@"; }
sbatch() { in_ctl sbatch "$@"; }
squeue() { in_ctl squeue "$@"; }
scontrol() { in_ctl scontrol "$@"; }
scancel() { in_ctl scancel "$@"; }
sinfo() { in_ctl sinfo "$@"; }
sinfo -N -o '%N %t %c %n %o'

log "tiny model, images, config"
OMP_NUM_THREADS=1 "$py" "$src/tests/slurm/make_inputs.py" "$work/in" >/dev/null 2>"$work/make_inputs.err" ||
  { cat "$work/make_inputs.err"; exit 1; }
TOTAL_STEPS=$(sed -n '/^\[train\]/,/^\[/s/^steps = //p' "$work/in/tiny.cfg")
NUM_PAIRS=64   # 16 per rank: the voters are frozen after their first flushed pair

# What the batch jobs see (sbatch --export=ALL): the binary under test, CPU ranks, one thread each.
export EVOQ=$EVOQ_BIN EVOQ_ROOT=$src EVOQ_DEVICE=cpu OMP_NUM_THREADS=1

# ---- helpers -------------------------------------------------------------------------------------
# wait_jobs TIMEOUT ID...: until none of the jobs is queued or running; fails on timeout.
wait_jobs() {
  local timeout=$1; shift
  local end=$(($(date +%s) + timeout))
  local queued
  while queued=$(squeue -h -j "$(IFS=,; echo "$*")") || fail "squeue -j $* failed"; [ -n "$queued" ]; do
    [ "$(date +%s)" -le "$end" ] || { squeue; fail "jobs $* still queued after $timeout s"; }
    sleep 0.5
  done
}
# wait_for SECONDS WHAT CMD...: polls CMD every 0.2 s until it succeeds; fails after SECONDS.
wait_for() {
  local end=$(($(date +%s) + $1)) what=$2; shift 2
  until "$@"; do
    [ "$(date +%s)" -le "$end" ] || { squeue || true; fail "$what: not within $1 s"; }
    sleep 0.2
  done
}
# log_has RUN JOB PATTERN (grep reads all: with pipefail, grep -q could SIGPIPE job_log into a failure)
log_has() { job_log "$1" "$2" | grep -- "$3" >/dev/null; }
job_is() { [ "$(job_field "$1" JobState)" = "$2" ]; }
job_field() { scontrol show job -o "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
expect_state() {
  local want=$1 id state; shift
  for id in "$@"; do
    state=$(job_field "$id" JobState)
    [ "$state" = "$want" ] || fail "job $id ended $state (exit $(job_field "$id" ExitCode)), expected $want"
  done
}
# submit NAME ARGS...: submit_pipeline.sh for one round of run NAME (folder $work/NAME); sets IDS to
# "vote train eval" job ids.
submit() {
  local name=$1; shift
  in_ctl bash "$src/slurm/submit_pipeline.sh" --rounds 1 --run "$work/$name" --model "$work/in/model" \
    --manifest "$work/in/images" --num-pairs "$NUM_PAIRS" --config "$work/in/tiny.cfg" \
    --gpus-per-node 0 --cpus-per-task 1 "$@" > "$work/$name.submit"
  IDS=$(sed -n 's/^jobs: //p' "$work/$name.submit")
  [ "$(wc -w <<<"$IDS")" = 3 ] || fail "expected 3 job ids from submit_pipeline.sh, got '$IDS'"
  log "$name: submitted jobs $IDS ($*)"
}
job_log() { cat "$work/$1"/logs/*-"$2".out 2>/dev/null; }   # submit_pipeline.sh: RUN/logs/<stage>-<id>.out

# ranks OUT: pids of the evoq ranks (argv[0] = the binary) whose command line has `--out OUT`.
ranks() {
  local f pid i argv
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    { mapfile -d '' -t argv < "$f"; } 2>/dev/null || continue
    [ "${argv[0]:-}" = "$EVOQ_BIN" ] || continue
    for ((i = 1; i + 1 < ${#argv[@]}; i++)); do
      if [ "${argv[i]}" = --out ] && [ "${argv[i + 1]}" = "$1" ]; then echo "$pid"; break; fi
    done
  done
}
proc_state() { sed -n 's/^State:\t\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null; }
# FROZEN: the pids stopped by freeze (cleanup thaws them whatever happens).
FROZEN=""
# find_ranks OUT N: waits (600 s at most) until the N ranks of OUT run; sets PIDS.
find_ranks() {
  local end=$(($(date +%s) + 600))
  until PIDS=$(ranks "$1") && [ "$(wc -w <<<"$PIDS")" = "$2" ]; do
    [ "$(date +%s)" -le "$end" ] || fail "$2 ranks writing to $1 did not appear within 600 s (found: $PIDS)"
    sleep 0.2
  done
}
# freeze_when OUT TEST...: polls TEST (a command) every 20 ms and, as soon as it succeeds, stops the ranks
# in PIDS (found beforehand, so that the stop follows the observation at once); then checks that they
# are all stopped and are still every rank writing to OUT.
freeze_when() {
  local out=$1 pid end=$(($(date +%s) + 600)); shift
  until "$@"; do
    [ "$(date +%s)" -le "$end" ] || fail "$out: '$*' not true within 600 s"
    sleep 0.02
  done
  # shellcheck disable=SC2086
  kill -STOP $PIDS 2>/dev/null || true
  FROZEN=$PIDS
  for pid in $PIDS; do
    until [ "$(proc_state "$pid")" = T ]; do
      [ -e "/proc/$pid" ] || fail "rank $pid of $out ended before it could be frozen (the job finished before the fault)"
      sleep 0.01
    done
  done
  [ "$(ranks "$out" | sort | xargs)" = "$(sort <<<"$PIDS" | xargs)" ] || fail "the ranks writing to $out changed while freezing"
}
thaw() {
  # shellcheck disable=SC2086
  kill -CONT $FROZEN 2>/dev/null || true
  FROZEN=""
}
# wait_landed SIGNAL: until every frozen rank has SIGNAL pending, has been continued by Slurm (a
# requeue or cancel sends SIGCONT, then SIGTERM) or is gone.
wait_landed() {
  local bit=$((1 << ($1 - 1))) end=$(($(date +%s) + 60)) pid pending
  for pid in $FROZEN; do
    while [ "$(proc_state "$pid")" = T ]; do
      pending=$(awk '/^(SigPnd|ShdPnd):/ {printf "%s ", $2}' "/proc/$pid/status" 2>/dev/null) || break
      read -r a b <<<"$pending"
      (( (0x${a:-0} | 0x${b:-0}) & bit )) && break
      [ "$(date +%s)" -le "$end" ] || fail "signal $1 did not reach rank $pid within 60 s"
      sleep 0.05
    done
  done
}
ckpt_step() {   # ckpt_step TRAIN_OUT: step of the newest checkpoint (0 when none)
  local l
  l=$(cat "$1/checkpoints/latest" 2>/dev/null) || { echo 0; return; }
  l=${l##*-}; echo $((10#$l))
}
# freeze_training OUT AFTER N: once OUT's N ranks run, waits for a checkpoint after step AFTER, freezes
# them and checks that training is unfinished; sets STEP to the checkpoint's step.
freeze_training() {
  find_ranks "$1" "$3"
  freeze_when "$1" ckpt_after "$1" "$2"
  STEP=$(ckpt_step "$1")
  [ "$STEP" -lt "$TOTAL_STEPS" ] || fail "training in $1 ended (step $STEP of $TOTAL_STEPS) before the fault could land"
  log "froze the $3 training ranks of $1 at checkpoint step $STEP of $TOTAL_STEPS"
}
has_shard() { compgen -G "$1.shards/labels-shard-r*.h5" >/dev/null; }
ckpt_after() { [ "$(ckpt_step "$1")" -gt "$2" ]; }
# freeze_voting LABELS N: once the N voters run, waits until one has flushed finished pairs to
# LABELS.shards, freezes them and checks that pairs remain; sets VOTED to the pairs on disk.
freeze_voting() {
  find_ranks "$1" "$2"
  freeze_when "$1" has_shard "$1"
  [ ! -e "$1" ] || fail "$1 already merged: the vote ended before the fault could land"
  VOTED=$("$py" -c 'import glob, sys, h5py
print(sum(len(h5py.File(f, "r")["pair_index"]) for f in glob.glob(sys.argv[1] + ".shards/labels-shard-r*.h5")))' "$1")
  [ "$VOTED" -lt "$NUM_PAIRS" ] || fail "all $NUM_PAIRS pairs voted before the fault could land"
  log "froze the $2 voting ranks of $1 with $VOTED of $NUM_PAIRS pairs on disk"
}
# placement OUT: every frozen rank's node (its network namespace) and Slurm task ids; checks that ranks
# 0-1 run on node 1 and 2-3 on node 2, with local ids 0 and 1 on each.
placement() {
  local pid env ns procid localid node got=""
  for pid in $FROZEN; do
    env=$(tr '\0' '\n' < "/proc/$pid/environ")
    procid=$(sed -n 's/^SLURM_PROCID=//p' <<<"$env")
    localid=$(sed -n 's/^SLURM_LOCALID=//p' <<<"$env")
    node=$(sed -n 's/^SLURMD_NODENAME=//p' <<<"$env")
    ns=$(ip netns identify "$pid")
    echo "  rank $procid: local id $localid, node $node, network namespace $ns, host $(nsenter --uts --target "$pid" hostname)"
    got+="$procid:$localid:$node:${ns##*-} "
  done
  got=$(tr ' ' '\n' <<<"$got" | sort | xargs)
  [ "$got" = "0:0:evoqn1:n1 1:1:evoqn1:n1 2:0:evoqn2:n2 3:1:evoqn2:n2" ] ||
    fail "rank placement of $1: got '$got', expected ranks 0-1 on evoqn1 (ns n1), 2-3 on evoqn2 (ns n2)"
}

# --local, the CPU preset of submit_pipeline.sh, sets resources only: checked on its sbatch lines.
bash "$src/slurm/submit_pipeline.sh" --local --dry-run --rounds 1 --run "$work/local" --model "$work/in/model" \
  --manifest "$work/in/images" 2>"$work/local.dry" >/dev/null
[ "$(grep -c -- "--nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 .*/slurm/\(vote\|train\).sbatch" "$work/local.dry")" = 2 ] &&
  grep -q -- "--nodes=1 --ntasks=2 --cpus-per-task=1 --gpus-per-node=0 .*/slurm/eval.sbatch" "$work/local.dry" ||
  { cat "$work/local.dry"; fail "submit_pipeline.sh --local: unexpected resources"; }

# ---- R: the reference round on one node ------------------------------------------------------------
# Its eval job has 2 tasks, as the two-node runs' (one node, --tasks-per-node): evoq eval's sampled scores
# depend on how the images are split over the ranks.
submit R --nodes 1 --tasks-per-node 4 --eval-tasks 2
read -r r_vote r_train r_eval <<<"$IDS"

# ---- M: two nodes, vote and train pre-empted ---------------------------------------------------------
submit M --nodes 2 --tasks-per-node 2
read -r m_vote m_train m_eval <<<"$IDS"
freeze_voting "$work/M/round_1/labels.h5" 4
placement "$work/M/round_1/labels.h5"
scancel --batch --signal=USR1 "$m_vote"    # what --signal=B:USR1@<s> does before the time limit
wait_for 120 "vote job $m_vote requeueing itself on SIGUSR1" log_has M "$m_vote" "requeueing job $m_vote"
wait_landed 15
thaw
log "M: vote job $m_vote requeued itself on SIGUSR1 with $VOTED of $NUM_PAIRS pairs voted"
freeze_training "$work/M/round_1/train" 0 4
placement "$work/M/round_1/train"
scontrol requeue "$m_train"
wait_landed 15
thaw
m_requeue_step=$STEP
log "M: train job $m_train requeued at step $STEP"
wait_jobs 900 $r_vote $r_train $r_eval $m_vote $m_train $m_eval
expect_state COMPLETED $r_vote $r_train $r_eval $m_vote $m_train $m_eval
log "R and M: all jobs completed"
for j in "$m_vote" "$m_train"; do
  [ "$(job_field "$j" Restarts)" -ge 1 ] || fail "job $j was not restarted"
done
log_has M "$m_vote" "SIGUSR1: requeue" || fail "vote job $m_vote: no SIGUSR1 trap line"
resumed=$(job_log M "$m_vote" | sed -n 's/.* \([0-9]*\) already finished in .*/\1/p' | tail -n 1)
[ -n "$resumed" ] && [ "$resumed" -ge "$VOTED" ] && [ "$resumed" -lt "$NUM_PAIRS" ] ||
  fail "vote job $m_vote: the rerun should skip between $VOTED and $((NUM_PAIRS - 1)) finished pairs, log says '${resumed}'"
resume_step=$(job_log M "$m_train" | sed -n 's/.*train: resuming from .*step-0*\([0-9]*\) at step.*/\1/p' | tail -n 1)
[ -n "$resume_step" ] && [ "$resume_step" -ge "$m_requeue_step" ] && [ "$resume_step" -lt "$TOTAL_STEPS" ] ||
  fail "train job $m_train: expected a resume from a step in [$m_requeue_step, $TOTAL_STEPS), log says '${resume_step}'"
log "M: vote rerun skipped $resumed voted pairs; train resumed from step $resume_step of $TOTAL_STEPS"
for n in evoqn1 evoqn2; do
  for j in "$m_vote" "$m_train"; do
    grep -q "launch task StepId=$j\.[0-9]* " "$cluster/log/slurmd-$n.log" || fail "slurmd of $n launched no step of job $j"
  done
done

TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 \
  "$py" - "$work/R/round_1" "$work/in/model" "$NUM_PAIRS" <<'PY'
import json, os, sys
import h5py, numpy as np, torch, transformers as tf
torch.set_num_threads(1)
r, base_dir, num_pairs = sys.argv[1], sys.argv[2], int(sys.argv[3])
with h5py.File(os.path.join(r, "pairs.h5"), "r") as f:
    n = len(f["pair_i"])
    assert n == num_pairs, (n, list(f.keys()))
with h5py.File(os.path.join(r, "labels.h5"), "r") as f:
    keys = list(f.keys())
    p = f["p_star"][:]
    assert len(p) == num_pairs, keys
    assert np.isfinite(p).any(), "no labelled pair"
ck = os.path.join(r, "train", "checkpoints")
latest = open(os.path.join(ck, "latest")).read().strip()
assert os.path.realpath(os.path.join(r, "model")) == os.path.realpath(os.path.join(ck, latest, "model"))
metrics = [json.loads(l) for l in open(os.path.join(r, "train", "metrics.jsonl"))]
steps = [m["step"] for m in metrics]
assert steps == list(range(len(steps))) and latest.endswith(str(len(steps))), (steps, latest)
m = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(os.path.join(r, "model"))  # loads in transformers
base = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(base_dir)
# (compared through transformers: evoq writes the classic tensor names, transformers 5 its own)
changed = sum(not torch.equal(a, b) for a, b in zip(m.state_dict().values(), base.state_dict().values()))
assert changed > 0, "training changed no tensor"
res = json.load(open(os.path.join(r, "eval", "results.json")))
images = sum(1 for _ in open(os.path.join(base_dir, "..", "eval.csv"))) - 1
assert res["datasets"][0]["images"] == images, res["datasets"]
print("R outputs OK:", n, "pairs,", int(np.isfinite(p).sum()), "labelled,", latest, ",", changed,
      "tensors changed, eval of", images, "images")
PY

# same_results RUN [eval]: RUN's pairs, labels and final weights (and eval scores) identical to R's.
same_results() {
  "$py" - "$work/R/round_1" "$work/$1/round_1" "${2:-}" <<'PY'
import json, os, sys
import h5py, numpy as np
from safetensors.torch import load_file
ref, run, with_eval = sys.argv[1], sys.argv[2], sys.argv[3] == "eval"
def same_datasets(name, skip=()):
    with h5py.File(os.path.join(ref, name), "r") as a, h5py.File(os.path.join(run, name), "r") as b:
        assert sorted(a.keys()) == sorted(b.keys()), (name, sorted(a.keys()), sorted(b.keys()))
        for k in a.keys():
            if k in skip:
                continue
            x, y = a[k][()], b[k][()]
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), \
                f"{run}/{name}: dataset {k} differs from the one-node run"
        return len(a.keys())
n_pairs = same_datasets("pairs.h5")
n_labels = same_datasets("labels.h5")
def final_weights(r):
    return load_file(os.path.join(r, "model", "model.safetensors"))
a, b = final_weights(ref), final_weights(run)
assert a.keys() == b.keys()
diff = [k for k in a if not (a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and (a[k] == b[k]).all())]
assert not diff, f"{run}: {len(diff)} of {len(a)} tensors differ from the one-node run, e.g. {diff[:3]}"
msg = f"{run}: pairs.h5 ({n_pairs} datasets), labels.h5 ({n_labels} datasets), all {len(a)} final tensors identical to R"
if with_eval:
    ra = json.load(open(os.path.join(ref, "eval", "results.json")))["datasets"]
    rb = json.load(open(os.path.join(run, "eval", "results.json")))["datasets"]
    strip = lambda d: [{k: v for k, v in x.items() if "seconds" not in k and "time" not in k} for x in d]
    assert strip(ra) == strip(rb), f"{run}: eval results differ from the one-node run:\n{ra}\n{rb}"
    msg += ", eval results identical"
print(msg)
PY
}
same_results M eval

# ---- N: two nodes, train pre-empted by SIGUSR1, then node 2 lost -------------------------------------
submit N --nodes 2 --tasks-per-node 2
read -r n_vote n_train n_eval <<<"$IDS"
freeze_training "$work/N/round_1/train" 0 4
scancel --batch --signal=USR1 "$n_train"
wait_landed 10   # the batch shell forwards SIGUSR1 to srun, srun to every rank
thaw
n_stop_step=$STEP
log "N: SIGUSR1 forwarded to the 4 frozen training ranks at step $STEP"
# The ranks checkpoint and exit 75, the job requeues itself and resumes; after its next checkpoint,
# node 2 is lost.
wait_for 600 "train job $n_train resuming after SIGUSR1" log_has N "$n_train" "train: resuming from"
freeze_training "$work/N/round_1/train" "$(ckpt_step "$work/N/round_1/train")" 4
n_lost_step=$STEP
bash "$src/tests/slurm/cluster.sh" node-kill "$cluster" 2
thaw
log "N: node evoqn2 failed at step $STEP (its slurmd and its two ranks killed)"
# Node 2's slurmstepd reports the killed ranks and srun (--kill-on-bad-exit) ends the step; the ranks on
# node 1, stuck in a collective with the dead ones, go at KillWait. The batch script then says why and
# fails. Slurm cannot confirm the job's end on node 2 while its slurmd is down, so the job stays
# COMPLETING, and the eval job waits, until node 2 is back.
wait_for 300 "the failure line of train job $n_train after the node failure" log_has N "$n_train" "train: FAILED"
log_has N "$n_train" "srun: error: evoqn2: tasks\? [23].*: Killed" || fail "train job $n_train: srun did not name the failed node's killed tasks"
log "N: the train job's log says:"
job_log N "$n_train" | grep "srun: error: evoqn2.*Killed\|train: FAILED" | sed 's/^/    /'
bash "$src/tests/slurm/cluster.sh" node-start "$cluster" 2
wait_jobs 300 "$n_vote" "$n_train"
# kill_invalid_depend cancels the eval job at the next scheduling pass.
wait_for 120 "eval job $n_eval cancelled after its train job failed" job_is "$n_eval" CANCELLED
log "N: node 2 back; the train job FAILED and its eval job was cancelled"
expect_state COMPLETED "$n_vote"
expect_state FAILED "$n_train"
log_has N "$n_train" "SIGUSR1: forwarding" || fail "job $n_train: SIGUSR1 not forwarded"
log_has N "$n_train" "stop requested: checkpoint written after step" || fail "job $n_train: the ranks did not stop on SIGUSR1"
log_has N "$n_train" "requeueing job $n_train" || fail "job $n_train did not requeue itself"
resume_step=$(job_log N "$n_train" | sed -n 's/.*train: resuming from .*step-0*\([0-9]*\) at step.*/\1/p' | head -n 1)
[ -n "$resume_step" ] && [ "$resume_step" -ge "$n_stop_step" ] && [ "$resume_step" -lt "$TOTAL_STEPS" ] ||
  fail "train job $n_train: expected a resume from a step in [$n_stop_step, $TOTAL_STEPS), log says '${resume_step}'"
log "N: resubmitting the pipeline with the same --run"
submit N --nodes 2 --tasks-per-node 2
read -r n_vote n_train n_eval <<<"$IDS"
wait_jobs 600 $n_vote $n_train $n_eval
expect_state COMPLETED $n_vote $n_train $n_eval
resume_step=$(job_log N "$n_train" | sed -n 's/.*train: resuming from .*step-0*\([0-9]*\) at step.*/\1/p' | tail -n 1)
[ "$resume_step" = "$n_lost_step" ] ||
  fail "resubmitted train job $n_train: expected a resume from step $n_lost_step (the last checkpoint before the node loss), log says '${resume_step}'"
log "N: the resubmitted pipeline completed; train resumed from step $resume_step"
same_results N eval
log "ALL SLURM CASES PASSED"
