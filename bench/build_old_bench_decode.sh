#!/usr/bin/env bash
# Builds this tree's bench/decode/bench_decode.cpp against another, already built tree (its include/ and
# BUILD/src/libevoq_*.a), for decode_ops.sh's OLD_BENCH. The source uses only model API that predates the
# batched decode, so it compiles against older trees; nothing is written into OLD_TREE. Uses the compile and
# link lines of this build's target evoq_bench_decode (compile_commands.json, build.ninja) with the paths
# replaced.
#   bench/build_old_bench_decode.sh OLD_TREE OUT_BINARY [OLD_BUILD_DIR (OLD_TREE/build)]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
old=$(cd "${1:?usage: build_old_bench_decode.sh OLD_TREE OUT_BINARY [OLD_BUILD_DIR]}" && pwd)
out=$(realpath -m "${2:?usage: build_old_bench_decode.sh OLD_TREE OUT_BINARY [OLD_BUILD_DIR]}")
old_build=$(cd "${3:-$old/build}" && pwd)
build=${EVOQ_BUILD_DIR:-$root/build}
[ -f "$build/build.ninja" ] || { echo "build this tree first (scripts/build.sh)" >&2; exit 1; }
python3 - "$root" "$build" "$old" "$old_build" "$out" <<'PY' > "$out.build.sh"
import json, re, sys
root, build, old, old_build, out = sys.argv[1:]
cmd = next(e["command"] for e in json.load(open(f"{build}/compile_commands.json")) if e["file"].endswith("bench_decode.cpp"))
cmd = cmd.replace(f"-I{root}/include", f"-I{old}/include")
cmd = re.sub(r"-o \S+bench_decode\.cpp\.o", f"-o {out}.o", cmd)
ninja = open(f"{build}/build.ninja").read()
block = ninja[ninja.index("build bin/evoq_bench_decode:"):]
block = block[:block.index("\n\n")]
get = lambda key: re.search(rf"\n  {key} = (.*)", block).group(1)
libs = re.sub(r"(?<!\S)src/lib", f"{old_build}/src/lib", get("LINK_LIBRARIES"))
print(f"set -e\ncd {build}\n{cmd}\n/usr/bin/c++ {get('FLAGS')} {get('LINK_FLAGS')} {out}.o -o {out} {libs}")
PY
bash "$out.build.sh"
rm -f "$out.o" "$out.build.sh"
echo "$out"
