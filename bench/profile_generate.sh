#!/usr/bin/env bash
# Where `evoq generate` spends its time on the voting workload (issue 19, item 4): perf's timer samples of
# one process (the bench_engines.py prompt and images, K samples, fixed length, stop ids ignored), grouped
# into kernels by symbol, plus evoq's own prefill / decode split.
#   bench/profile_generate.sh [MODEL_DIR] [K] [NEW_TOKENS] [DTYPE] [THREADS]
# MODEL_DIR defaults to the small config built by bench/bench_engines.py (/tmp/evoq-bench/small).
# Needs perf (Debian: linux-perf). Samples on-CPU time only, so other jobs on the machine change the
# wall time but not the split.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${EVOQ_BIN:-$root/build/bin/evoq}
py=${EVOQ_VENV:-$HOME/.cache/evoq/venv}/bin/python
work=${EVOQ_BENCH_DIR:-/tmp/evoq-bench}
model=${1:-$work/small}; K=${2:-32}; tokens=${3:-64}; dtype=${4:-bf16}; threads=${5:-2}
command -v perf >/dev/null || { echo "perf not found (apt-get install linux-perf)" >&2; exit 1; }
if [ ! -f "$model/model.safetensors" ]; then
  "$py" -c "import sys; sys.path.insert(0, '$root/bench'); import bench_generate; bench_generate.build('small', '$model')"
fi
"$py" -c "import sys; sys.path.insert(0, '$root/bench'); import bench_generate; bench_generate.images('$work')" >/dev/null
prompt=$("$py" -c "import sys; sys.path.insert(0, '$root/bench'); import bench_generate; print(bench_generate.PROMPT)")
out=$work/profile-$dtype-k$K; mkdir -p "$out"
echo "$(date -u '+%F %H:%M UTC'); load $(cut -d' ' -f1-3 /proc/loadavg); $model K=$K tokens=$tokens $dtype threads=$threads"
perf record -F 499 -o "$out/perf.data" -- "$bin" generate --model "$model" --image "$work/bench0.png" \
  --image "$work/bench1.png" --prompt "$prompt" --samples "$K" --seed 1 --max-new-tokens "$tokens" \
  --threads "$threads" --dtype "$dtype" --ignore-stop --json --log-level warn 2>"$out/perf.log" >"$out/generate.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" - "$out/generate.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
n = sum(len(s["tokens"]) for s in j["samples"])
print(f"evoq: {j['seconds']:.2f} s for {n} tokens ({n / j['seconds']:.1f} tok/s); prefill {j['prefill_seconds']:.2f} s, "
      f"decode {j['decode_seconds']:.2f} s, rest (sampling, bookkeeping) {j['seconds'] - j['prefill_seconds'] - j['decode_seconds']:.2f} s")
PY
# Self time by symbol (no children), top 40, and the same grouped into kernel families.
perf report -i "$out/perf.data" --no-children --sort dso,symbol --percent-limit 0.3 --stdio 2>/dev/null \
  | grep -E '^ +[0-9]' | head -40 | tee "$out/top.txt"
"$py" - "$out/top.txt" <<'PY'
import re, sys
groups = [("bf16/fp32 GEMM (oneDNN brgemm, MKL)", r"brg|brgemm|gemm|sgemm|jit_avx|dnnl|mkl_blas|gemm_bf16|zendnn"),
          ("attention (SDPA / flash)", r"flash|attention|sdpa|softmax_lastdim"),
          ("sampling (exp, max, sums)", r"exp|amax|max_|reduce|sum_|cumsum|topk|sort"),
          ("elementwise / copies / casts", r"copy|cast|vectorized|binary|unary|mul_|add_|cat|index|fill|silu|rsqrt|pow"),
          ("memory (page faults, clear, memcpy)", r"clear_page|page|memcpy|memset|memmove|asm_exc|handle_mm|do_user"),
          ("OpenMP runtime (spin, barriers)", r"gomp|omp|kmp|sched_yield|futex")]
tot = {g: 0.0 for g, _ in groups}
other = 0.0
for line in open(sys.argv[1]):
    pct = float(line.split("%")[0])
    text = line.split("%", 1)[1]
    for g, pat in groups:
        if re.search(pat, text, re.I):
            tot[g] += pct
            break
    else:
        other += pct
print("\nshare of samples (top symbols only, >= 0.3 % each):")
for g, _ in groups:
    print(f"  {g:40s} {tot[g]:5.1f} %")
print(f"  {'other listed symbols':40s} {other:5.1f} %")
PY
echo "perf data: $out/perf.data (perf report -i ...; add -g to perf record for call graphs)"
