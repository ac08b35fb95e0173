#!/usr/bin/env bash
# The main job on the embedded default, as far as evoq goes today (see docs/ARCHITECTURE.md, "Not
# built yet"): sets everything up and builds, then on held-out CQ100 references
#   1. makes synthetic distortions with known levels (data_prep/distort),
#   2. evaluates the handcrafted baselines BRISQUE and NIQE against the true level order (evoq eval),
#   3. builds the tiny random Qwen2.5-VL model (real architecture and tokenizer; no weights fetched),
#   4. draws same-reference pairs (evoq pairs) and lets the model vote and score with the paper's prompts
#      (evoq compare / evoq score). The tiny model is untrained: its answers are mostly invalid, and they
#      are reported as such. The trained embedded default and `evoq evolve` come with later issues.
# Outputs go to ${EVOQ_RUN_DIR:-run/demo}.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(bash "$root/scripts/build.sh" | tail -n 1)
bin=$build/bin
venv=${EVOQ_VENV:-${EVOQ_CACHE:-$HOME/.cache/evoq}/venv}
run=${EVOQ_RUN_DIR:-$root/run/demo}
model=${EVOQ_DEMO_MODEL:-${EVOQ_CACHE:-$HOME/.cache/evoq}/models/tiny-qwen2.5-vl}
mkdir -p "$run/refs"
step() { printf '\n== %s\n' "$*"; }

step "1. synthetic distortions of 6 held-out references (last 6 of data/cq100-mini)"
ls "$root/data/cq100-mini"/*.png | tail -n 6 | while read -r f; do cp "$f" "$run/refs/"; done
"$bin/distort" --input "$run/refs" --out "$run/distorted" --preset grid --types gaussian_blur,white_noise,jpeg \
  --levels 1,3,5 --seed 7 >/dev/null
manifest=$run/distorted/manifest.csv
# generic eval CSV: path,score with score = -level (higher is better: less distortion)
"$venv/bin/python" - "$manifest" "$run/levels.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f); w.writerow(["path", "score"])
    for r in rows: w.writerow([r["path"], -int(r["level"])])
print(f"{len(rows)} distorted images")
PY

step "2. handcrafted baselines vs the true distortion order"
for m in brisque niqe; do
  "$bin/evoq" eval --model "$m" --dataset "csv:$run/levels.csv" --out "$run/eval-$m" \
    --log-level warn
done

step "3. tiny random Qwen2.5-VL (real architecture and tokenizer)"
[ -f "$model/model.safetensors" ] || "$venv/bin/python" "$root/data_prep/make_tiny_model.py" "$model"
"$bin/evoq" inspect-checkpoint "$model" --no-hash | tail -n 3

step "4. same-reference pairs, votes and scores with the paper's prompts"
"$venv/bin/python" - "$manifest" "$run/pairs-manifest.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
with open(sys.argv[2], "w") as f:
    for r in rows: f.write(f"{r['path']},{r['reference_id']}\n")
PY
"$bin/evoq" pairs --manifest "$run/pairs-manifest.csv" --root "$run/distorted" --mode same-reference -n 12 --seed 1 \
  --out "$run/pairs.h5"
first=$(head -n 1 "$run/pairs-manifest.csv" | cut -d, -f1)
second=$(sed -n 3p "$run/pairs-manifest.csv" | cut -d, -f1)
"$bin/evoq" compare --model "$model" "$first" "$second" --samples 8 --seed 1 \
  --max-new-tokens 48
"$bin/evoq" score --model "$model" "$first" "$second" --samples 4 --max-new-tokens 24 \
  --out "$run/scores.csv"
printf '\nDone. Outputs in %s (eval-*/results.json, pairs.h5, scores.csv).\n' "$run"
