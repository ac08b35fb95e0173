#!/usr/bin/env bash
# Installs everything evoq needs on a fresh Debian 12 machine: system packages (apt), and a Python
# virtual environment holding the pinned torch wheel (whose LibTorch we build against) plus the test
# oracles. Idempotent and non-interactive; caches live outside the clone (EVOQ_CACHE, default ~/.cache/evoq).
# Prints the venv path on its last line.
set -euo pipefail

EVOQ_CACHE=${EVOQ_CACHE:-$HOME/.cache/evoq}
VENV=${EVOQ_VENV:-$EVOQ_CACHE/venv}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$EVOQ_CACHE"

# ---- system packages --------------------------------------------------------------------------
APT_PKGS=(
  build-essential cmake ninja-build ccache pkg-config
  openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
  libopencv-dev libopencv-contrib-dev
  libboost-program-options-dev libgtest-dev libgmock-dev nlohmann-json3-dev libpcre2-dev libicu-dev
  clang libclang-rt-14-dev
  slurm-wlm munge iproute2
)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] apt-get install ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# ---- python venv with the pinned torch wheel and the oracles -----------------------------------
REQ="$here/requirements.txt"
stamp="$VENV/.evoq-req-$(sha256sum "$REQ" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "[setup] creating venv $VENV" >&2
  python3 -m venv "$VENV"
  PIP_CACHE_DIR="$EVOQ_CACHE/pip" "$VENV/bin/pip" install -q --upgrade pip >&2
  PIP_CACHE_DIR="$EVOQ_CACHE/pip" "$VENV/bin/pip" install -q -r "$REQ" >&2
  touch "$stamp"
fi
echo "$VENV"
