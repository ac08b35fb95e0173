#!/usr/bin/env bash
# The toy-scale replication study of docs/RESULTS.md (issue "Does self-evolution work?").
#
#   analysis/run_study.sh [STUDY_DIR]          (default run/study; a rerun continues: every stage resumes)
#
# Setup = the embedded default of scripts/demo.sh: the default model (built when absent), a training pool
# of synthetic distortions (3 types x levels 1,3,5) of the first STUDY_TRAIN_REFS training references of
# data/cq100-mini, and a test set of the same distortions of the 6 HELD-OUT references (the last 6;
# never used by the warm-up or any training). No label of any kind is used in training.
# Runs, for each seed:
#   evoquality-K8-s<seed>   2 rounds (base -> round 1 -> round 2), K = 8 votes per pair
#   evoquality-K<k>-s<seed> 1 round for every other K of STUDY_KS (Fig. 3)
#   evoestimate-K8-s<seed>  2 rounds of the EvoEstimate ablation (Table 5), K = 8 scores per image
# Every round's model is then measured on the held-out set: SRCC/PLCC of its greedy c_score scores
# against the true order (eval.json), pseudo-label accuracy of its K=8 votes on STUDY_TEST_PAIRS
# held-out same-reference pairs (heldout-labels.h5), and SRCC/PLCC on the 10 real CSIQ images with DMOS
# (tests/data/csiq-sample) for the final models. analysis/study_table.py makes the tables; report.py one
# report per run. At most STUDY_JOBS processes at once, one torch thread each.
set -euo pipefail
# The whole script is one function: bash parses it completely before running, so editing this file
# while a study runs cannot corrupt the run.
main() {
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${EVOQ_BIN_DIR:-$root/build/bin}
py=${EVOQ_VENV:-${EVOQ_CACHE:-$HOME/.cache/evoq}/venv}/bin/python
study=$(mkdir -p "${1:-$root/run/study}" && cd "${1:-$root/run/study}" && pwd)
model=${STUDY_MODEL:-${EVOQ_CACHE:-$HOME/.cache/evoq}/models/evoq-default}
seeds=${STUDY_SEEDS:-"1 2 3"}
Ks=${STUDY_KS:-"1 8 16 32"}
train_refs=${STUDY_TRAIN_REFS:-12}
pairs=${STUDY_PAIRS:-24}            # pairs voted (EvoQuality) / whose images are estimated (EvoEstimate) per round
steps=${STUDY_STEPS:-4}             # GRPO steps per round
pps=${STUDY_PAIRS_PER_STEP:-6}      # pairs (EvoQuality) or images (EvoEstimate) per step
train_k=${STUDY_TRAIN_SAMPLES:-4}   # rollouts per image
lr=${STUDY_LR:-1e-4}                # GRPO learning rate (the demo's)
test_pairs=${STUDY_TEST_PAIRS:-40}
jobs_max=${STUDY_JOBS:-2}
stride=${STUDY_SEED_STRIDE:-1000}  # evolve --seed = stride x study seed (the control study used 1)
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
data=$study/data
mkdir -p "$data" "$study/runs" "$study/base" "$study/logs"
source "$root/analysis/study_common.sh"
started=$(date +%s)
prepare_model_and_data
[ -f "$data/test-pairs.h5" ] || "$bin/evoq" pairs --manifest "$data/test-pool.txt" --mode same-reference \
  -n "$test_pairs" --seed 11 --out "$data/test-pairs.h5" --log-level warn
csiq="csv:$root/tests/data/csiq-sample/dmos.csv"

eval_args="--max-new-tokens 32 --dtype fp32 --log-level warn"  # fp32 throughout, as the study ran  # eval has no --threads: OMP_NUM_THREADS=1
measure() {  # measure MODEL FOLDER [csiq]: held-out eval, held-out votes, CSIQ
  local m=$1 dir=$2
  [ -f "$dir/eval.json" ] || { "$bin/evoq" eval --model "$m" --dataset "csv:$data/test-levels.csv" --out "$dir/eval" $eval_args \
    && cp "$dir/eval/results.json" "$dir/eval.json"; }
  [ -f "$dir/heldout-labels.h5" ] || "$bin/evoq" vote --model "$m" --pairs "$data/test-pairs.h5" \
    --out "$dir/heldout-labels.h5" --seed 3 -K 8 --max-new-tokens 32 --pairs-per-batch 8 --threads 1 --dtype fp32 \
    --log-level warn
  if [ "${3:-}" = csiq ] && [ ! -f "$dir/csiq/results.json" ]; then
    "$bin/evoq" eval --model "$m" --dataset "$csiq" --out "$dir/csiq" $eval_args
  fi
}

evolve() {  # evolve METHOD K SEED ROUNDS
  # evolve seeds round t with seed + t: study seeds are spaced by $stride (1000) so that no two runs share the pairs
  # and sampling streams of a round (seed 1 round 2 would otherwise be seed 2 round 1).
  local method=$1 K=$2 seed=$3 rounds=$4 run="$study/runs/$1-K$2-s$3" units=$pps
  # A pair step rolls out up to 2 images per pair: EvoEstimate gets 2 images per pair of EvoQuality.
  [ "$method" = evoestimate ] && units=$((2 * pps))
  mkdir -p "$(dirname "$run")"
  cat > "$run.cfg" <<CFG
max-new-tokens = 32
threads = 1
dtype = fp32
[vote]
samples = $K
pairs-per-batch = 8
[estimate]
samples = $K
batch-images = 8
[train]
steps = $steps
pairs-per-step = $units
samples = $train_k
micro-batch = 8
lr = $lr
beta = 0.02
checkpoint-every = $steps
autocast = off
CFG
  "$bin/evoq" evolve --run "$run" --model "$model" --rounds "$rounds" --method "$method" \
    --images "$data/train-pool.txt" --mode same-reference --pairs "$pairs" --seed "$((stride * seed))" --eval-initial false \
    --eval-dataset "csv:$data/test-levels.csv" \
    --log-level warn --stage-config "$run.cfg"
  for t in $(seq 1 "$rounds"); do
    measure "$run/round_$t/model" "$run/round_$t" $([ "$t" = "$rounds" ] && echo csiq)
  done
}

log "study in $study: seeds [$seeds], K [$Ks], $pairs pairs, $steps steps x $pps per round"
# Most important first (a study cut short still has the rounds and the method comparison).
spawn base measure "$model" "$study/base" csiq
for seed in $seeds; do spawn "evoquality-K8-s$seed" evolve evoquality 8 "$seed" 2; done
for seed in $seeds; do spawn "evoestimate-K8-s$seed" evolve evoestimate 8 "$seed" 2; done
for K in $Ks; do
  [ "$K" = 8 ] && continue
  for seed in $seeds; do spawn "evoquality-K$K-s$seed" evolve evoquality "$K" "$seed" 1; done
done
drain

for run in "$study"/runs/*/; do
  name=$(basename "$run")
  labels=()
  for t in 1 2; do [ -f "$run/round_$t/heldout-labels.h5" ] && labels+=(--labels "heldout-round$t=$run/round_$t/heldout-labels.h5"); done
  "$py" "$root/analysis/report.py" "$run" --out "$study/reports/$name" --manifest "$data/distorted-train/manifest.csv" \
    --manifest "$data/distorted-test/manifest.csv" --labels "heldout-base=$study/base/heldout-labels.h5" "${labels[@]}" >/dev/null
done
"$py" "$root/analysis/study_table.py" "$study"
log "study done in $(( $(date +%s) - started )) s wall"
}
main "$@"
exit
