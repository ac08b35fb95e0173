#!/usr/bin/env bash
# Time per GRPO step (issue 6): `evoq train` with 1 and 2 MPI ranks (same global batch) vs the same
# step in PyTorch + transformers (bench/grpo_step_reference.py), split into rollout / reference /
# update, medians over the steps after one warm-up step. One torch thread per process/rank.
#   bench/bench_grpo_step.sh CONFIG [PAIRS] [K] [MAX_NEW_TOKENS] [TIMED_STEPS] [IMAGE_SIDE]
# CONFIG: tiny (data_prep/make_tiny_model.py) or small (bench/configs/small, random weights).
# EVOQ_AUTOCAST=bf16: reference and policy forwards under bf16 autocast on both sides (evoq train
# --autocast bf16; torch.autocast in the reference); the rollout stays fp32 on both, as in evoq.
# Models are built once into ${EVOQ_BENCH_DIR:-/tmp/grpo}/<config>.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${EVOQ_BIN:-$root/build/bin/evoq}
py=${EVOQ_VENV:-$HOME/.cache/evoq/venv}/bin/python
autocast=${EVOQ_AUTOCAST:-off}
config=${1:?tiny or small}; pairs=${2:-2}; K=${3:-8}; tokens=${4:-32}; timed=${5:-2}; side=${6:-224}
base=${EVOQ_BENCH_DIR:-/tmp/grpo}
model=$base/$config
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mkdir -p "$base"
if [ ! -f "$model/model.safetensors" ]; then
  if [ "$config" = tiny ]; then
    "$py" "$root/data_prep/make_tiny_model.py" "$model" >/dev/null
  else  # bench/bench_generate.py's builder, with the tiny model's sampling defaults (stop ids on)
    "$py" - "$root" "$model" <<'PY'
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "bench"))
import bench_generate
bench_generate.build("small", sys.argv[2])
json.dump({"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
           "repetition_penalty": 1.0, "temperature": 1.0, "top_p": 1.0, "top_k": 0},
          open(os.path.join(sys.argv[2], "generation_config.json"), "w"))
PY
  fi
fi
# 2 PAIRS disjoint pairs of equal-size noise images (equal prompt lengths on both sides).
"$py" - "$root" "$work" "$pairs" "$side" <<'PY'
import os, sys
import numpy as np
from PIL import Image
sys.path.insert(0, os.path.join(sys.argv[1], "tests", "python"))
from train_testlib import write_labels
w, B, side = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
paths = []
for i in range(2 * B):
    p = os.path.join(w, f"img{i}.png")
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(p)
    paths.append(p)
write_labels(os.path.join(w, "labels.h5"), paths, [(2 * k, 2 * k + 1) for k in range(B)], [1.0] * B)
PY
steps=$((timed + 1))
echo "config=$config pairs=$pairs K=$K max_new_tokens=$tokens images=${side}x${side} timed_steps=$timed autocast=$autocast; $(date -u '+%F %H:%M UTC'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" "$root/bench/grpo_step_reference.py" --model "$model" --labels "$work/labels.h5" --pairs-per-step "$pairs" \
  --samples "$K" --max-new-tokens "$tokens" --steps "$timed" --threads 1 --autocast "$autocast" >"$work/ref.json"
echo "  transformers done; load: $(cut -d' ' -f1-3 /proc/loadavg)"
# Raw results are kept (a failed run, e.g. out of memory, must not lose the others).
results=$base/results-$config-$(date +%Y%m%d-%H%M%S); mkdir -p "$results"; cp "$work/ref.json" "$results/"
for ranks in ${EVOQ_BENCH_RANKS:-1 2}; do
  if mpirun -np $ranks --oversubscribe "$bin" train --model "$model" --labels "$work/labels.h5" --out "$work/run$ranks" \
    --steps "$steps" --pairs-per-step "$pairs" --samples "$K" --max-new-tokens "$tokens" --micro-batch 8 \
    --threads 1 --rollouts-every 0 --checkpoint-every 1000000 --autocast "$autocast" --log-level warn ${EVOQ_TRAIN_FLAGS:-}; then
    echo "  evoq $ranks rank(s) done; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  else
    echo "  evoq $ranks rank(s) FAILED; load: $(cut -d' ' -f1-3 /proc/loadavg)"
  fi
  [ -f "$work/run$ranks/metrics.jsonl" ] && cp "$work/run$ranks/metrics.jsonl" "$results/metrics-$ranks.jsonl"
done
echo "raw results: $results"
"$py" - "$results" "$config" <<'PY'
import json, os, statistics, sys
w, config = sys.argv[1], sys.argv[2]
ref = json.loads(open(f"{w}/ref.json").read().strip().splitlines()[-1])
rows = [("transformers", ref["rollout_s"], ref["ref_s"], ref["update_s"], ref["step_s"], ref["response_tokens"])]
for ranks in (1, 2):
    if not os.path.exists(f"{w}/metrics-{ranks}.jsonl"):
        continue
    m = [json.loads(l) for l in open(f"{w}/metrics-{ranks}.jsonl") if l.strip()][1:]  # drop the warm-up step
    if not m:
        continue
    med = lambda k: statistics.median(x[k] for x in m)
    rows.append((f"evoq {ranks} rank(s)", med("rollout_seconds"), med("reference_seconds"), med("update_seconds"),
                 statistics.median(x["rollout_seconds"] + x["reference_seconds"] + x["update_seconds"] for x in m),
                 med("response_tokens")))
print(f"| config | side | rollout s | reference s | update s | step s (sum) | response tokens | ratio step / transformers |")
print("|---|---|---|---|---|---|---|---|")
for name, ro, rf, up, st, tok in rows:
    print(f"| {config} | {name} | {ro:.2f} | {rf:.2f} | {up:.2f} | {st:.2f} | {tok:.0f} | {st / rows[0][4]:.2f} |")
print(f"prompt tokens (transformers side): {ref['prompt_tokens']}")
PY
