#!/usr/bin/env bash
# The main job on the embedded default (README's first command): sets everything up and builds, then
#   1. builds the embedded default model when absent (data_prep/make_default_model.py: tiny Qwen2.5-VL,
#      real tokenizer, short warm-up on the TRAINING references of data/cq100-mini; seeded),
#   2. makes synthetic distortions with known levels: a training pool from training references and a
#      test set from the 6 HELD-OUT references (never used by the warm-up or by the evolution round),
#   3. measures the model before the round on the held-out set: pseudo-label accuracy of its votes on
#      pairs of one reference and one distortion type against the true level order, SRCC/PLCC of its
#      scores against the KADID truth (mean human score of each distortion type and level over KADID-10k's
#      81 references, data_prep/kadid_truth.py: it orders images across types) and the mean within-type
#      SRCC against the level order,
#   4. runs ONE EvoQuality round with 2 MPI ranks: `evoq evolve` (pairs -> vote -> GRPO train -> eval),
#      with no label of any kind,
#   5. measures the evolved model the same way and prints before/after, honestly, whatever they are.
# Sizes are small so that it finishes in minutes on a 2-core CPU (EVOQ_DEMO_* variables scale them).
# Outputs go to ${EVOQ_RUN_DIR:-run/demo}; a rerun continues (every stage resumes).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(bash "$root/scripts/build.sh" | tail -n 1)
bin=$build/bin
venv=${EVOQ_VENV:-${EVOQ_CACHE:-$HOME/.cache/evoq}/venv}
py=$venv/bin/python
run=${EVOQ_RUN_DIR:-$root/run/demo}
run=$(mkdir -p "$run" && cd "$run" && pwd)  # absolute: the pair files store image paths relative to it
model=${EVOQ_DEMO_MODEL:-${EVOQ_CACHE:-$HOME/.cache/evoq}/models/evoq-default}
train_refs=${EVOQ_DEMO_TRAIN_REFS:-12}   # training references in the pool
pool_pairs=${EVOQ_DEMO_PAIRS:-48}         # pairs voted in the round
test_pairs=${EVOQ_DEMO_TEST_PAIRS:-40}    # held-out pairs (same reference and type) for the pseudo-label accuracy
K=${EVOQ_DEMO_K:-8}
train_steps=${EVOQ_DEMO_STEPS:-8}
pairs_per_step=${EVOQ_DEMO_PAIRS_PER_STEP:-6}
lr=${EVOQ_DEMO_LR:-3e-3}
# The language model only (the vision tower and merger keep their weights): at this scale training the
# tower destroys the model even with oracle labels, and the LM-only scope is what docs/RESULTS.md measured.
trainable=${EVOQ_DEMO_TRAINABLE:-lm}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1
mpirun=(mpirun -np 2 --oversubscribe)
mkdir -p "$run"
step() { printf '\n== %s\n' "$*"; }
started=$(date +%s)

step "1. embedded default model: $model"
# rebuild when absent or built by another version of the builder (its hash is in warmup.json); a model
# directory without warmup.json (not made by the builder) is used as it is
builder_hash=$(cat "$root/data_prep/make_default_model.py" "$root/data_prep/make_tiny_model.py" \
  "$root/data_prep/tiny_qwen_vl.py" | sha256sum | cut -d' ' -f1)
recorded=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("builder_sha256",""))' \
  "$model/warmup.json" 2>/dev/null || true)
if [ ! -f "$model/model.safetensors" ] || { [ -f "$model/warmup.json" ] && [ "$recorded" != "$builder_hash" ]; }; then
  [ -f "$model/model.safetensors" ] && echo "rebuilding: $model was made by another version of data_prep/make_default_model.py"
  EVOQ_DISTORT="$bin/distort" "$py" "$root/data_prep/make_default_model.py" "$model"
fi
"$bin/evoq" inspect-checkpoint "$model" --no-hash | tail -n 1
# A run continues only with the model it started with (evoq refuses to mix votes of two models): after a
# rebuild, the previous run is moved aside.
model_sum=$(sha256sum "$model/model.safetensors" | cut -d' ' -f1)
recorded_sum=$(cat "$run/model.sha256" 2>/dev/null || true)
if [ "$recorded_sum" != "$model_sum" ] && compgen -G "$run/*.h5*" >/dev/null; then
  echo "$run was started with another model${recorded_sum:+ (sha256 $recorded_sum)}: moving it to $run.previous-model"
  rm -rf "$run.previous-model" && mv "$run" "$run.previous-model" && mkdir -p "$run"
fi
echo "$model_sum" > "$run/model.sha256"

