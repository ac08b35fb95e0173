#!/usr/bin/env bash
# CI test of the Slurm pipeline on a real (private, single-node) Slurm: starts munged + slurmctld +
# slurmd (tests/slurm/cluster.sh), then
#   1. submits the real slurm/submit_pipeline.sh --local (2 CPU tasks, 1 round, tiny sizes) on a tiny
#      random Qwen2.5-VL, waits for every job, and checks that every job completed and every output
#      exists and reads back with h5py / transformers;
#   2. submits slurm/train.sbatch again with the same inputs, requeues it with `scontrol requeue` while
#      it trains (after its first checkpoint), and checks that it ran twice, resumed from its
#      checkpoint, and ended with weights identical (every safetensors tensor) to the uninterrupted
#      training of case 1;
#   3. the pre-emption path: sends SIGUSR1 to the batch shell of a third training job (what
#      --signal=B:USR1@<s> does); the script forwards it to the ranks, they checkpoint and exit 75, the
#      job requeues itself, resumes, and again ends with identical weights.
# The daemons and jobs it started are stopped on exit, failure included.
# Exit status 77 (CTest: skipped) when Slurm/munge are not installed or not running as root.
# Environment: EVOQ_BIN (evoq binary), EVOQ_SOURCE_DIR, EVOQ_PYTHON (python with torch, transformers, h5py).
set -euo pipefail
src=${EVOQ_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
py=${EVOQ_PYTHON:-python3}
skip() { echo "SKIPPED: $*"; exit 77; }
for b in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged; do
  [ -x "$b" ] || skip "$b not installed (Debian packages slurm-wlm and munge; scripts/setup.sh installs them)"
done
command -v sbatch >/dev/null || skip "sbatch not found"
[ "$(id -u)" = 0 ] || skip "slurmd needs root"
: "${EVOQ_BIN:?set EVOQ_BIN to the evoq binary}"

work=$(mktemp -d /tmp/evoq-slurm-test.XXXXXX)
chmod 0755 "$work"
export SLURM_CONF=$work/cluster/slurm.conf
t0=$(date +%s)
log() { echo "[$(($(date +%s) - t0)) s] $*"; }
cleanup() {
  local rc=$?
  if [ -f "$SLURM_CONF" ]; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true   # only this private cluster's jobs
    for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  bash "$src/tests/slurm/cluster.sh" stop "$work/cluster" || true
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
    echo "---- FAILED (status $rc); job logs and daemon logs:"
    for f in "$work"/run/logs/* "$work"/logs/* "$work"/cluster/log/slurmctld.log; do
      [ -f "$f" ] && { echo "==== $f"; tail -n 40 "$f"; }
    done
  fi
  rm -rf "$work"
  log "done (status $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting munged, slurmctld, slurmd in $work/cluster"
eval "$(bash "$src/tests/slurm/cluster.sh" start "$work/cluster" 4)"
sinfo

log "tiny model, images, config"
OMP_NUM_THREADS=1 "$py" "$src/tests/slurm/make_inputs.py" "$work/in" >/dev/null 2>"$work/make_inputs.err" ||
  { cat "$work/make_inputs.err"; exit 1; }

# What the batch jobs see (sbatch --export=ALL): the binary under test, CPU threads.
export EVOQ=$EVOQ_BIN EVOQ_ROOT=$src OMP_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1

# wait_jobs TIMEOUT ID...: waits until none of the jobs is queued or running; fails on timeout.
wait_jobs() {
  local timeout=$1; shift
  local end=$(($(date +%s) + timeout))
  while [ -n "$(squeue -h -j "$(IFS=,; echo "$*")" 2>/dev/null)" ]; do
    if [ "$(date +%s)" -gt "$end" ]; then
      echo "jobs $* still queued after $timeout s:"; squeue; return 1
    fi
    sleep 0.5
  done
}
job_field() { scontrol show job -o "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
expect_completed() {
  local id state
  for id in "$@"; do
    state=$(job_field "$id" JobState)
    [ "$state" = COMPLETED ] || { echo "job $id ended $state (exit $(job_field "$id" ExitCode))"; return 1; }
  done
}

# ---- 1. the whole pipeline, one round ------------------------------------------------------------
log "case 1: submit_pipeline.sh --local, 1 round"
bash "$src/slurm/submit_pipeline.sh" --local --rounds 1 --run "$work/run" --model "$work/in/model" \
  --manifest "$work/in/images" --num-pairs 4 --config "$work/in/tiny.cfg" | tee "$work/submit.out"
ids=$(sed -n 's/^jobs: //p' "$work/submit.out")
[ "$(wc -w <<<"$ids")" = 3 ] || { echo "expected 3 job ids, got '$ids'"; exit 1; }
wait_jobs 170 $ids
expect_completed $ids
log "case 1: all jobs completed"
"$py" - "$work/run/round_1" <<'PY'
import json, os, sys
import h5py, numpy as np, torch, transformers as tf
torch.set_num_threads(1)
r = sys.argv[1]
with h5py.File(os.path.join(r, "pairs.h5"), "r") as f:
    n = len(f["pair_i"])
    assert n == 4, (n, list(f.keys()))
with h5py.File(os.path.join(r, "labels.h5"), "r") as f:
    keys = list(f.keys())
    p = f["p_star"][:]
    assert len(p) == 4, keys
    assert np.isfinite(p).any(), "no labelled pair"
ck = os.path.join(r, "train", "checkpoints")
latest = open(os.path.join(ck, "latest")).read().strip()
assert os.path.realpath(os.path.join(r, "model")) == os.path.realpath(os.path.join(ck, latest, "model"))
assert latest.endswith("4"), latest
metrics = [json.loads(l) for l in open(os.path.join(r, "train", "metrics.jsonl"))]
assert [m["step"] for m in metrics] == [0, 1, 2, 3], [m.get("step") for m in metrics]
m = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(os.path.join(r, "model"))  # loads in transformers
base = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(os.path.join(r, "..", "..", "in", "model"))
# (compared through transformers: evoq writes the classic tensor names, transformers 5 its own)
changed = sum(not torch.equal(a, b) for a, b in zip(m.state_dict().values(), base.state_dict().values()))
assert changed > 0, "training changed no tensor"
res = json.load(open(os.path.join(r, "eval", "results.json")))
assert res["datasets"][0]["images"] == 6, res["datasets"]
print("case 1 outputs OK:", n, "pairs,", int(np.isfinite(p).sum()), "labelled,", latest, ",", changed,
      "tensors changed, eval keys", sorted(res)[:4])
PY

# ---- 2./3. training requeued mid-run resumes to identical weights -------------------------------
# train_again NAME: submits slurm/train.sbatch like the pipeline did (same inputs and config).
train_again() {
  sbatch --parsable --chdir="$src" --requeue --open-mode=append --job-name="evoq-$1" \
    --output="$work/logs/$1-%j.out" --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 \
    --export="ALL,EVOQ_DEVICE=cpu,MODEL=$work/in/model,LABELS=$work/run/round_1/labels.h5,OUT=$work/$1,CONFIG=$work/in/tiny.cfg" \
    "$src/slurm/train.sbatch"
}
# wait_checkpoint DIR: until the training in DIR has written its first checkpoint.
wait_checkpoint() {
  local end=$(($(date +%s) + 90))
  until [ -f "$1/checkpoints/latest" ]; do
    [ "$(date +%s)" -lt "$end" ] || { echo "no checkpoint in $1 after 90 s"; return 1; }
    sleep 0.2
  done
}
# same_weights DIR...: the final checkpoint of each training run in DIR has every tensor identical to
# case 1's uninterrupted training.
same_weights() {
  "$py" - "$work/run/round_1/model" "$@" <<'PY'
import os, sys
from safetensors.torch import load_file
a = load_file(os.path.join(sys.argv[1], "model.safetensors"))
for out in sys.argv[2:]:
    latest = open(os.path.join(out, "checkpoints", "latest")).read().strip()
    b = load_file(os.path.join(out, "checkpoints", latest, "model", "model.safetensors"))
    assert a.keys() == b.keys()
    diff = [k for k in a if not (a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and (a[k] == b[k]).all())]
    assert not diff, f"{out}: {len(diff)} tensors differ from the uninterrupted run, e.g. {diff[:3]}"
    print(f"{out}: {latest}, all {len(a)} tensors identical to the uninterrupted run")
PY
}
mkdir -p "$work/logs"

# Both run at once (the node declares 4 CPUs on 2 cores): their requeue delays overlap.
log "cases 2 and 3: two more trainings; scontrol requeue / SIGUSR1 after their first checkpoint"
j2=$(train_again requeued)
j3=$(train_again preempted)
wait_checkpoint "$work/requeued"
scontrol requeue "$j2"
log "case 2: requeued job $j2"
wait_checkpoint "$work/preempted"
scancel --batch --signal=USR1 "$j3"   # what --signal=B:USR1@<s> does before the time limit
log "case 3: sent SIGUSR1 to the batch shell of job $j3"
wait_jobs 150 "$j2" "$j3"
expect_completed "$j2" "$j3"
for j in "$j2" "$j3"; do
  [ "$(job_field "$j" Restarts)" -ge 1 ] || { echo "job $j was not restarted"; exit 1; }
done
grep -q "resuming from" "$work"/logs/requeued-*.out || { echo "job $j2 did not resume from a checkpoint"; exit 1; }
grep -q "SIGUSR1: forwarding" "$work"/logs/preempted-*.out || { echo "job $j3: SIGUSR1 not forwarded"; exit 1; }
grep -q "requeueing job $j3" "$work"/logs/preempted-*.out || { echo "job $j3 did not requeue itself"; exit 1; }
grep -q "resuming from" "$work"/logs/preempted-*.out || { echo "job $j3 did not resume from a checkpoint"; exit 1; }
same_weights "$work/requeued" "$work/preempted"
log "ALL SLURM CASES PASSED"
