#!/usr/bin/env python3
"""The whole voting job side by side (issue 19, item 2): `evoq vote` with early stop on and off against the
same job done the way the anchors do it (bench/vote_anchor_transformers.py: a Python loop over transformers
generate; bench/vote_anchor_vllm.py: vLLM with n = K, then parsing and Eq. 1), on one set of pairs.

Job: PAIRS same-reference pairs of distorted images (the first --refs references of data/cq100-mini,
gaussian_blur / white_noise / jpeg at levels 1, 3, 5 by data_prep/distort, seed 7), K samples per pair with
the reasoning suffix, each sample's image order drawn at random, stop at the model's stop ids or
--max-new-tokens, sampling temperature 1 / top-p 1 / top-k 50 (evoq vote's defaults), on the embedded
default model (data_prep/make_default_model.py: built when absent) or --model.

Reported per side: pairs/hour of the voting loop (model load and process start excluded) and of the whole
command (included), samples drawn and saved against K x pairs, labelled pairs and ties, the loop's ratio
to each anchor, /proc/loadavg before and after each side. The sides run one after the other.

usage: bench/bench_vote_job.py [--pairs 200] [-K 32] [--dtype bf16|fp32] [--threads 2]
         [--sides evoq-es evoq-all transformers vllm] [--evoq-ranks 1] [--model DIR] [--json-out F]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_engines import git_rev, loadavg, machine  # noqa: E402

CACHE = os.environ.get("EVOQ_CACHE", os.path.expanduser("~/.cache/evoq"))


def sh(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} failed: {(r.stderr or r.stdout).strip()[-800:]}")
    return r.stdout


def make_pairs(a, bindir, work):
    """Distortions of the first --refs references and PAIRS same-reference pairs; returns (pairs.h5, pairs.json)."""
    import h5py
    refs = os.path.join(work, "refs")
    dist = os.path.join(work, "distorted")
    if not os.path.exists(os.path.join(dist, "manifest.csv")):
        os.makedirs(refs, exist_ok=True)
        src = sorted(f for f in os.listdir(os.path.join(ROOT, "data", "cq100-mini")) if f.endswith(".png"))[:a.refs]
        for f in src:
            os.link(os.path.join(ROOT, "data", "cq100-mini", f), os.path.join(refs, f)) \
                if not os.path.exists(os.path.join(refs, f)) else None
        sh([os.path.join(bindir, "distort"), "--input", refs, "--out", dist, "--preset", "grid", "--types",
            "gaussian_blur,white_noise,jpeg", "--levels", "1,3,5", "--seed", "7"])
    import csv
    rows = list(csv.DictReader(open(os.path.join(dist, "manifest.csv"))))
    pool = os.path.join(work, "pool.txt")
    with open(pool, "w") as f:
        for r in rows:
            f.write(f"{r['path']},{r['reference_id']}\n")
    pairs_h5 = os.path.join(work, f"pairs-{a.pairs}.h5")
    sh([a.evoq, "pairs", "--manifest", pool, "--mode", "same-reference", "-n", str(a.pairs), "--seed", "11", "--out",
        pairs_h5, "--log-level", "warn"])
    with h5py.File(pairs_h5) as f:
        root = f.attrs["root"]
        root = root.decode() if isinstance(root, bytes) else root
        paths = [p.decode() if isinstance(p, bytes) else p for p in f["image_path"][:]]
        pi, pj = f["pair_i"][:], f["pair_j"][:]
    absolute = lambda p: p if os.path.isabs(p) else os.path.join(root, p)
    pairs_json = os.path.join(work, f"pairs-{a.pairs}.json")
    json.dump([[absolute(paths[i]), absolute(paths[j])] for i, j in zip(pi, pj)], open(pairs_json, "w"))
    return pairs_h5, pairs_json


def run_evoq(a, model, pairs_h5, work, early_stop, dtype=None, seed=3):
    """`evoq vote` under mpirun; returns its loop seconds, wall, samples, labels and the labels.h5 path."""
    dtype = dtype or a.dtype
    tag = f"{dtype}-es{int(early_stop)}-s{seed}"
    out, stats = os.path.join(work, f"labels-{tag}.h5"), os.path.join(work, f"stats-{tag}.json")
    subprocess.run(["rm", "-rf", out, out + ".shards"])
    threads = max(1, a.threads // a.evoq_ranks)
    # --bind-to none: Open MPI binds each rank of a 1- or 2-rank job to ONE core by default, which put evoq's
    # 2 threads on one core (the whole job ran 2x slower; docs/BENCHMARKS.md, issue 19 section 2).
    cmd = ["mpirun", "-np", str(a.evoq_ranks), "--oversubscribe", "--bind-to", "none", a.evoq, "vote", "--model", model,
           "--pairs", pairs_h5,
           "--out", out, "-K", str(a.K), "--max-new-tokens", str(a.max_new_tokens), f"--early-stop={int(early_stop)}",
           "--reasoning=1", "--seed", str(seed), "--dtype", dtype, "--threads", str(threads), "--pairs-per-batch",
           str(a.pairs_per_batch), "--stats", stats, "--log-level", "warn"]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    sh(cmd, env=env)
    wall = time.perf_counter() - t0
    import h5py
    ranks = json.load(open(stats))["ranks"]
    with h5py.File(out) as f:
        p_star, labelled = f["p_star"][:], f["labelled"][:]
    return {"seconds": max(r["seconds"] for r in ranks), "wall": wall, "samples": sum(r["samples"] for r in ranks),
            "labelled": int(labelled.sum()), "ties": int(((p_star == 0.5) & (labelled > 0)).sum()),
            "p_star": [float(x) if l else None for x, l in zip(p_star, labelled)], "pairs": len(p_star),
            "layout": f"{a.evoq_ranks} rank(s) x {threads} thread(s)", "labels": out}


def run_anchor(a, engine, model, pairs_json):
    script = os.path.join(HERE, f"vote_anchor_{engine}.py")
    python = a.vllm_python if engine == "vllm" else sys.executable
    cmd = [python, script, "--model", model, "--pairs", pairs_json, "-K", str(a.K), "--max-new-tokens",
           str(a.max_new_tokens), "--dtype", a.dtype, "--threads", str(a.threads), "--reasoning", "1", "--seed", "3"]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    t0 = time.perf_counter()
    r = json.loads(sh(cmd, env=env).strip().splitlines()[-1])
    wall = time.perf_counter() - t0
    ps = [x["p_star"] for x in r["pairs"]]
    return {"seconds": r["seconds"], "wall": wall, "samples": r["samples"], "labelled": sum(p is not None for p in ps),
            "ties": sum(p == 0.5 for p in ps), "p_star": ps, "pairs": len(ps), "versions": r["versions"],
            "layout": f"1 process x {a.threads} thread(s)"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evoq", default=os.path.join(ROOT, "build", "bin", "evoq"))
    ap.add_argument("--vllm-python", default=os.path.join(CACHE, "vllm-venv", "bin", "python"))
    ap.add_argument("--model", default=os.path.join(CACHE, "models", "evoq-default"))
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--refs", type=int, default=12, help="references distorted for the pool (36 pairs each)")
    ap.add_argument("-K", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--threads", type=int, default=2, help="threads per side (evoq: split over --evoq-ranks)")
    ap.add_argument("--evoq-ranks", type=int, default=1)
    ap.add_argument("--pairs-per-batch", type=int, default=8)
    ap.add_argument("--sides", nargs="+", default=["evoq-es", "evoq-all", "transformers", "vllm"])
    ap.add_argument("--work", default=os.path.join(os.environ.get("EVOQ_BENCH_DIR", "/tmp/evoq-bench"), "vote-job"))
    ap.add_argument("--json-out")
    a = ap.parse_args()
    unknown = set(a.sides) - {"evoq-es", "evoq-all", "transformers", "vllm"}
    if unknown:
        raise SystemExit(f"unknown side(s): {', '.join(sorted(unknown))}")
    if a.pairs > 36 * a.refs:
        raise SystemExit(f"--pairs {a.pairs} needs --refs >= {-(-a.pairs // 36)} (36 same-reference pairs each)")
    if not os.access(a.evoq, os.X_OK):
        raise SystemExit(f"evoq binary not found: {a.evoq}")
    bindir = os.path.dirname(a.evoq)
    if "vllm" in a.sides and not os.access(a.vllm_python, os.X_OK):
        raise SystemExit(f"vLLM venv not found: {a.vllm_python} (run bench/setup_vllm.sh, or drop vllm from --sides)")
    if not os.path.exists(os.path.join(a.model, "model.safetensors")):
        print(f"building the embedded default into {a.model} (a few minutes)", flush=True)
        sh([sys.executable, os.path.join(ROOT, "data_prep", "make_default_model.py"), a.model],
           env=dict(os.environ, EVOQ_DISTORT=os.path.join(bindir, "distort")))
    os.makedirs(a.work, exist_ok=True)
    pairs_h5, pairs_json = make_pairs(a, bindir, a.work)
    header = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine(), "evoq": git_rev(), "model": a.model, "pairs": a.pairs, "K": a.K,
              "max_new_tokens": a.max_new_tokens, "dtype": a.dtype, "threads": a.threads}
    print(json.dumps(header), flush=True)
    rows, versions = [], {}
    for side in a.sides:
        load0 = loadavg()
        if side.startswith("evoq"):
            r = run_evoq(a, a.model, pairs_h5, a.work, early_stop=(side == "evoq-es"))
        else:
            r = run_anchor(a, side, a.model, pairs_json)
            versions.update(r.pop("versions"))
        r.update(side=side, load=[load0, loadavg()])
        rows.append(r)
        print(json.dumps({k: v for k, v in r.items() if k not in ("p_star", "labels")}), flush=True)
    by = {r["side"]: r for r in rows}
    print(f"\n{header['date']}; {header['machine']}; evoq {header['evoq']}; "
          + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
          + f"; {a.pairs} pairs, K = {a.K}, <= {a.max_new_tokens} new tokens, {a.dtype}, {a.threads} threads per side")
    print("\n| side | layout | loop s | pairs/hour (loop) | wall s | pairs/hour (wall) | samples | saved | labelled | ties "
          "| loop vs transformers | loop vs vLLM | p* = evoq-all's | load before/after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    full = a.K * a.pairs
    for r in rows:
        ratio = lambda other: (f"{by[other]['seconds'] / r['seconds']:.2f}x" if other in by else "–")
        ref = by.get("evoq-all")
        agree = (f"{sum(x == y for x, y in zip(r['p_star'], ref['p_star'])) / len(ref['p_star']):.2f}"
                 if ref and r is not ref else "–")
        print(f"| {r['side']} | {r['layout']} | {r['seconds']:.1f} | {3600 * r['pairs'] / r['seconds']:.0f} | "
              f"{r['wall']:.1f} | {3600 * r['pairs'] / r['wall']:.0f} | {r['samples']} | "
              f"{full - r['samples']} ({(full - r['samples']) / full:.0%}) | {r['labelled']} | {r['ties']} | "
              f"{ratio('transformers')} | {ratio('vllm')} | {agree} | {r['load'][0][0]} / {r['load'][1][0]} |")
    if a.json_out:
        json.dump({"header": header, "rows": rows, "versions": versions}, open(a.json_out, "w"), indent=1)


if __name__ == "__main__":
    main()
