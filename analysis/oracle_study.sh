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
#   evoK<k>  the same with k votes per pair (STUDY_METHODS="oracle evo evoK1 evoK32 est");
#   est      EvoEstimate (the paper's Table 5 ablation): K sampled scores per image of the same pairs, reward
#            from their mean (evoq estimate + train --reward estimate), 2 x pairs-per-step images per step.
# Round 2 (STUDY_ROUND2="evo oracle"), after every round 1 has finished: the paper's synthetic round, pairs of
# two distortions of the SAME reference (evoq pairs --mode same-reference, seed 100 + s), trained from that
# method's round-1 model: evo2 labels them with the round-1 model's own votes, oracle2 with the truth.
# Every model is measured on the held-out set: SRCC/PLCC of its greedy c_score scores against the truth
# (eval-truth, the paper's c_score prompt; per-image scores for the within-type SRCC), of its greedy scores
# with the prompt it was trained on (eval-truth-trained: c_score + reasoning suffix) and of the mean of 8
# sampled scores with that prompt (eval-truth-mean8), and on the training pool with the trained prompt
# (eval-train-truth: did the round fit what it was shown?);
# and on the 10 real CSIQ images (tests/data/csiq-sample, DMOS; eval-csiq, paper's prompt);
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
methods=${STUDY_METHODS:-"oracle evo evoK1 evoK32 est"}
round2=${STUDY_ROUND2:-"evo oracle"}
train_refs=${STUDY_TRAIN_REFS:-12}
pairs=${STUDY_PAIRS:-48}              # pairs labelled per round
K=${STUDY_K:-8}                       # votes per pair (evo)
est_k=${STUDY_EST_K:-$K}              # sampled scores per image (est)
steps=${STUDY_STEPS:-24}              # GRPO steps
pps=${STUDY_PAIRS_PER_STEP:-6}        # pairs per step
train_k=${STUDY_TRAIN_SAMPLES:-8}     # rollouts per image
lr=${STUDY_LR:-3e-3}
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
  [ -f "$2/eval-csiq/results.json" ] || "$bin/evoq" eval --model "$1" --dataset "csv:$root/tests/data/csiq-sample/dmos.csv" \
    --out "$2/eval-csiq" $e
}

round() {  # round METHOD SEED [ROUND]: round 1 from the base model on random pairs, round 2 from METHOD's
  # round-1 model on same-reference pairs (folder METHOD2-sSEED)
  local method=$1 seed=$2 r=${3:-1} name=$1 start=$model mode=random pseed=$2
  if [ "$r" = 2 ]; then
    name=${method}2 mode=same-reference pseed=$((100 + seed))
    start=$study/runs/$method-s$seed/train/checkpoints/$(cat "$study/runs/$method-s$seed/train/checkpoints/latest")/model
  fi
  local dir=$study/runs/$name-s$seed
  mkdir -p "$dir"
  [ -f "$dir/pairs.h5" ] || "$bin/evoq" pairs --manifest "$data/train-pool.txt" --mode "$mode" -n "$pairs" \
    --seed "$pseed" --out "$dir/pairs.h5" --log-level warn
  local data_arg units=$pps
  case $method in
    oracle)
      [ -f "$dir/labels.h5" ] || "$bin/evoq" labels-from-scores --pairs "$dir/pairs.h5" --scores "$data/train-truth.csv" \
        --out "$dir/labels.h5" --log-level warn
      data_arg="--labels $dir/labels.h5" ;;
    est)  # EvoEstimate: K scores per image; a step takes 2 images per pair of the other methods
      [ -f "$dir/estimates.h5" ] || "$bin/evoq" estimate --model "$start" --pairs "$dir/pairs.h5" --out "$dir/estimates.h5" \
        -K "$est_k" --seed "$seed" --max-new-tokens 32 --batch-images 8 --threads 1 --dtype "$dtype" --log-level warn
      data_arg="--reward estimate --estimates $dir/estimates.h5" units=$((2 * pps)) ;;
    *)  # evo (K = STUDY_K) or evoK<k>
      local k=$K
      case $method in evoK*) k=${method#evoK} ;; esac
      "$bin/evoq" vote --model "$start" --pairs "$dir/pairs.h5" --out "$dir/labels.h5" -K "$k" --seed "$seed" \
        --max-new-tokens 32 --pairs-per-batch 8 --threads 1 --dtype "$dtype" --log-level warn
      data_arg="--labels $dir/labels.h5" ;;
  esac
  # The truth's labels of the same pairs (vote accuracy is measured against them).
  [ -f "$dir/truth-labels.h5" ] || "$bin/evoq" labels-from-scores --pairs "$dir/pairs.h5" \
    --scores "$data/train-truth.csv" --out "$dir/truth-labels.h5" --log-level warn
  local done_steps=0
  [ -f "$dir/train/metrics.jsonl" ] && done_steps=$(wc -l < "$dir/train/metrics.jsonl")
  # shellcheck disable=SC2086  # data_arg is several options
  [ "$done_steps" -ge "$steps" ] || "$bin/evoq" train --model "$start" $data_arg --out "$dir/train" \
    --steps "$steps" --pairs-per-step "$units" --samples "$train_k" --lr "$lr" --beta "$beta" --trainable "$trainable" \
    --max-new-tokens 32 --micro-batch 8 --threads 1 --seed "$seed" --checkpoint-every "$steps" \
    --autocast off --log-level warn $([ -d "$dir/train/checkpoints" ] && echo --resume)
  measure "$dir/train/checkpoints/$(cat "$dir/train/checkpoints/latest")/model" "$dir"
}

log "oracle study in $study: seeds [$seeds], methods [$methods], round 2 [$round2], $pairs pairs, K=$K, $steps steps x $pps pairs," \
    "$train_k rollouts, lr $lr, beta $beta, trainable $trainable, $dtype"
spawn base measure "$model" "$study/base"
for seed in $seeds; do for m in $methods; do spawn "$m-s$seed" round "$m" "$seed"; done; done
drain
for seed in $seeds; do for m in $round2; do spawn "${m}2-s$seed" round "$m" "$seed" 2; done; done
drain
"$py" "$root/analysis/oracle_table.py" "$study"
log "oracle study done in $(( $(date +%s) - started )) s wall"
}
main "$@"
exit
