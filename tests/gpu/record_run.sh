#!/usr/bin/env bash
# The GPU acceptance kit with its records: machine facts (GPU, driver, torch, transformers, NCCL wheel,
# compilers) into OUT/env.txt, scripts/gpu_acceptance.sh into OUT/gpu_acceptance.json + OUT/log.txt, each
# evoq_accept process's result.json and the build record. What the first H200 run used (docs/BENCHMARKS.md).
# usage: tests/gpu/record_run.sh [OUT]   (default: $OUT, else /tmp/evoq-gpu-acceptance)
# Environment: ACCEPT_ARGS (more options for the script, e.g. "--layers 28 --stages parity,decode"),
# ACCEPT_TIMEOUT (seconds for the script, default 520), EVOQ_JSON_INCLUDE (nlohmann/json for an offline box).
set -u
cd "$(dirname "$0")/../.."
OUT=${1:-${OUT:-/tmp/evoq-gpu-acceptance}}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 EVOQ_JSON_INCLUDE=${EVOQ_JSON_INCLUDE:-} EVOQ_JOBS=$(nproc)
export PATH=$PATH:$(dirname "$(command -v python3)"):/usr/local/cuda/bin
{
  date -u; echo "nproc $(nproc)"; free -g | head -2; df -h . | tail -1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
  python3 -c "import nvidia.nccl as n, os; [print('nccl wheel', p, os.listdir(p)) for p in n.__path__]"
  for t in python3 cmake ninja g++ nvcc ccache; do echo "$t: $(command -v $t)"; done
  cmake --version | head -1; g++ --version | head -1; nvcc --version | tail -1
} > "$OUT/env.txt" 2>&1
start=$(date +%s)
timeout "${ACCEPT_TIMEOUT:-520}" scripts/gpu_acceptance.sh --out "$OUT/gpu_acceptance.json" --tool-timeout 240 \
  ${ACCEPT_ARGS:-} > "$OUT/log.txt" 2>&1
echo "gpu_acceptance.sh rc=$? seconds=$(( $(date +%s) - start ))" | tee -a "$OUT/log.txt"
build=build-accept
case " ${ACCEPT_ARGS:-} " in *" --build-dir "*) build=$(echo "$ACCEPT_ARGS" | sed 's/.*--build-dir \([^ ]*\).*/\1/');; esac
for d in fp32 bf16; do cp "$build/work/$d/result.json" "$OUT/tool_$d.json" 2>/dev/null; done
cp "$build/build.json" "$OUT/build.json" 2>/dev/null
cat "$OUT/env.txt"
grep -v '^\[' "$OUT/log.txt" | tail -c 3000
grep '^\[acceptance\]' "$OUT/log.txt" | tail -c 2500
