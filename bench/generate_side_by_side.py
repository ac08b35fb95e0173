#!/usr/bin/env python3
"""`evoq generate` of two builds side by side (runs alternate), on the "small" Qwen2.5-VL with random
weights (bench_generate.py's model, two random 448x448 images, its voting prompt: 630 prompt tokens).
Prints each run's JSON and a median row per dtype and side: decode tok/s (new tokens / the decoder's
decode seconds), prefill and wall seconds, process CPU seconds, and whether both sides drew the same
first tokens (expected in fp32; bf16 numerics may differ between builds).

usage: bench/generate_side_by_side.py OLD_EVOQ NEW_EVOQ [--k 8] [--new-tokens 32] [--dtypes fp32 bf16]
       [--repeats 3] [--threads 1] [--model-dir DIR (kept between calls)]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_generate as bg  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model-dir", default=None)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    d = a.model_dir or os.path.join(tmp, "small")
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        bg.build("small", d)
    imgs = bg.images(tmp)
    print("load before", open("/proc/loadavg").read().strip(), time.strftime("%FT%TZ", time.gmtime()), flush=True)
    res = {}
    for dtype in a.dtypes:
        for rep in range(a.repeats):
            for side, binary in (("old", a.old), ("new", a.new)):
                cmd = [binary, "generate", "--model", d, "--prompt", bg.PROMPT, "--samples", str(a.k), "--seed", "1",
                       "--max-new-tokens", str(a.new_tokens), "--threads", str(a.threads), "--dtype", dtype,
                       "--json", "--ignore-stop", "--log-level", "warn"]
                for p in imgs:
                    cmd += ["--image", p]
                c0 = os.times()
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                c1 = os.times()
                j = json.loads(out.strip().splitlines()[-1])
                toks = sum(len(s["tokens"]) for s in j["samples"])
                r = dict(side=side, dtype=dtype, rep=rep, prompt=j["prompt_tokens"], tokens=toks,
                         seconds=j["seconds"], prefill_s=j["prefill_seconds"], decode_s=j["decode_seconds"],
                         decode_tok_s=toks / j["decode_seconds"],
                         cpu_s=(c1.children_user + c1.children_system) - (c0.children_user + c0.children_system),
                         first=[s["tokens"][:8] for s in j["samples"][:2]])
                res.setdefault((dtype, side), []).append(r)
                print(json.dumps(r), flush=True)
    print("load after", open("/proc/loadavg").read().strip(), time.strftime("%FT%TZ", time.gmtime()), flush=True)
    print("| dtype | K x tokens | side | decode tok/s (median) | runs | prefill s | wall s | CPU s | same first tokens |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (dtype, side), rs in res.items():
        med = lambda key: statistics.median(r[key] for r in rs)
        same = all(x["first"] == y["first"] for x, y in zip(res[(dtype, "old")], res[(dtype, "new")]))
        runs = ", ".join("%.1f" % r["decode_tok_s"] for r in rs)
        print(f"| {dtype} | {a.k} x {a.new_tokens} | {side} | {med('decode_tok_s'):.1f} | {runs} | "
              f"{med('prefill_s'):.2f} | {med('seconds'):.2f} | {med('cpu_s'):.1f} | {same} |")


if __name__ == "__main__":
    main()
