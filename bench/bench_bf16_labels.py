#!/usr/bin/env python3
"""What bf16 voting trades (issue 19, item 3): labels of `evoq vote --dtype bf16` against `--dtype fp32` on the
embedded default model, on the same pairs as bench/bench_vote_job.py (same-reference pairs of distorted
images, K samples with the reasoning suffix).

Runs (same pairs, seed 3 unless said): fp32 and bf16 with the early stop off (every pair draws K samples,
so sample k of a pair is the same random stream in both dtypes and the two runs differ only by the
arithmetic), fp32 with seed 4 (the sampling noise a rerun with another seed gives, as the yardstick), and
fp32 and bf16 with the early stop on (the labels users get by default). Reported:
  vote agreement  share of samples whose answer (x_i, x_j or invalid, in the original order) is the same;
  p* agreement    share of pairs with the same Eq. 1 outcome (1 / 0.5 / 0 / no label);
  accuracy        share of pairs of one reference and one distortion type with different levels whose p*
                  names the less distorted image (ties and no label count as wrong).

usage: bench/bench_bf16_labels.py [--pairs 200] [-K 32] [--threads 2] [--model DIR] [--json-out F]
"""
import argparse
import csv
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_engines import git_rev, loadavg, machine  # noqa: E402
from bench_vote_job import CACHE, make_pairs, run_evoq, sh  # noqa: E402


def read(labels):
    import h5py
    import numpy as np
    text = lambda v: v.decode() if isinstance(v, bytes) else v
    with h5py.File(labels) as f:
        root = text(f.attrs["root"])
        full = lambda v: os.path.normpath(os.path.join(root, text(v)))  # absolute paths stay as they are
        return {"p_star": np.nan_to_num(f["p_star"][:], nan=-1.0), "answer": f["sample_answer"][:],
                "offset": f["sample_offset"][:], "used": f["samples_used"][:],
                "paths": [(full(x), full(y)) for x, y in zip(f["path_i"][:], f["path_j"][:])]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evoq", default=os.path.join(ROOT, "build", "bin", "evoq"))
    ap.add_argument("--model", default=os.path.join(CACHE, "models", "evoq-default"))
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--refs", type=int, default=12)
    ap.add_argument("-K", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--evoq-ranks", type=int, default=2)
    ap.add_argument("--pairs-per-batch", type=int, default=8)
    ap.add_argument("--work", default=os.path.join(os.environ.get("EVOQ_BENCH_DIR", "/tmp/evoq-bench"), "bf16-labels"))
    ap.add_argument("--json-out")
    a = ap.parse_args()
    a.dtype = "fp32"
    if not os.access(a.evoq, os.X_OK):
        raise SystemExit(f"evoq binary not found: {a.evoq}")
    if not os.path.exists(os.path.join(a.model, "model.safetensors")):
        print(f"building the embedded default into {a.model} (a few minutes)", flush=True)
        sh([sys.executable, os.path.join(ROOT, "data_prep", "make_default_model.py"), a.model],
           env=dict(os.environ, EVOQ_DISTORT=os.path.join(os.path.dirname(a.evoq), "distort")))
    os.makedirs(a.work, exist_ok=True)
    pairs_h5, _ = make_pairs(a, os.path.dirname(a.evoq), a.work)
    level = {}
    for r in csv.DictReader(open(os.path.join(a.work, "distorted", "manifest.csv"))):
        level[os.path.normpath(r["path"])] = (r["reference_id"], r["type"], int(r["level"]))
    header = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine(), "evoq": git_rev(), "model": a.model, "pairs": a.pairs, "K": a.K,
              "max_new_tokens": a.max_new_tokens, "load_before": loadavg()}
    print(json.dumps(header), flush=True)
    runs = {}
    for dtype, es, seed in (("fp32", 0, 3), ("bf16", 0, 3), ("fp32", 0, 4), ("fp32", 1, 3), ("bf16", 1, 3)):
        r = run_evoq(a, a.model, pairs_h5, a.work, early_stop=bool(es), dtype=dtype, seed=seed)
        runs[(dtype, es, seed)] = dict(read(r["labels"]), seconds=r["seconds"])
        print(json.dumps({"dtype": dtype, "early_stop": es, "seed": seed, "loop_seconds": r["seconds"],
                          "samples": r["samples"], "load": loadavg()}), flush=True)

    def vote_agreement(x, y):
        assert (x["used"] == a.K).all() and (y["used"] == a.K).all()
        return float((x["answer"] == y["answer"]).mean())

    def p_agreement(x, y):
        return float((x["p_star"] == y["p_star"]).mean())

    def accuracy(x):
        right = n = 0
        for (pi, pj), p in zip(x["paths"], x["p_star"]):
            (ri, ti, li), (rj, tj, lj) = level[pi], level[pj]
            if ri != rj or ti != tj or li == lj:
                continue
            n += 1
            right += p == (1.0 if li < lj else 0.0)
        return right / n if n else float("nan"), n

    f3, b3, f4 = runs[("fp32", 0, 3)], runs[("bf16", 0, 3)], runs[("fp32", 0, 4)]
    fe, be = runs[("fp32", 1, 3)], runs[("bf16", 1, 3)]
    rows = [("bf16 vs fp32, early stop off, same seed", vote_agreement(b3, f3), p_agreement(b3, f3)),
            ("fp32 seed 4 vs fp32 seed 3, early stop off (rerun noise)", vote_agreement(f4, f3), p_agreement(f4, f3)),
            ("bf16 vs fp32, early stop on (the default), same seed", None, p_agreement(be, fe))]
    print(f"\n{header['date']}; {header['machine']}; evoq {header['evoq']}; {a.pairs} pairs, K = {a.K}, "
          f"<= {a.max_new_tokens} new tokens; load {' '.join(header['load_before'])} before, {' '.join(loadavg())} after")
    print("\n| comparison | vote agreement | p* agreement |")
    print("|---|---|---|")
    for name, v, p in rows:
        print(f"| {name} | {'–' if v is None else f'{v:.3f}'} | {p:.3f} |")
    print("\n| run | accuracy on same-type pairs (n) | mean samples per pair | loop s |")
    print("|---|---|---|---|")
    for (dtype, es, seed), x in runs.items():
        acc, n = accuracy(x)
        print(f"| {dtype}, early stop {'on' if es else 'off'}, seed {seed} | {acc:.3f} ({n}) | {x['used'].mean():.1f} | "
              f"{x['seconds']:.1f} |")
    if a.json_out:
        json.dump({"header": header, "agreement": rows}, open(a.json_out, "w"), indent=1)


if __name__ == "__main__":
    main()
