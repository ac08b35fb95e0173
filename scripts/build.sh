#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and builds evoq into ${EVOQ_BUILD_DIR:-build}.
# Extra arguments are passed to CMake's configure step (e.g. -DEVOQ_WITH_NCCL=OFF).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$(bash "$root/scripts/setup.sh" | tail -n 1)
build=${EVOQ_BUILD_DIR:-$root/build}
export CCACHE_DIR=${CCACHE_DIR:-${EVOQ_CACHE:-$HOME/.cache/evoq}/ccache}
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
# Paths under the clone are hashed relative to it, so clones and worktrees elsewhere share the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
# -g puts the working directory into the object; without this, builds in other folders never hit.
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}
jobs=${EVOQ_JOBS:-$(nproc)}
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DEVOQ_PYTHON="$venv/bin/python" "$@" >&2
fi
cmake --build "$build" -j "$jobs" >&2
echo "$build"
