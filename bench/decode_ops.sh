#!/usr/bin/env bash
# Ops per decoder layer of one KV-cached decode step (LibTorch profiler) and decode tokens/s on CPU,
# for G = 1 and 8 prompts of K sequences each, old and new binary side by side in one run.
#   bench/decode_ops.sh NEW_EVOQ [OLD_EVOQ]
# OLD_EVOQ: an older build that has the same `bench-decode` command (src/apps/cmd_bench_decode.cpp
# builds against the tree before the batched decode; see docs/BENCHMARKS.md for how). Settings by
# environment: CONFIGS (tiny small), DTYPES (fp32 bf16), GROUPS_LIST (1 8), COPIES (4), PROMPT (630),
# REPEATS (2: runs alternate old/new), THREADS (1).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
new=${1:?usage: decode_ops.sh NEW_EVOQ [OLD_EVOQ]}; old=${2:-}
py=${EVOQ_VENV:-$HOME/.cache/evoq/venv}/bin/python
tiny=${EVOQ_BENCH_TINY:-${EVOQ_CACHE:-$HOME/.cache/evoq}/models/tiny-qwen2.5-vl}
[ -f "$tiny/config.json" ] || "$py" "$root/data_prep/make_tiny_model.py" "$tiny" >/dev/null
declare -A dirs=([tiny]=$tiny [small]=$root/bench/configs/small)
declare -A steps=([tiny]=64 [small]=12)
out=$(mktemp); trap 'rm -f "$out"' EXIT
for config in ${CONFIGS:-tiny small}; do
  for dtype in ${DTYPES:-fp32 bf16}; do
    for g in ${GROUPS_LIST:-1 8}; do
      for rep in $(seq "${REPEATS:-2}"); do
        for side in old new; do
          bin=$new; [ "$side" = old ] && bin=$old
          [ -n "$bin" ] || continue
          prof=(); [ "$rep" = 1 ] && prof=(--profile-ops)
          line=$("$bin" bench-decode --model "${dirs[$config]}" --random-weights --groups "$g" --copies "${COPIES:-4}" \
            --prompt-tokens "${PROMPT:-630}" --steps "${steps[$config]}" --dtype "$dtype" --threads "${THREADS:-1}" \
            "${prof[@]}" --log-level warn)
          echo "{\"config\": \"$config\", \"side\": \"$side\", \"rep\": $rep, \"result\": $line}" >> "$out"
        done
      done
    done
  done
done
"$py" - "$out" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["config"], r["result"]["dtype"], r["result"]["groups"])
print("| config | dtype | G x K | side | ops/layer (top-level) | kernel ops/layer | decode tok/s (median) | runs | tok per CPU-s (median) |")
print("|---|---|---|---|---|---|---|---|---|")
for k in sorted({key(r) for r in rows}, key=lambda k: (k[0] != "tiny", k[1], k[2])):
    for side in ("old", "new"):
        rs = [r for r in rows if key(r) == k and r["side"] == side]
        if not rs:
            continue
        ops = next((r["result"]["ops_per_layer"] for r in rs if "ops_per_layer" in r["result"]), {})
        tps = [r["result"]["tokens_per_second"] for r in rs]
        cpu = [r["result"].get("tokens_per_cpu_second", float("nan")) for r in rs]
        print(f"| {k[0]} | {k[1]} | {k[2]} x {rs[0]['result']['copies']} | {side} | {ops.get('top_level', float('nan')):.1f} | "
              f"{ops.get('kernels', float('nan')):.1f} | {statistics.median(tps):.1f} | {', '.join(f'{t:.1f}' for t in tps)} | "
              f"{statistics.median(cpu):.1f} |")
print()
for r in rows:
    if "kernels_per_layer_by_op" in r["result"]:
        print(r["config"], r["side"], r["result"]["dtype"], "G", r["result"]["groups"], "kernels/layer:",
              json.dumps(r["result"]["kernels_per_layer_by_op"], sort_keys=True))
PY
