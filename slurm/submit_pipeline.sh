#!/usr/bin/env bash
# Submits a whole multi-round EvoQuality pipeline as Slurm jobs chained with --dependency=afterok and
# prints their ids. Per round t (folder RUN/round_t):
#   vote   slurm/vote.sbatch   draws pairs.h5 from the round's manifest (one process, inside the job),
#                              then votes with the model of round t-1 -> labels.h5
#   train  slurm/train.sbatch  GRPO on labels.h5, model of round t-1 in -> RUN/round_t/model out
#   eval   slurm/eval.sbatch   scores the eval config's benchmarks with RUN/round_t/model -> eval/
# Round t+1's vote waits for round t's train; each eval waits for its train only (it runs beside the
# next round). Every job is --requeue with a pre-emption signal and resumes from its files (docs/SLURM.md).
#
# usage: slurm/submit_pipeline.sh --model DIR --manifest LIST [--manifest2 LIST] [options]
#   --run DIR            run folder (default: $EVOQ_RUNS/evoq-<date>)                      [RUN]
#   --rounds N           rounds (default 2)                                                [ROUNDS]
#   --model DIR          initial model (round 0), a Hugging Face checkpoint folder         [MODEL]
#   --manifest LIST      round 1 images: folder or list file (authentic images)           [MANIFEST]
#   --manifest2 LIST     rounds >= 2: list file "path,reference_id" of distorted images   [MANIFEST2]
#                        (default: --manifest)
#   --manifest-root DIR  folder the list files' paths are relative to                     [MANIFEST_ROOT]
#   --pair-mode1 MODE    round 1 pair mode (default random)                               [PAIR_MODE1]
#   --pair-mode2 MODE    rounds >= 2 pair mode (default same-reference)                   [PAIR_MODE2]
#   --num-pairs N        pairs per round (default: evoq pairs' default)                   [NUM_PAIRS]
#   --seed S             base seed; round t draws its pairs with S + t                     [SEED]
#   --reference MODE     pi_ref of training: base (the initial model in every round, the     [REFERENCE_MODE]
#                        paper's fixed reference; default) | round (round t-1's model)
#   --config FILE        one config for all stages ([vote] [train] [eval] sections)        [CONFIG]
#                        (default: jobs/vote.cfg, jobs/train.cfg, jobs/eval.cfg)
#   --eval-config FILE   config of the eval stage only                                     [EVAL_CONFIG]
#   --no-eval            do not submit the eval jobs
#   --eval-initial       also evaluate the initial model (RUN/round_0/eval, no dependency)
#   --nodes N  --tasks-per-node N  --gpus-per-node N  --cpus-per-task N                    [NODES TASKS_PER_NODE GPUS_PER_NODE CPUS_PER_TASK]
#                        resources of the vote and train jobs (default 1 node, 8 tasks, 8 GPUs, 8 CPUs)
#   --eval-tasks N       tasks of an eval job, on one node (default: --tasks-per-node)      [EVAL_TASKS]
#   --partition P  --account A  --qos Q  --time-vote T  --time-train T  --time-eval T       [PARTITION ACCOUNT QOS TIME_VOTE TIME_TRAIN TIME_EVAL]
#   --signal-seconds S   seconds of warning before the time limit (default: the scripts')   [SIGNAL_SECONDS]
#   --after JOBID        the first job waits for this job (afterok)                        [AFTER]
#   --local              CPU test mode: --device cpu, 1 node, 2 tasks, no GPUs, 1 CPU per task
#   --dry-run            print the sbatch commands instead of submitting
# Options may also come from the environment variables in brackets; flags win. The per-cluster set-up
# (modules, binary, paths, NCCL) is slurm/env.sh, or the file named by EVOQ_ENV.
# Output: one line per job "round <t> <stage> <jobid>", the same lines in RUN/jobs.txt, and last the
# line "jobs: <id> <id> ...".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EVOQ_ROOT=${EVOQ_ROOT:-$(dirname "$here")}
export EVOQ_ROOT

die() { echo "submit_pipeline: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

RUN=${RUN:-} ROUNDS=${ROUNDS:-2} MODEL=${MODEL:-} MANIFEST=${MANIFEST:-} MANIFEST2=${MANIFEST2:-}
MANIFEST_ROOT=${MANIFEST_ROOT:-} PAIR_MODE1=${PAIR_MODE1:-random} PAIR_MODE2=${PAIR_MODE2:-same-reference}
NUM_PAIRS=${NUM_PAIRS:-} SEED=${SEED:-0} CONFIG=${CONFIG:-} EVAL_CONFIG=${EVAL_CONFIG:-}
NODES=${NODES:-1} TASKS_PER_NODE=${TASKS_PER_NODE:-8} GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-8} EVAL_TASKS=${EVAL_TASKS:-} PARTITION=${PARTITION:-} ACCOUNT=${ACCOUNT:-}
QOS=${QOS:-} TIME_VOTE=${TIME_VOTE:-} TIME_TRAIN=${TIME_TRAIN:-} TIME_EVAL=${TIME_EVAL:-}
SIGNAL_SECONDS=${SIGNAL_SECONDS:-} AFTER=${AFTER:-}
REFERENCE_MODE=${REFERENCE_MODE:-base}
EVAL=1 EVAL_INITIAL=0 DRY_RUN=0 LOCAL=0

