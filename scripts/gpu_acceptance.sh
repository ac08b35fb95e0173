#!/usr/bin/env bash
# The GPU acceptance kit in one command (docs/BENCHMARKS.md "GPU acceptance"): builds the evoq_accept
# tool against plain LibTorch (CMake option EVOQ_ACCEPTANCE_ONLY: no Boost, HDF5, OpenCV, MPI, PCRE2 or
# ICU), checks that no header of those was compiled in, then runs tests/gpu/acceptance.py (parity
# against transformers in fp32 and bf16, prefill and decode speed, a GRPO micro-step with and without
# activation checkpointing, the 1-rank NCCL collectives) and writes ONE JSON of results.
# Needs CUDA, PyTorch, transformers, safetensors, CMake and a compiler; no network.
#
# usage: scripts/gpu_acceptance.sh [--dry-run] [--out FILE] [--build-dir DIR] [--skip-build] [driver options]
#   --dry-run      a tiny model on the CPU (what a machine without a GPU can check)
#   driver options go to tests/gpu/acceptance.py (--k 8 32 64, --new-tokens 128, --layers 4, ...)
# Environment: EVOQ_PYTHON (default: the project venv if present, else python3), EVOQ_JOBS (build jobs).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$root/build-accept
out=""
skip_build=0
driver_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --skip-build) skip_build=1; shift ;;
    *) driver_args+=("$1"); shift ;;
  esac
done
out=${out:-$build/gpu_acceptance.json}
if [ -n "${EVOQ_PYTHON:-}" ]; then
  python=$EVOQ_PYTHON
elif [ -x "$HOME/.cache/evoq/venv/bin/python" ]; then
  python=$HOME/.cache/evoq/venv/bin/python
else
  python=$(command -v python3)
fi
jobs=${EVOQ_JOBS:-$(nproc)}
mkdir -p "$build"
build_json=$build/build.json

if [ "$skip_build" = 0 ]; then
  generator=()
  command -v ninja > /dev/null && generator=(-G Ninja)
  start=$(date +%s.%N)
  cmake -S "$root" -B "$build" "${generator[@]}" -DEVOQ_ACCEPTANCE_ONLY=ON -DEVOQ_PYTHON="$python" \
        -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build "$build" --target evoq_accept -j "$jobs" >&2
  seconds=$("$python" -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 1))" "$start")
  # The point of this build: none of the full build's other dependencies may be compiled in.
  forbidden=""
  headers_checked=0
  if [ -f "$build/build.ninja" ]; then
    headers_checked=1
    forbidden=$(ninja -C "$build" -t deps 2>/dev/null |
                grep -E '(/boost/|/hdf5/|H5Cpp\.h|/opencv4?/|/openmpi/|/mpich/|/mpi\.h$|/usr/include/unicode/|/pcre2\.h)' |
                sed 's/^ *//' | sort -u || true)
  else
    echo "gpu_acceptance: no ninja, so the header check (ninja -t deps) is skipped: pip install ninja" >&2
  fi
  "$python" - "$build_json" "$seconds" "$jobs" "$forbidden" "$headers_checked" <<'PY'
import json, sys
path, seconds, jobs, forbidden, checked = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
headers = [h for h in forbidden.splitlines() if h]
json.dump({"target": "evoq_accept", "cmake_option": "EVOQ_ACCEPTANCE_ONLY=ON", "seconds": seconds, "jobs": jobs,
           "headers_checked": checked == "1", "forbidden_headers": headers, "ok": not headers}, open(path, "w"),
          indent=2)
PY
  if [ -n "$forbidden" ]; then
    echo "gpu_acceptance: the acceptance build compiled headers it must not need:" >&2
    echo "$forbidden" >&2
    exit 1
  fi
fi

exec "$python" "$root/tests/gpu/acceptance.py" --tool "$build/bin/evoq_accept" --workdir "$build/work" \
  --out "$out" --build-json "$build_json" "${driver_args[@]}"
