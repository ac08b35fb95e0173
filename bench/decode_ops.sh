#!/usr/bin/env bash
# Ops per decoder layer of one KV-cached decode step (LibTorch profiler) and decode tokens/s on CPU,
# for G = 1 and 8 prompts of K sequences each, old and new binary side by side in one run.
#   bench/decode_ops.sh NEW_BENCH [OLD_BENCH]
# NEW_BENCH: build/bin/evoq_bench_decode (bench/decode/bench_decode.cpp, target evoq_bench_decode).
# OLD_BENCH: the same tool built against an older, built tree (the source uses only model API that
# predates the batched decode): bench/build_old_bench_decode.sh OLD_TREE OUT_BINARY. Settings by
# environment: CONFIGS (tiny small), DTYPES (fp32 bf16), GROUPS_LIST (1 8), COPIES_LIST (4: sequences per
# prompt), PROMPT (630), REPEATS (2: runs alternate old/new; the first run of each case also profiles),
# THREADS (1), STEPS (timed steps: 64 tiny, 12 small).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
new=${1:?usage: decode_ops.sh NEW_BENCH [OLD_BENCH]}; old=${2:-}
py=${EVOQ_VENV:-$HOME/.cache/evoq/venv}/bin/python
tiny=${EVOQ_BENCH_TINY:-${EVOQ_CACHE:-$HOME/.cache/evoq}/models/tiny-qwen2.5-vl}
[ -f "$tiny/config.json" ] || "$py" "$root/data_prep/make_tiny_model.py" "$tiny" >/dev/null
declare -A dirs=([tiny]=$tiny [small]=$root/bench/configs/small)
declare -A steps=([tiny]=${STEPS:-64} [small]=${STEPS:-12})
out=$(mktemp); trap 'rm -f "$out"' EXIT
echo "load before: $(cat /proc/loadavg)  $(date -u +%FT%TZ)"
for config in ${CONFIGS:-tiny small}; do
  for dtype in ${DTYPES:-fp32 bf16}; do
    for g in ${GROUPS_LIST:-1 8}; do
     for copies in ${COPIES_LIST:-4}; do
      for rep in $(seq "${REPEATS:-2}"); do
        for side in old new; do
          bin=$new; [ "$side" = old ] && bin=$old
          [ -n "$bin" ] || continue
          prof=(); [ "$rep" = 1 ] && prof=(--profile-ops)
          line=$("$bin" --model "${dirs[$config]}" --random-weights --groups "$g" --copies "$copies" \
            --prompt-tokens "${PROMPT:-630}" --steps "${steps[$config]}" --dtype "$dtype" --threads "${THREADS:-1}" \
            "${prof[@]}" --log-level warn)
          echo "{\"config\": \"$config\", \"side\": \"$side\", \"rep\": $rep, \"result\": $line}" >> "$out"
        done
      done
     done
    done
  done
done
echo "load after: $(cat /proc/loadavg)  $(date -u +%FT%TZ)"
"$py" - "$out" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["config"], r["result"]["dtype"], r["result"]["groups"], r["result"]["copies"])
print("| config | dtype | G x K | side | ops/layer (top-level) | kernel ops/layer | decode tok/s (median) | runs | tok per CPU-s (median) |")
print("|---|---|---|---|---|---|---|---|---|")
for k in sorted({key(r) for r in rows}, key=lambda k: (k[0] != "tiny", k[1], k[2], k[3])):
    for side in ("old", "new"):
        rs = [r for r in rows if key(r) == k and r["side"] == side]
        if not rs:
            continue
        ops = next((r["result"]["ops_per_layer"] for r in rs if "ops_per_layer" in r["result"]), {})
        tps = [r["result"]["tokens_per_second"] for r in rs]
        cpu = [r["result"].get("tokens_per_cpu_second", float("nan")) for r in rs]
        print(f"| {k[0]} | {k[1]} | {k[2]} x {k[3]} | {side} | {ops.get('top_level', float('nan')):.1f} | "
              f"{ops.get('kernels', float('nan')):.1f} | {statistics.median(tps):.1f} | {', '.join(f'{t:.1f}' for t in tps)} | "
              f"{statistics.median(cpu):.1f} |")
print()
for r in rows:
    if "kernels_per_layer_by_op" in r["result"]:
        print(r["config"], r["side"], r["result"]["dtype"], "G", r["result"]["groups"], "K", r["result"]["copies"], "kernels/layer:",
              json.dumps(r["result"]["kernels_per_layer_by_op"], sort_keys=True))
PY
