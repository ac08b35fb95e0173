#!/usr/bin/env python3
"""Summary of analysis/oracle_study.sh: held-out SRCC/PLCC against the KADID truth (all images, and the mean
within-type SRCC), per method, mean +- standard deviation over seeds, gain over the base model, the share
of the oracle's gain the label-free round recovers, and the vote accuracy against the truth's labels of the
same pairs. Writes STUDY/oracle_table.md and prints it.

usage: oracle_table.py STUDY_DIR
"""
import csv
import glob
import json
import os
import re
import statistics
import sys
from collections import defaultdict

import h5py
import numpy as np
from scipy.stats import spearmanr


def srcc_of(d, name):
    path = os.path.join(d, name, "results.json")
    if not os.path.exists(path):
        return float("nan")
    v = json.load(open(path))["datasets"][0]["srcc"]
    return float(v) if isinstance(v, (int, float)) else float("nan")


def eval_numbers(d):
    res = json.load(open(os.path.join(d, "eval-truth", "results.json")))
    row = res["datasets"][0] if isinstance(res, dict) and "datasets" in res else res[0]
    scores = list(csv.DictReader(open(os.path.join(d, "eval-truth", "scores.csv"))))
    by_type = defaultdict(list)
    for r in scores:
        m = re.search(r"__(\w+?)_(\d)\.png$", r["path"])
        if m and r["model_score"] not in ("", "nan"):
            by_type[m.group(1)].append((float(r["human_score"]), float(r["model_score"]), int(m.group(2))))
    within = [spearmanr([-lv for _, _, lv in v], [s for _, s, _ in v])[0] for v in by_type.values() if len(v) > 2]
    num = lambda v: float(v) if isinstance(v, (int, float)) else float("nan")  # noqa: E731 (null: no valid score)
    return {"srcc": num(row["srcc"]), "plcc": num(row["plcc"]), "trained": srcc_of(d, "eval-truth-trained"), "mean8": srcc_of(d, "eval-truth-mean8"),
            "train": srcc_of(d, "eval-train-truth"),
            "within_type_srcc": float(np.nanmean(within)) if within else float("nan")}


def vote_accuracy(d):
    """Share of labelled pairs whose p* (0/0.5/1) is on the truth's side (truth ties excluded)."""
    with h5py.File(os.path.join(d, "labels.h5"), "r") as a, h5py.File(os.path.join(d, "truth-labels.h5"), "r") as t:
        p, q = a["p_star"][:], t["p_star"][:]
    ok = ~np.isnan(p) & (q != 0.5)
    return float(np.mean((p[ok] > 0.5) == (q[ok] > 0.5))) if ok.any() else float("nan")


def fmt(xs):
    xs = [x for x in xs if x == x]
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.3f} +- {sd:.3f} (n={len(xs)})"


def main(study):
    base = eval_numbers(os.path.join(study, "base"))
    runs = defaultdict(dict)
    for d in sorted(glob.glob(os.path.join(study, "runs", "*-s*"))):
        method, seed = os.path.basename(d).rsplit("-s", 1)
        if os.path.exists(os.path.join(d, "eval-truth", "results.json")):
            runs[method][seed] = dict(eval_numbers(d), vote_accuracy=vote_accuracy(d))
    lines = ["| model | SRCC vs truth | gain over base | PLCC | within-type SRCC | SRCC, trained prompt "
             "| SRCC, mean of 8 (trained prompt) | training-pool SRCC (trained prompt) | label accuracy |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| base | {base['srcc']:.3f} | - | {base['plcc']:.3f} | {base['within_type_srcc']:.3f} | "
             f"{base['trained']:.3f} | {base['mean8']:.3f} | {base['train']:.3f} | - |"]
    gains = {}
    for method, by_seed in sorted(runs.items()):
        v = list(by_seed.values())
        gains[method] = [x["srcc"] - base["srcc"] for x in v]
        lines.append(f"| {method} | {fmt([x['srcc'] for x in v])} | {fmt(gains[method])} | {fmt([x['plcc'] for x in v])} "
                     f"| {fmt([x['within_type_srcc'] for x in v])} | {fmt([x['trained'] for x in v])} "
                     f"| {fmt([x['mean8'] for x in v])} "
                     f"| {fmt([x['train'] for x in v])} | {fmt([x['vote_accuracy'] for x in v])} |")
    if "oracle" in gains and "evo" in gains and statistics.mean(gains["oracle"]) > 0:  # NaN > 0 is False
        lines.append(f"\nShare of the oracle's gain recovered by the label-free round: "
                     f"{statistics.mean(gains['evo']) / statistics.mean(gains['oracle']):.2f}")
    lines.append("\nSRCC of greedy answers to the paper's c_score prompt unless said (trained prompt = c_score + the "
                 "reasoning suffix, as in training); mean +- standard deviation over seeds.")
    lines.append("\nPer seed: " + "; ".join(f"{m} s{s}: {x['srcc']:.3f}" for m, bs in sorted(runs.items())
                                             for s, x in sorted(bs.items())))
    text = "\n".join(lines) + "\n"
    open(os.path.join(study, "oracle_table.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1])
