#!/usr/bin/env bash
# The test command: sets everything up, builds, and runs every test (unit, MPI with 2 ranks, Python
# oracle tests) through CTest. Extra arguments go to ctest (e.g. -R tokenizer, -L unit).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(bash "$root/scripts/build.sh" | tail -n 1)
cd "$build"
ctest --output-on-failure -j "${EVOQ_TEST_JOBS:-2}" "$@"