step "2. synthetic distortions: training pool ($train_refs training references) and held-out test set (last 6)"
mkdir -p "$run/refs-train" "$run/refs-test"
ls "$root/data/cq100-mini"/*.png | head -n -6 | head -n "$train_refs" | while read -r f; do cp "$f" "$run/refs-train/"; done
ls "$root/data/cq100-mini"/*.png | tail -n 6 | while read -r f; do cp "$f" "$run/refs-test/"; done
for split in train test; do
  [ -f "$run/distorted-$split/manifest.csv" ] || "$bin/distort" --input "$run/refs-$split" --out "$run/distorted-$split" \
    --preset grid --types gaussian_blur,white_noise,jpeg --levels 1,3,5 --seed 7 >/dev/null
done
"$py" "$root/data_prep/write_pools.py" "$run"
[ -f "$run/test-pairs.h5" ] || "$bin/evoq" pairs --manifest "$run/test-pool.txt" --mode same-reference \
  -n "$test_pairs" --seed 11 --out "$run/test-pairs.h5" --log-level warn

# The outputs of an older demo (other settings or other evoq defaults, e.g. before inference ran in bf16 by
# default: vote and evolve would refuse to continue them) are moved aside to $run/previous.
demo_version=2
if [ "$(cat "$run/demo.version" 2>/dev/null)" != "$demo_version" ]; then
  rm -rf "$run/previous" && mkdir -p "$run/previous"
  for f in "$run"/test-labels-*.h5 "$run"/test-labels-*.h5.shards "$run/evolve"; do
    [ -e "$f" ] && mv "$f" "$run/previous/"
  done
  echo "$demo_version" > "$run/demo.version"
fi
vote_args=(-K "$K" --max-new-tokens 32 --pairs-per-batch 8 --threads 1 --log-level warn)
step "3. before the round: votes on $test_pairs held-out pairs (K=$K)"
"${mpirun[@]}" "$bin/evoq" vote --model "$model" --pairs "$run/test-pairs.h5" --out "$run/test-labels-before.h5" \
  --seed 3 "${vote_args[@]}"

# The stages' settings of the round (same keys as `evoq vote|train|eval`; keys before a section: every stage).
cat > "$run/stages.cfg" <<CFG
max-new-tokens = 32
threads = 1
[vote]
samples = $K
pairs-per-batch = 8
[train]
steps = $train_steps
pairs-per-step = $pairs_per_step
samples = 4
micro-batch = 8
lr = $lr
beta = 0
trainable = $trainable
checkpoint-every = 4
CFG
step "4. one EvoQuality round with 2 MPI ranks (no labels): pairs -> vote -> train -> eval"
"${mpirun[@]}" "$bin/evoq" evolve --run "$run/evolve" --model "$model" --rounds 1 \
  --images "$run/train-pool.txt" --mode same-reference --pairs "$pool_pairs" --seed 1 \
  --eval-dataset "csv:$run/test-truth.csv" \
  --log-level warn --stage-config "$run/stages.cfg"

step "5. after the round: votes on the same held-out pairs"
"${mpirun[@]}" "$bin/evoq" vote --model "$run/evolve/round_1/model" --pairs "$run/test-pairs.h5" \
  --out "$run/test-labels-after.h5" --seed 3 "${vote_args[@]}"

step "Held-out results (6 references never used in training)"
"$py" - "$run" "$(( $(date +%s) - started ))" <<'PY'
import csv, json, sys
import h5py, numpy as np
run, seconds = sys.argv[1], int(sys.argv[2])
level = {r["path"]: int(r["level"]) for r in csv.DictReader(open(f"{run}/distorted-test/manifest.csv"))}
def accuracy(path):
    with h5py.File(path) as f:
        pi, pj, p = [x.decode() for x in f["path_i"][:]], [x.decode() for x in f["path_j"][:]], f["p_star"][:]
        root = f.attrs.get("root", "")
    right = wrong = tie = none = 0
    for a, b, ps in zip(pi, pj, p):
        la, lb = level[a], level[b]
        if la == lb: continue  # no true order
        if np.isnan(ps): none += 1
        elif ps == 0.5: tie += 1
        elif (ps == 1.0) == (la < lb): right += 1
        else: wrong += 1
    n = right + wrong + tie + none
    return right / n if n else float("nan"), n, tie, none
def within_type(t):  # mean over distortion types of the SRCC of the scores against the level order
    from scipy.stats import spearmanr
    by_type = {}
    for r in csv.DictReader(open(f"{run}/evolve/round_{t}/eval/scores.csv")):
        if r["model_score"] not in ("", "nan"):
            m = next(x for x in level if r["path"].endswith(x.split("/")[-1]))
            by_type.setdefault(m.rsplit("__", 1)[1].rsplit("_", 1)[0], []).append((float(r["model_score"]), -level[m]))
    rs = [spearmanr(*zip(*v))[0] for v in by_type.values() if len(v) > 2]
    return float(np.nanmean(rs)) if rs else float("nan")
def quality(t):
    d = json.load(open(f"{run}/evolve/round_{t}/eval.json"))["datasets"][0]
    num = lambda v: v if isinstance(v, (int, float)) else float("nan")  # null when no valid score
    return num(d.get("srcc")), num(d.get("plcc")), d.get("invalid", 0), d.get("images", 0), within_type(t)
print(f"{'':28s}{'before':>12s}{'after':>12s}")
(ab, n, tb, nb), (aa, _, ta, na) = accuracy(f"{run}/test-labels-before.h5"), accuracy(f"{run}/test-labels-after.h5")
print(f"{'pseudo-label accuracy':28s}{ab:12.3f}{aa:12.3f}   ({n} ordered pairs; ties {tb}/{ta}, no label {nb}/{na})")
(sb, pb, ib, m, wb), (sa, pa, ia, _, wa) = quality(0), quality(1)
fmt = lambda x: f"{x:12.3f}" if x == x else f"{'n/a':>12s}"
print(f"{'SRCC vs KADID truth':28s}{fmt(sb)}{fmt(sa)}")
print(f"{'PLCC vs KADID truth':28s}{fmt(pb)}{fmt(pa)}")
print(f"{'within-type SRCC vs level':28s}{fmt(wb)}{fmt(wa)}")
print(f"{'invalid score answers':28s}{ib:12d}{ia:12d}   (of {m} images)")
print(f"\n(total {seconds} s; outputs in {run})")
print("What this shows: one label-free round of 8 GRPO steps on a tiny model whose vision tower sees little of\n"
      "quality (its best linear readout reaches held-out SRCC ~0.61 against the truth). At this scale a round does\n"
      "not improve this model, with its own votes or with the truth's labels; docs/RESULTS.md has the study with\n"
      "seeds, the oracle bound and why.")
PY
