#!/usr/bin/env bash
# `evoq vote` with lossless early stop (adaptive waves) on the tiny random Qwen2.5-VL, old and new
# binary side by side: prefill and decode seconds, vote-loop and wall time, and whether the labels
# (answers, responses) are identical. The random model's answers are invalid, so no pair is decided
# early and every pair runs all its waves (17 + 8 + 4 + 2 + 1 samples at K = 32): the case where
# re-prefilling each wave costs most.
#   bench/vote_waves.sh NEW_EVOQ OLD_EVOQ [PAIRS] [K] [MAX_NEW_TOKENS] [PAIRS_PER_BATCH]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
new=${1:?usage: vote_waves.sh NEW_EVOQ OLD_EVOQ [PAIRS] [K] [TOKENS] [PAIRS_PER_BATCH]}; old=${2:?}
pairs=${3:-16}; K=${4:-32}; tokens=${5:-16}; per_batch=${6:-4}
py=${EVOQ_VENV:-$HOME/.cache/evoq/venv}/bin/python
model=${EVOQ_BENCH_MODEL:-${EVOQ_CACHE:-$HOME/.cache/evoq}/models/tiny-qwen2.5-vl}
[ -f "$model/model.safetensors" ] || "$py" "$root/data_prep/make_tiny_model.py" "$model" >/dev/null
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir "$work/imgs"
ls "$root/data/cq100-mini"/*.png | head -n 16 | while read -r f; do cp "$f" "$work/imgs/"; done
"$new" pairs --manifest "$work/imgs" -n "$pairs" --seed 1 -o "$work/pairs.h5" --log-level warn
for rep in 1 2; do
  for side in old new; do
    bin=$new; [ "$side" = old ] && bin=$old
    start=$(date +%s.%N)
    "$bin" vote --model "$model" --pairs "$work/pairs.h5" --out "$work/$side$rep.h5" -K "$K" --max-new-tokens "$tokens" \
      --threads 1 --pairs-per-batch "$per_batch" --keep-responses --stats "$work/$side$rep.json" --log-level warn
    end=$(date +%s.%N)
    echo "$side $rep $start $end" >> "$work/times"
  done
done
"$py" - "$work" <<'PY'
import json, sys, h5py, numpy as np
w = sys.argv[1]
print("| side | run | prefill s | decode s | vote loop s | wall s (incl. start-up, merge) | samples |")
print("|---|---|---|---|---|---|---|")
for line in open(f"{w}/times"):
    side, rep, start, end = line.split()
    r = json.load(open(f"{w}/{side}{rep}.json"))["ranks"][0]
    print(f"| {side} | {rep} | {r['prefill_seconds']:.2f} | {r['decode_seconds']:.2f} | {r['seconds']:.2f} | "
          f"{float(end) - float(start):.1f} | {r['samples']} |")
def load(p):
    with h5py.File(p) as f:
        return {k: f[k][:] for k in f.keys()}
a, b = load(f"{w}/old1.h5"), load(f"{w}/new1.h5")
same = all((a[k] == b[k]).all() if a[k].dtype != object else list(a[k]) == list(b[k]) for k in a if k in b)
print(f"\nlabels.h5 datasets old vs new identical (answers, swaps, responses, p*): {same}")
PY
