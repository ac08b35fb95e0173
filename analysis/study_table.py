#!/usr/bin/env python
"""Tables and figures of the replication study (analysis/run_study.sh) across its runs and seeds.

    python analysis/study_table.py STUDY_DIR

STUDY_DIR holds data/ (the distort manifests of the training pool and the held-out test set),
base/ (the initial model: held-out eval, held-out votes, CSIQ eval) and runs/<method>-K<k>-s<seed>/ (one
`evoq evolve` run each; per round: eval.json on the held-out set, heldout-labels.h5 = votes of that
round's model on the held-out pairs, csiq/results.json). Writes STUDY_DIR/study.md, study.json and
study_*.png. Spread = sample standard deviation over seeds (n = number of seeds)."""
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evoq_run as er  # noqa: E402
import figures  # noqa: E402  (sets the Agg backend)
import matplotlib.pyplot as plt  # noqa: E402

RUN_NAME = re.compile(r"(evoquality|evoestimate)-K(\d+)-s(\d+)")


def model_numbers(folder, test_truth, train_truth=None):
    """Held-out SRCC/PLCC (eval.json), held-out pseudo-label accuracy (heldout-labels.h5), CSIQ, and,
    for a round, the accuracy of the labels it trained on (labels.h5 against the training pool)."""
    out = {}
    ev = er.read_eval(os.path.join(folder, "eval.json"))
    if ev:
        out.update(srcc=ev["srcc"], plcc=ev["plcc"], invalid=ev["invalid"])
    hl = os.path.join(folder, "heldout-labels.h5")
    if os.path.exists(hl):
        s = er.label_statistics(er.read_labels(hl), test_truth)
        out.update(heldout_accuracy=s["accuracy"], heldout_accuracy_decided=s["accuracy_decided"],
                   heldout_ties=s["ties"], heldout_ordered=s["ordered_pairs"])
    cs = er.read_eval(os.path.join(folder, "csiq", "results.json"))
    if cs:
        out.update(csiq_srcc=cs["srcc"], csiq_plcc=cs["plcc"], csiq_invalid=cs["invalid"])
    lab = os.path.join(folder, "labels.h5")
    if train_truth is not None and os.path.exists(lab):
        s = er.label_statistics(er.read_labels(lab), train_truth)
        out.update(train_label_accuracy=s["accuracy"], train_label_ties=s["ties"],
                   samples_saved_fraction=s["samples_saved_fraction"])
    tr = er.train_statistics(er.read_metrics(os.path.join(folder, "train", "metrics.jsonl")))
    if tr:
        out.update(reward_first=tr["reward_first"], reward_last=tr["reward_last"], kl_last=tr["kl_last"])
    return out


def collect(study):
    test_truth = er.Truth([os.path.join(study, "data", "distorted-test", "manifest.csv")])
    train_truth = er.Truth([os.path.join(study, "data", "distorted-train", "manifest.csv")])
    rows = [{"method": "base", "K": 0, "seed": 0, "round": 0, **model_numbers(os.path.join(study, "base"), test_truth)}]
    runs = os.path.join(study, "runs")
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        m = RUN_NAME.fullmatch(name)
        if not m:
            continue
        for t in er.rounds_of(os.path.join(runs, name)):
            if t == 0:
                continue
            folder = er.round_dir(os.path.join(runs, name), t)
            if not os.path.exists(os.path.join(folder, "eval.json")):
                continue  # unfinished round
            rows.append({"method": m.group(1), "K": int(m.group(2)), "seed": int(m.group(3)), "round": t,
                         **model_numbers(folder, test_truth, train_truth)})
    return rows