while (($#)); do
  opt=$1
  case "$opt" in
    --no-eval) EVAL=0; shift; continue ;;
    --eval-initial) EVAL_INITIAL=1; shift; continue ;;
    --local) LOCAL=1; shift; continue ;;
    --dry-run) DRY_RUN=1; shift; continue ;;
    -h|--help) usage 0 ;;
  esac
  (($# >= 2)) || die "$opt needs a value"
  val=$2; shift 2
  case "$opt" in
    --run) RUN=$val ;;
    --rounds) ROUNDS=$val ;;
    --reference) REFERENCE_MODE=$val ;;
    --model) MODEL=$val ;;
    --manifest) MANIFEST=$val ;;
    --manifest2) MANIFEST2=$val ;;
    --manifest-root) MANIFEST_ROOT=$val ;;
    --pair-mode1) PAIR_MODE1=$val ;;
    --pair-mode2) PAIR_MODE2=$val ;;
    --num-pairs) NUM_PAIRS=$val ;;
    --seed) SEED=$val ;;
    --config) CONFIG=$val ;;
    --eval-config) EVAL_CONFIG=$val ;;
    --nodes) NODES=$val ;;
    --tasks-per-node) TASKS_PER_NODE=$val ;;
    --gpus-per-node) GPUS_PER_NODE=$val ;;
    --cpus-per-task) CPUS_PER_TASK=$val ;;
    --eval-tasks) EVAL_TASKS=$val ;;
    --partition) PARTITION=$val ;;
    --account) ACCOUNT=$val ;;
    --qos) QOS=$val ;;
    --time-vote) TIME_VOTE=$val ;;
    --time-train) TIME_TRAIN=$val ;;
    --time-eval) TIME_EVAL=$val ;;
    --signal-seconds) SIGNAL_SECONDS=$val ;;
    --after) AFTER=$val ;;
    *) die "unknown option $opt (--help lists them)" ;;
  esac
done

if ((LOCAL)); then
  NODES=1 TASKS_PER_NODE=2 GPUS_PER_NODE=0 CPUS_PER_TASK=1
  export EVOQ_DEVICE=cpu
fi
[ -n "$MODEL" ] || die "--model is required (the initial model)"
[ -n "$MANIFEST" ] || die "--manifest is required (round 1 images)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer (got '$ROUNDS')"
[[ $REFERENCE_MODE == base || $REFERENCE_MODE == round ]] || die "--reference must be base or round (got '$REFERENCE_MODE')"
for n in NODES TASKS_PER_NODE GPUS_PER_NODE CPUS_PER_TASK; do
  [[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a non-negative integer (got '${!n}')"
done
[ -e "$MODEL" ] || die "--model '$MODEL' does not exist"
[ -e "$MANIFEST" ] || die "--manifest '$MANIFEST' does not exist"
[ -z "$MANIFEST2" ] || [ -e "$MANIFEST2" ] || die "--manifest2 '$MANIFEST2' does not exist"
[ -z "$CONFIG" ] || [ -f "$CONFIG" ] || die "--config '$CONFIG' does not exist"
[ -z "$EVAL_CONFIG" ] || [ -f "$EVAL_CONFIG" ] || die "--eval-config '$EVAL_CONFIG' does not exist"
: "${EVOQ_RUNS:=$EVOQ_ROOT/runs}"
RUN=${RUN:-$EVOQ_RUNS/evoq-$(date +%Y%m%d-%H%M%S)}
abs() { realpath -m "$1"; }
RUN=$(abs "$RUN") MODEL=$(abs "$MODEL") MANIFEST=$(abs "$MANIFEST")
[ -n "$MANIFEST2" ] && MANIFEST2=$(abs "$MANIFEST2")
[ -n "$MANIFEST_ROOT" ] && MANIFEST_ROOT=$(abs "$MANIFEST_ROOT")
[ -n "$CONFIG" ] && CONFIG=$(abs "$CONFIG")
[ -n "$EVAL_CONFIG" ] && EVAL_CONFIG=$(abs "$EVAL_CONFIG")
mkdir -p "$RUN/logs"

# Options common to every job. --chdir: the scripts find slurm/env.sh and jobs/ relative to the root.
common=(--parsable --chdir="$EVOQ_ROOT" --requeue --open-mode=append --kill-on-invalid-dep=yes)
[ -n "$PARTITION" ] && common+=(--partition="$PARTITION")
[ -n "$ACCOUNT" ] && common+=(--account="$ACCOUNT")
[ -n "$QOS" ] && common+=(--qos="$QOS")
[ -n "$SIGNAL_SECONDS" ] && common+=(--signal="B:USR1@$SIGNAL_SECONDS")
multi=(--nodes="$NODES" --ntasks-per-node="$TASKS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK"
       --gpus-per-node="$GPUS_PER_NODE")
eval_res=(--nodes=1 --ntasks="${EVAL_TASKS:-$TASKS_PER_NODE}" --cpus-per-task="$CPUS_PER_TASK"
          --gpus-per-node="$GPUS_PER_NODE")
((LOCAL)) && eval_res[1]=--ntasks="${EVAL_TASKS:-2}"

# Stage configs: one --config for all stages, else the stage's file in jobs/.
stage_config() {
  case $1 in
    eval) echo "${EVAL_CONFIG:-${CONFIG:-$EVOQ_ROOT/jobs/eval.cfg}}" ;;
    train) echo "${CONFIG:-}" ;;   # empty: train.sbatch takes jobs/train.cfg when it exists
    *) echo "${CONFIG:-$EVOQ_ROOT/jobs/$1.cfg}" ;;
  esac
}

