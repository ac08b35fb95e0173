#!/usr/bin/env bash
# The oracle upper bound and EvoQuality under one protocol (docs/RESULTS.md, issue 17).
#
#   analysis/oracle_study.sh [STUDY_DIR]        (default run/oracle; a rerun continues: finished steps are kept)
#
# Data = scripts/demo.sh's: synthetic distortions (3 types x levels 1,3,5) of the training references and of
# the 6 HELD-OUT references of data/cq100-mini. Truth = the mean KADID-10k human score of each (type, level)
# (data_prep/kadid_truth.py), which orders images across types. For every seed the SAME random pairs of
# distinct training images are labelled twice and trained on with the SAME GRPO settings:
#   oracle   p* from the truth (evoq labels-from-scores): the upper bound of a round with these pairs;
#   evo      p* from the model's own K votes (evoq vote): EvoQuality round 1, no label of any kind;
#   evoK<k>  the same with k votes per pair (STUDY_METHODS="oracle evo evoK1 evoK32").
# Every model is measured on the held-out set: SRCC/PLCC of its greedy c_score scores against the truth
# (eval-truth, the paper's c_score prompt; per-image scores for the within-type SRCC), of its greedy scores
# with the prompt it was trained on (eval-truth-trained: c_score + reasoning suffix) and of the mean of 8
# sampled scores with that prompt (eval-truth-mean8), and on the training pool with the trained prompt
# (eval-train-truth: did the round fit what it was shown?);
# the summary (oracle_table.py) reports mean and standard deviation over seeds and the vote accuracy
# against the truth.
set -euo pipefail
main() {
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${EVOQ_BIN_DIR:-$root/build/bin}
py=${EVOQ_VENV:-${EVOQ_CACHE:-$HOME/.cache/evoq}/venv}/bin/python
study=$(mkdir -p "${1:-$root/run/oracle}" && cd "${1:-$root/run/oracle}" && pwd)
model=${STUDY_MODEL:-${EVOQ_CACHE:-$HOME/.cache/evoq}/models/evoq-default}
seeds=${STUDY_SEEDS:-"1 2 3"}
methods=${STUDY_METHODS:-"oracle evo"}
train_refs=${STUDY_TRAIN_REFS:-12}
pairs=${STUDY_PAIRS:-48}              # pairs labelled per round
K=${STUDY_K:-8}                       # votes per pair (evo)
steps=${STUDY_STEPS:-24}              # GRPO steps
pps=${STUDY_PAIRS_PER_STEP:-6}        # pairs per step
train_k=${STUDY_TRAIN_SAMPLES:-8}     # rollouts per image
lr=${STUDY_LR:-1e-3}
beta=${STUDY_BETA:-0}
trainable=${STUDY_TRAINABLE:-lm}
dtype=${STUDY_DTYPE:-fp32}
jobs_max=${STUDY_JOBS:-2}
export OMP_NUM_THREADS=1
data=$study/data
mkdir -p "$data" "$study/logs"
source "$root/analysis/study_common.sh"
started=$(date +%s)
prepare_model_and_data

measure() {  # measure MODEL DIR: held-out greedy scores (paper's c_score prompt, and the trained prompt with the
  # reasoning suffix), held-out mean of 8 sampled scores (trained prompt), training-pool greedy scores
  local e="--max-new-tokens 32 --dtype $dtype --log-level warn"
  [ -f "$2/eval-truth/results.json" ] || "$bin/evoq" eval --model "$1" --dataset "csv:$data/test-truth.csv" \
    --out "$2/eval-truth" $e
  [ -f "$2/eval-truth-trained/results.json" ] || "$bin/evoq" eval --model "$1" --dataset "csv:$data/test-truth.csv" \
    --out "$2/eval-truth-trained" --reasoning on $e
  [ -f "$2/eval-truth-mean8/results.json" ] || "$bin/evoq" eval --model "$1" --dataset "csv:$data/test-truth.csv" \
    --out "$2/eval-truth-mean8" --reasoning on --samples 8 --seed 5 $e
  [ -f "$2/eval-train-truth/results.json" ] || "$bin/evoq" eval --model "$1" --dataset "csv:$data/train-truth.csv" \
    --out "$2/eval-train-truth" --reasoning on $e
}

round() {  # round METHOD SEED
  local method=$1 seed=$2 dir=$study/runs/$1-s$2
  mkdir -p "$dir"
  [ -f "$dir/pairs.h5" ] || "$bin/evoq" pairs --manifest "$data/train-pool.txt" --mode random -n "$pairs" \
    --seed "$seed" --out "$dir/pairs.h5" --log-level warn
  if [ "$method" = oracle ]; then
    [ -f "$dir/labels.h5" ] || "$bin/evoq" labels-from-scores --pairs "$dir/pairs.h5" --scores "$data/train-truth.csv" \
      --out "$dir/labels.h5" --log-level warn
  else  # evo (K = STUDY_K) or evoK<k>
    local k=$K
    case $method in evoK*) k=${method#evoK} ;; esac
    "$bin/evoq" vote --model "$model" --pairs "$dir/pairs.h5" --out "$dir/labels.h5" -K "$k" --seed "$seed" \
      --max-new-tokens 32 --pairs-per-batch 8 --threads 1 --dtype "$dtype" --log-level warn
  fi
  # The truth's labels of the same pairs (vote accuracy is measured against them).
  [ -f "$dir/truth-labels.h5" ] || "$bin/evoq" labels-from-scores --pairs "$dir/pairs.h5" \
    --scores "$data/train-truth.csv" --out "$dir/truth-labels.h5" --log-level warn
  local done_steps=0
  [ -f "$dir/train/metrics.jsonl" ] && done_steps=$(wc -l < "$dir/train/metrics.jsonl")
  [ "$done_steps" -ge "$steps" ] || "$bin/evoq" train --model "$model" --labels "$dir/labels.h5" --out "$dir/train" \
    --steps "$steps" --pairs-per-step "$pps" --samples "$train_k" --lr "$lr" --beta "$beta" --trainable "$trainable" \
    --max-new-tokens 32 --micro-batch 8 --threads 1 --seed "$seed" --checkpoint-every "$steps" \
    --log-level warn $([ -d "$dir/train/checkpoints" ] && echo --resume)
  measure "$dir/train/checkpoints/$(cat "$dir/train/checkpoints/latest")/model" "$dir"
}

log "oracle study in $study: seeds [$seeds], methods [$methods], $pairs pairs, K=$K, $steps steps x $pps pairs," \
    "$train_k rollouts, lr $lr, beta $beta, trainable $trainable, $dtype"
spawn base measure "$model" "$study/base"
for seed in $seeds; do for m in $methods; do spawn "$m-s$seed" round "$m" "$seed"; done; done
drain
"$py" "$root/analysis/oracle_table.py" "$study"
log "oracle study done in $(( $(date +%s) - started )) s wall"
}
main "$@"
exit
