#!/usr/bin/env bash
# `evoq vote` throughput on the tiny random model: pairs/s with 1 and 2 MPI ranks (one torch thread
# per rank), all K samples drawn (--early-stop=0, the random model's answers are invalid anyway), and
# the early-stop sample distribution at K = 32 of the same vote loop driven by the fake voter.
#   bench/bench_vote.sh [PAIRS] [K] [MAX_NEW_TOKENS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${EVOQ_BIN:-$root/build/bin/evoq}
py=${EVOQ_VENV:-$HOME/.cache/evoq/venv}/bin/python
pairs=${1:-24}; K=${2:-8}; tokens=${3:-32}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
model=${EVOQ_BENCH_MODEL:-${EVOQ_CACHE:-$HOME/.cache/evoq}/models/tiny-qwen2.5-vl}
[ -f "$model/model.safetensors" ] || "$py" "$root/data_prep/make_tiny_model.py" "$model" >/dev/null
mkdir "$work/imgs"
ls "$root/data/cq100-mini"/*.png | head -n 16 | while read -r f; do cp "$f" "$work/imgs/"; done
"$bin" pairs --manifest "$work/imgs" -n "$pairs" --seed 1 -o "$work/pairs.h5" --log-level warn
for ranks in 1 2; do
  start=$(date +%s.%N)
  mpirun -np $ranks --oversubscribe "$bin" vote --model "$model" --pairs "$work/pairs.h5" --out "$work/l$ranks.h5" \
    -K "$K" --max-new-tokens "$tokens" --early-stop=0 --threads 1 --pairs-per-batch 4 --stats "$work/s$ranks.json" \
    --log-level warn
  end=$(date +%s.%N)
  "$py" - "$work/s$ranks.json" "$ranks" "$start" "$end" "$pairs" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["ranks"]
ranks, wall, pairs = int(sys.argv[2]), float(sys.argv[4]) - float(sys.argv[3]), int(sys.argv[5])
loop = max(r["seconds"] for r in s)
print(f"ranks={ranks}: {pairs / loop:.3f} pairs/s in the vote loop ({loop:.1f} s; prefill "
      f"{sum(r['prefill_seconds'] for r in s):.1f} s, decode {sum(r['decode_seconds'] for r in s):.1f} s summed over ranks); "
      f"{wall:.1f} s wall with start-up and merge")
PY
done
"$py" - "$work" <<'PY'
import json, sys
w = sys.argv[1]
r1 = json.load(open(f"{w}/s1.json"))["ranks"][0]
r2 = json.load(open(f"{w}/s2.json"))["ranks"]
t1, t2 = r1["seconds"], max(r["seconds"] for r in r2)
print(f"parallel efficiency (1-rank loop time / (2 x 2-rank loop time)): {t1 / (2 * t2):.2f}")
PY
# Early stop at K = 32 with the fake voter (same loop; its per-pair agreement varies with the images).
"$bin" pairs --manifest "$work/imgs" -n 100 --seed 2 -o "$work/p100.h5" --log-level warn
"$(dirname "$bin")/evoq-testtool" debug-evo vote-fake --pairs "$work/p100.h5" --out "$work/fake.h5" --K 32 --invalid-rate 0.05 \
  --samples-per-call 0 --log-level warn >/dev/null
"$py" - "$work/fake.h5" <<'PY'
import sys, h5py, numpy as np
M = (1 << 64) - 1
def mix(z):
    z = (z + 0x9E3779B97F4A7C15) & M; z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M; return z ^ (z >> 31)
unit = lambda a: (mix(mix(mix(7) ^ a) ^ 0) >> 11) * 2.0 ** -53  # the fake voter's per-image value (fake seed 7)
with h5py.File(sys.argv[1]) as f:
    used, pi, pj = f["samples_used"][:], f["pair_i"][:], f["pair_j"][:]
agree = np.array([max(q, 1 - q) for q in (np.clip(0.5 + 2 * (unit(int(a)) - unit(int(b))), 0.02, 0.98)
                                          for a, b in zip(pi, pj))])
print(f"fake voter, K=32, 100 pairs, 5% invalid: mean samples {used.mean():.1f} ({used.mean() / 32:.2f} K); "
      f"quartiles {np.percentile(used, [25, 50, 75]).tolist()}; min {used.min()} max {used.max()}")
for lo, hi in ((0.9, 1.01), (0.75, 0.9), (0.5, 0.75)):
    sel = (agree >= lo) & (agree < hi)
    if sel.any():
        print(f"  pairs whose voter agrees with itself {lo:.2f}-{min(hi, 1):.2f}: {sel.sum()} pairs, "
              f"mean {used[sel].mean():.1f} samples ({used[sel].mean() / 32:.2f} K)")
print("histogram:", {int(k): int(v) for k, v in zip(*np.unique(used, return_counts=True))})
PY