: > "$RUN/jobs.txt"
ids=()
# submit ROUND STAGE DEPENDENCY EXPORTS SBATCH-ARGS... : submits, records and prints one job.
submit() {
  local round=$1 stage=$2 dep=$3 exports=$4; shift 4
  local cmd=(sbatch "${common[@]}" --job-name="evoq-r$round-$stage" --output="$RUN/logs/r$round-$stage-%j.out"
             --export="ALL,$exports" "$@")
  [ -n "$dep" ] && cmd+=(--dependency="afterok:$dep")
  cmd+=("$EVOQ_ROOT/slurm/$stage.sbatch")
  local id
  if ((DRY_RUN)); then
    printf '%q ' "${cmd[@]}" >&2; echo >&2
    id="dry$((${#ids[@]} + 1))"
  else
    id=$("${cmd[@]}")
    id=${id%%;*}   # --parsable prints "id[;cluster]"
  fi
  ids+=("$id")
  echo "round $round $stage $id" | tee -a "$RUN/jobs.txt"
  LAST_ID=$id
}

[ -n "${EVOQ_DEVICE:-}" ] && export EVOQ_DEVICE
prev_model=$MODEL
prev_train=$AFTER
if ((EVAL && EVAL_INITIAL)); then
  submit 0 eval "" "MODEL=$MODEL,OUT=$RUN/round_0/eval,CONFIG=$(stage_config eval)" "${eval_res[@]}" \
    ${TIME_EVAL:+--time="$TIME_EVAL"}
fi
for ((t = 1; t <= ROUNDS; t++)); do
  dir=$RUN/round_$t
  mkdir -p "$dir"
  if ((t == 1)); then manifest=$MANIFEST mode=$PAIR_MODE1; else manifest=${MANIFEST2:-$MANIFEST} mode=$PAIR_MODE2; fi
  # sbatch --export splits on commas: paths with commas are not supported.
  vote_env="MODEL=$prev_model,PAIRS=$dir/pairs.h5,OUT=$dir/labels.h5,MANIFEST=$manifest,PAIR_MODE=$mode"
  vote_env+=",PAIR_SEED=$((SEED + t)),CONFIG=$(stage_config vote)"
  [ -n "$NUM_PAIRS" ] && vote_env+=",NUM_PAIRS=$NUM_PAIRS"
  [ -n "$MANIFEST_ROOT" ] && vote_env+=",MANIFEST_ROOT=$MANIFEST_ROOT"
  submit "$t" vote "$prev_train" "$vote_env" "${multi[@]}" ${TIME_VOTE:+--time="$TIME_VOTE"}
  vote_id=$LAST_ID
  if [ "$REFERENCE_MODE" = base ]; then reference=$MODEL; else reference=$prev_model; fi
  submit "$t" train "$vote_id" \
    "MODEL=$prev_model,REFERENCE=$reference,LABELS=$dir/labels.h5,OUT=$dir/train,MODEL_OUT=$dir/model,CONFIG=$(stage_config train)" \
    "${multi[@]}" ${TIME_TRAIN:+--time="$TIME_TRAIN"}
  prev_train=$LAST_ID
  if ((EVAL)); then
    submit "$t" eval "$prev_train" "MODEL=$dir/model,OUT=$dir/eval,CONFIG=$(stage_config eval)" "${eval_res[@]}" \
      ${TIME_EVAL:+--time="$TIME_EVAL"}
  fi
  prev_model=$dir/model
done
echo "jobs: ${ids[*]}"
