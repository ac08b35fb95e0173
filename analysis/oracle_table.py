#!/usr/bin/env python3
"""Summary of analysis/oracle_study.sh: held-out SRCC/PLCC against the KADID truth (all images, and the mean
within-type SRCC), per method, mean +- standard deviation over seeds, gain over the base model, the share
of the oracle's gain the label-free round recovers, and the vote accuracy against the truth's labels of the
same pairs (EvoEstimate: the order of its two images' mean sampled scores), SRCC on the 10 real CSIQ images, and
two figures: oracle_srcc.png (held-out SRCC per method, one dot per seed) and oracle_reward.png (mean training
reward per step, mean over seeds). Writes STUDY/oracle_table.md and prints it.

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
            "train": srcc_of(d, "eval-train-truth"), "csiq": srcc_of(d, "eval-csiq"),
            "within_type_srcc": float(np.nanmean(within)) if within else float("nan")}


def estimate_labels(d, truth):
    """p* of each truth pair from EvoEstimate's mean sampled scores (1 / 0.5 / 0; NaN when one has none)."""
    with h5py.File(os.path.join(d, "estimates.h5"), "r") as e:
        score = dict(zip(e["image_path"][:], e["pseudo_score"][:]))
    si = np.array([score.get(x, np.nan) for x in truth["path_i"][:]])
    sj = np.array([score.get(x, np.nan) for x in truth["path_j"][:]])
    p = np.where(si > sj, 1.0, np.where(si < sj, 0.0, 0.5))
    p[np.isnan(si) | np.isnan(sj)] = np.nan
    return p


def vote_accuracy(d):
    """Share of labelled pairs whose p* (0/0.5/1) is on the truth's side (truth ties excluded)."""
    with h5py.File(os.path.join(d, "truth-labels.h5"), "r") as t:
        q = t["p_star"][:]
        if os.path.exists(os.path.join(d, "labels.h5")):
            with h5py.File(os.path.join(d, "labels.h5"), "r") as a:
                p = a["p_star"][:]
        else:
            p = estimate_labels(d, t)
    ok = ~np.isnan(p) & (q != 0.5)
    return float(np.mean((p[ok] > 0.5) == (q[ok] > 0.5))) if ok.any() else float("nan")


def fmt(xs):
    """mean +- sd over the seeds; a seed whose value is undefined (its scores were all equal: the model
    collapsed to one answer) is counted, not averaged."""
    undefined = sum(1 for x in xs if x != x)
    xs = [x for x in xs if x == x]
    if not xs:
        return "-" if not undefined else f"undefined ({undefined})"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.3f} +- {sd:.3f} (n={len(xs)}" + (f", {undefined} undefined)" if undefined else ")")


def main(study):
    base = eval_numbers(os.path.join(study, "base"))
    runs = defaultdict(dict)
    for d in sorted(glob.glob(os.path.join(study, "runs", "*-s*"))):
        method, seed = os.path.basename(d).rsplit("-s", 1)
        if os.path.exists(os.path.join(d, "eval-truth", "results.json")):
            runs[method][seed] = dict(eval_numbers(d), vote_accuracy=vote_accuracy(d))
    lines = ["| model | SRCC vs truth | gain over base | PLCC | within-type SRCC | SRCC, trained prompt "
             "| SRCC, mean of 8 (trained prompt) | training-pool SRCC (trained prompt) | label accuracy | CSIQ SRCC |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| base | {base['srcc']:.3f} | - | {base['plcc']:.3f} | {base['within_type_srcc']:.3f} | "
             f"{base['trained']:.3f} | {base['mean8']:.3f} | {base['train']:.3f} | - | {base['csiq']:.3f} |"]
    gains = {}
    for method, by_seed in sorted(runs.items()):
        v = list(by_seed.values())
        gains[method] = [x["srcc"] - base["srcc"] for x in v]
        lines.append(f"| {method} | {fmt([x['srcc'] for x in v])} | {fmt(gains[method])} | {fmt([x['plcc'] for x in v])} "
                     f"| {fmt([x['within_type_srcc'] for x in v])} | {fmt([x['trained'] for x in v])} "
                     f"| {fmt([x['mean8'] for x in v])} "
                     f"| {fmt([x['train'] for x in v])} | {fmt([x['vote_accuracy'] for x in v])} "
                     f"| {fmt([x['csiq'] for x in v])} |")
    if "oracle" in gains and "evo" in gains and statistics.mean(gains["oracle"]) > 0:  # NaN > 0 is False
        lines.append(f"\nShare of the oracle's gain recovered by the label-free round: "
                     f"{statistics.mean(gains['evo']) / statistics.mean(gains['oracle']):.2f}")
    lines.append("\nSRCC of greedy answers to the paper's c_score prompt unless said (trained prompt = c_score + the "
                 "reasoning suffix, as in training); mean +- standard deviation over seeds; \"k undefined\": k seeds "
                 "whose model gave every image the same score (no SRCC), left out of the mean.")
    lines.append("\nPer seed: " + "; ".join(f"{m} s{s}: {x['srcc']:.3f}" for m, bs in sorted(runs.items())
                                             for s, x in sorted(bs.items())))
    lines.append("\nRound-2 rows (evo2, oracle2) start from that method's round-1 model of the same seed and are trained on "
                 "same-reference pairs; their label accuracy is on those pairs.")
    text = "\n".join(lines) + "\n"
    figures(study, base, runs)
    open(os.path.join(study, "oracle_table.md"), "w").write(text)
    print(text)


def reward_curve(d):
    path = os.path.join(d, "train", "metrics.jsonl")
    if not os.path.exists(path):
        return None
    return [json.loads(line)["reward_mean"] for line in open(path) if line.strip()]


def figures(study, base, runs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted(runs)
    fig, ax = plt.subplots(figsize=(1.2 * len(methods) + 2, 3.4))
    ax.axhline(base["srcc"], color="grey", ls="--", label=f"base {base['srcc']:.3f}")
    for x, m in enumerate(methods):
        ys = [v["srcc"] for v in runs[m].values() if v["srcc"] == v["srcc"]]
        ax.scatter([x] * len(ys), ys, color="C0", zorder=3)
        if ys:
            ax.errorbar(x + 0.15, np.mean(ys), yerr=np.std(ys, ddof=1) if len(ys) > 1 else 0, fmt="s", color="C3",
                        capsize=3)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel("held-out SRCC vs KADID truth")
    ax.set_title("final model of each method (dots: seeds; square: mean +- sd; 2 = after round 2)")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(study, "oracle_srcc.png"), dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for m in methods:
        curves = [c for c in (reward_curve(os.path.join(study, "runs", f"{m}-s{s}")) for s in runs[m]) if c]
        if curves:
            n = min(len(c) for c in curves)
            ax.plot(range(1, n + 1), np.mean([c[:n] for c in curves], axis=0), marker="o", ms=2, label=m)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward (mean over seeds)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(study, "oracle_reward.png"), dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1])
