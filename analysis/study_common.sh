# Shared by analysis/run_study.sh and analysis/oracle_study.sh (sourced inside their main function, with
# root, bin, py, study, model, data, train_refs and jobs_max set): logging, the embedded default model, the
# synthetic data of scripts/demo.sh, and a small job queue.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

prepare_model_and_data() {  # the model (built when absent) and data/: pools, levels and KADID truth
  if [ ! -f "$model/model.safetensors" ]; then
    log "building the embedded default model into $model"
    EVOQ_DISTORT="$bin/distort" "$py" "$root/data_prep/make_default_model.py" "$model"
  fi
  mkdir -p "$data/refs-train" "$data/refs-test"
  ls "$root/data/cq100-mini"/*.png | head -n -6 | head -n "$train_refs" | while read -r f; do cp "$f" "$data/refs-train/"; done
  ls "$root/data/cq100-mini"/*.png | tail -n 6 | while read -r f; do cp "$f" "$data/refs-test/"; done
  for split in train test; do
    [ -f "$data/distorted-$split/manifest.csv" ] || "$bin/distort" --input "$data/refs-$split" \
      --out "$data/distorted-$split" --preset grid --types gaussian_blur,white_noise,jpeg --levels 1,3,5 --seed 7 >/dev/null
  done
  "$py" "$root/data_prep/write_pools.py" "$data" >/dev/null
}

running=0
spawn() {  # spawn NAME CMD...: in the background, log in logs/NAME.log; at most jobs_max at once
  local name=$1; shift
  while [ "$running" -ge "$jobs_max" ]; do wait -n || { log "a job failed (see $study/logs)"; exit 1; }; running=$((running - 1)); done
  # Not part of an && list, so `set -e` stays in force inside the job (a failing stage ends it).
  ( trap 's=$?; [ $s = 0 ] && log "done: $name" || log "FAILED: $name (status $s)"' EXIT
    "$@" >"$study/logs/$name.log" 2>&1 ) &
  running=$((running + 1))
}
drain() { while [ "$running" -gt 0 ]; do wait -n || { log "a job failed (see $study/logs)"; exit 1; }; running=$((running - 1)); done; }