def aggregate(rows, keys):
    """Mean, sample std and n over seeds of each metric, per (method, K, round)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["method"], r["K"], r["round"]), []).append(r)
    out = {}
    for g, rs in groups.items():
        out[g] = {}
        for k in keys:
            v = np.array([r.get(k, np.nan) for r in rs], float)
            v = v[np.isfinite(v)]
            out[g][k] = {"mean": float(v.mean()) if len(v) else float("nan"),
                         "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"), "n": int(len(v)),
                         "of": len(rs)}
    return out


METRICS = ["srcc", "plcc", "heldout_accuracy", "heldout_accuracy_decided", "csiq_srcc", "csiq_plcc",
           "train_label_accuracy", "samples_saved_fraction", "reward_first", "reward_last", "kl_last", "invalid",
           "csiq_invalid"]


def cell(a):
    if not a or a["n"] == 0:
        return f"n/a (0/{a['of']})" if a else "-"
    s = f"{a['mean']:.3f}"
    if a["n"] > 1:
        s += f" ± {a['std']:.3f}"
    return s + (f" ({a['n']}/{a['of']})" if a["n"] != a["of"] or a["of"] > 1 else "")


def table(agg, groups, cols, title):
    L = [f"\n### {title}\n", "| model | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for label, g in groups:
        if g in agg:
            L.append(f"| {label} | " + " | ".join(cell(agg[g].get(k)) for _, k in cols) + " |")
    return L


def k_figure(agg, path):
    Ks = sorted({g[1] for g in agg if g[0] == "evoquality" and g[2] == 1})
    if not Ks:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key, title in zip(axes, ("train_label_accuracy", "heldout_accuracy", "srcc"),
                              ("pseudo-label accuracy (training pool)", "held-out pseudo-label accuracy",
                               "held-out SRCC after round 1")):
        m = [agg[("evoquality", k, 1)][key]["mean"] for k in Ks]
        s = [agg[("evoquality", k, 1)][key]["std"] for k in Ks]
        ax.errorbar(range(len(Ks)), m, yerr=np.nan_to_num(s), marker="o", capsize=3)
        if key != "train_label_accuracy" and ("base", 0, 0) in agg:
            ax.axhline(agg[("base", 0, 0)][key]["mean"], color="grey", ls="--", lw=0.8, label="base model")
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(Ks)), [str(k) for k in Ks])
        ax.set_xlabel("K (votes per pair)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return os.path.basename(path)


def rounds_figure(agg, path):
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for method, colour in (("evoquality", "C0"), ("evoestimate", "C1")):
        K = 8
        pts = [("base", 0, 0)] + [(method, K, t) for t in (1, 2)]
        pts = [p for p in pts if p in agg]
        for ax, key, title in zip(axes, ("srcc", "plcc", "heldout_accuracy"),
                                  ("held-out SRCC", "held-out PLCC", "held-out pseudo-label accuracy")):
            ax.errorbar([p[2] for p in pts], [agg[p][key]["mean"] for p in pts],
                        yerr=np.nan_to_num([agg[p][key]["std"] for p in pts]), marker="o", capsize=3, color=colour,
                        label=method)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("round (0 = base model)")
            ax.set_xticks([0, 1, 2])
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return os.path.basename(path)


def main(argv=None):
    study = (argv or sys.argv[1:])[0]
    rows = collect(study)
    agg = aggregate(rows, METRICS)
    Ks = sorted({g[1] for g in agg if g[0] == "evoquality"})
    L = ["# Study tables (generated by analysis/study_table.py)\n",
         "Cells: mean ± sample std over seeds (values with a result / runs); n/a = undefined (e.g. constant "
         "scores give no correlation)."]
    cols = [("SRCC", "srcc"), ("PLCC", "plcc"), ("held-out accuracy", "heldout_accuracy"),
            ("held-out accuracy (decided)", "heldout_accuracy_decided"), ("invalid scores", "invalid")]
    L += table(agg, [("base", ("base", 0, 0)), ("EvoQuality K=8 round 1", ("evoquality", 8, 1)),
                     ("EvoQuality K=8 round 2", ("evoquality", 8, 2))], cols, "Rounds (held-out references)")
    L += table(agg, [(f"K={k}", ("evoquality", k, 1)) for k in Ks],
               [("pseudo-label accuracy (train pool)", "train_label_accuracy"),
                ("samples saved by early stop", "samples_saved_fraction")] + cols[:4], "Votes per pair K (round 1)")
    L += table(agg, [("base", ("base", 0, 0)), ("EvoQuality round 1", ("evoquality", 8, 1)),
                     ("EvoEstimate round 1", ("evoestimate", 8, 1)), ("EvoQuality round 2", ("evoquality", 8, 2)),
                     ("EvoEstimate round 2", ("evoestimate", 8, 2))], cols, "EvoQuality vs EvoEstimate (K = 8)")
    L += table(agg, [("base", ("base", 0, 0)), ("EvoQuality K=8 round 2", ("evoquality", 8, 2)),
                     ("EvoEstimate K=8 round 2", ("evoestimate", 8, 2))],
               [("CSIQ SRCC", "csiq_srcc"), ("CSIQ PLCC", "csiq_plcc"), ("invalid", "csiq_invalid")],
               "CSIQ sample (10 real images, DMOS)")
    L += table(agg, [(f"{m} K={k} round {t}", (m, k, t)) for (m, k, t) in sorted(g for g in agg if g[0] != "base")],
               [("reward (first step)", "reward_first"), ("reward (last step)", "reward_last"), ("KL (last)", "kl_last")],
               "Training")
    figs = [f for f in (k_figure(agg, os.path.join(study, "study_K.png")),
                        rounds_figure(agg, os.path.join(study, "study_rounds.png"))) if f]
    L += ["\n"] + [f"![{f}]({f})\n" for f in figs]
    with open(os.path.join(study, "study.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    with open(os.path.join(study, "study.json"), "w") as f:
        json.dump(er.finite_or_none({"rows": rows, "aggregate": {"/".join(map(str, g)): v for g, v in agg.items()}}),
                  f, indent=1)
    print(os.path.join(study, "study.md"))


if __name__ == "__main__":
    main()
