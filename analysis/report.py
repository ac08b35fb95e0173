#!/usr/bin/env python
"""Figures and a markdown report of one `evoq evolve` run folder.

    python analysis/report.py RUN --out DIR [--manifest distorted/manifest.csv ...] [--labels NAME=labels.h5 ...]

RUN is the folder of `evoq evolve --run` (round_<t>/{pairs.h5, labels.h5 | estimates.h5, train/, eval/,
eval.json}). --manifest gives the known distortion level/type/reference of images (the manifest.csv
of data_prep/distort; repeatable): with it, pseudo-label accuracy (against the true order of
same-reference pairs) and per-distortion-type SRCC are reported. --labels adds other labels files,
e.g. votes on held-out pairs. Writes DIR/report.md, DIR/report.json (every number of the report) and
DIR/*.png."""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evoq_run as er  # noqa: E402
import figures  # noqa: E402


def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def analyse(run, manifests=(), extra_labels=()):
    """Every number of the report (a dict; NaN where undefined)."""
    truth = er.Truth(manifests)
    out = {"run": os.path.abspath(run), "rounds": [], "extra_labels": {}}
    for t in er.rounds_of(run):
        d = er.round_dir(run, t)
        r = {"round": t, "eval": er.read_eval(os.path.join(d, "eval.json"))}
        rows = er.read_eval_scores(os.path.join(d, "eval"))
        if rows:
            s = np.array([x[2] for x in rows], float)
            r["scores"] = {"n": len(s), "valid": int(np.isfinite(s).sum()),
                           "mean": float(np.nanmean(s)) if np.isfinite(s).any() else float("nan"),
                           "std": float(np.nanstd(s)) if np.isfinite(s).any() else float("nan"),
                           "distinct": int(len(np.unique(s[np.isfinite(s)])))}
            r["per_type_srcc"] = er.per_type_srcc(rows, truth)
        lab = os.path.join(d, "labels.h5")
        if os.path.exists(lab):
            r["labels"] = er.label_statistics(er.read_labels(lab), truth)
        est = os.path.join(d, "estimates.h5")
        if os.path.exists(est):
            e = er.read_estimates(est)
            ps = e["pseudo_score"]
            r["estimates"] = {"images": len(ps), "K": e["K"], "with_score": int(np.isfinite(ps).sum()),
                              "pseudo_mean": float(np.nanmean(ps)) if np.isfinite(ps).any() else float("nan"),
                              "pseudo_std": float(np.nanstd(ps)) if np.isfinite(ps).any() else float("nan")}
        r["train"] = er.train_statistics(er.read_metrics(os.path.join(d, "train", "metrics.jsonl")))
        out["rounds"].append(r)
    for name, path in extra_labels:
        out["extra_labels"][name] = er.label_statistics(er.read_labels(path), truth)
    return out


def make_figures(run, result, out_dir, manifests=(), extra_labels=()):
    truth = er.Truth(manifests)
    figs = {}
    metrics = {t: er.read_metrics(os.path.join(er.round_dir(run, t), "train", "metrics.jsonl"))
               for t in er.rounds_of(run)}
    metrics = {t: m for t, m in metrics.items() if m}
    if metrics:
        figs["training_curves"] = figures.training_curves(metrics, os.path.join(out_dir, "training_curves.png"))
    labels = {}
    for t in er.rounds_of(run):
        p = os.path.join(er.round_dir(run, t), "labels.h5")
        if os.path.exists(p):
            labels[f"round {t} votes"] = er.read_labels(p)
    for name, path in extra_labels:
        labels[name] = er.read_labels(path)
    if labels:
        figs["vote_margins"] = figures.margin_histogram(
            {n: er.vote_margin(l["votes_i"], l["votes_j"]) for n, l in labels.items()},
            os.path.join(out_dir, "vote_margins.png"))
        figs["early_stop"] = figures.early_stop({n: l["samples_used"] for n, l in labels.items()},
                                                {n: l["K"] for n, l in labels.items()},
                                                os.path.join(out_dir, "early_stop.png"))
        if truth:
            stats = {n: er.label_statistics(l, truth) for n, l in labels.items()}
            figs["accuracy_vs_margin"] = figures.accuracy_vs_margin(stats, os.path.join(out_dir, "accuracy_vs_margin.png"))
    rows = {t: er.read_eval_scores(os.path.join(er.round_dir(run, t), "eval")) for t in er.rounds_of(run)}
    rows = {t: r for t, r in rows.items() if r}
    if rows:
        figs["score_distributions"] = figures.score_distributions(
            {t: [x[2] for x in r] for t, r in rows.items()}, os.path.join(out_dir, "score_distributions.png"))
        figs["score_vs_truth"] = figures.score_vs_truth(rows, os.path.join(out_dir, "score_vs_truth.png"))
        per_type = {r["round"]: r["per_type_srcc"] for r in result["rounds"] if r.get("per_type_srcc")}
        if per_type:
            figs["per_type_srcc"] = figures.per_type_srcc(per_type, os.path.join(out_dir, "per_type_srcc.png"))
    return {k: os.path.basename(v) for k, v in figs.items()}


def markdown(result, figs):
    L = [f"# Evolution run report\n", f"Run: `{result['run']}`\n", "## Evaluation per round\n",
         "| round | images | invalid | SRCC | PLCC | mean score | score std | distinct scores |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rounds"]:
        e, s = r.get("eval") or {}, r.get("scores") or {}
        L.append(f"| {r['round']} | {e.get('images', 'n/a')} | {e.get('invalid', 'n/a')} | {fmt(e.get('srcc'))} | "
                 f"{fmt(e.get('plcc'))} | {fmt(s.get('mean'))} | {fmt(s.get('std'))} | {s.get('distinct', 'n/a')} |")
    lab_rows = [(f"round {r['round']}", r["labels"]) for r in result["rounds"] if r.get("labels")]
    lab_rows += list(result["extra_labels"].items())
    if lab_rows:
        L += ["\n## Pseudo-labels (votes)\n",
              "Accuracy: right / pairs with a known order (same reference, different level); ties and missing "
              "labels count as not right. Decided: ties and missing labels left out.\n",
              "| labels | pairs | K | ties | ordered pairs | accuracy | accuracy (decided) | mean margin | "
              "samples saved by early stop |", "|---|---|---|---|---|---|---|---|---|"]
        for name, s in lab_rows:
            L.append(f"| {name} | {s['pairs']} | {s['K']} | {s['ties']} | {s['ordered_pairs']} | {fmt(s['accuracy'])} | "
                     f"{fmt(s['accuracy_decided'])} | {fmt(s['margin_mean'])} | {s['samples_saved']} of "
                     f"{s['samples_budget']} ({fmt(s['samples_saved_fraction'])}) |")
        L += ["\n### Accuracy by vote margin\n", "| labels | " + " | ".join(
            f"[{lo:.1f}, {min(hi, 1.0):.1f}{']' if hi > 1 else ')'}" for lo, hi in zip(er.MARGIN_BINS[:-1], er.MARGIN_BINS[1:])) + " |",
              "|---|" + "---|" * (len(er.MARGIN_BINS) - 1)]
        for name, s in lab_rows:
            if s["accuracy_by_margin"]:
                L.append(f"| {name} | " + " | ".join(f"{fmt(b['accuracy'])} (n={b['n']})" for b in s["accuracy_by_margin"]) + " |")
    est = [r for r in result["rounds"] if r.get("estimates")]
    if est:
        L += ["\n## EvoEstimate pseudo scores\n", "| round | images | K | with a score | mean | std |", "|---|---|---|---|---|---|"]
        for r in est:
            e = r["estimates"]
            L.append(f"| {r['round']} | {e['images']} | {e['K']} | {e['with_score']} | {fmt(e['pseudo_mean'])} | {fmt(e['pseudo_std'])} |")
    tr = [r for r in result["rounds"] if r.get("train")]
    if tr:
        L += ["\n## Training\n", "| round | steps | reward (first step) | reward (last step) | mean reward | KL (last) | "
              "mean clip fraction | mean invalid rate |", "|---|---|---|---|---|---|---|---|"]
        for r in tr:
            s = r["train"]
            L.append(f"| {r['round']} | {s['steps']} | {fmt(s['reward_first'])} | {fmt(s['reward_last'])} | "
                     f"{fmt(s['reward_mean'])} | {fmt(s['kl_last'], 5)} | {fmt(s['clip_fraction_mean'])} | {fmt(s['invalid_rate_mean'])} |")
    pt = [r for r in result["rounds"] if r.get("per_type_srcc")]
    if pt:
        types = sorted({k for r in pt for k in r["per_type_srcc"]})
        L += ["\n## SRCC per distortion type\n", "| round | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
        for r in pt:
            L.append(f"| {r['round']} | " + " | ".join(fmt(r["per_type_srcc"].get(k, {}).get("srcc")) for k in types) + " |")
    if figs:
        L.append("\n## Figures\n")
        for k, v in figs.items():
            L.append(f"![{k}]({v})\n")
    return "\n".join(L) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--out", required=True)
    ap.add_argument("--manifest", action="append", default=[], help="distort manifest.csv (level/type/reference)")
    ap.add_argument("--labels", action="append", default=[], help="NAME=labels.h5: extra labels (e.g. held-out votes)")
    ap.add_argument("--no-figures", action="store_true")
    a = ap.parse_args(argv)
    if not os.path.isdir(a.run):
        ap.error(f"{a.run}: not a folder")
    extra = []
    for spec in a.labels:
        if "=" not in spec:
            ap.error(f"--labels {spec}: use NAME=FILE")
        extra.append(tuple(spec.split("=", 1)))
    os.makedirs(a.out, exist_ok=True)
    result = analyse(a.run, a.manifest, extra)
    figs = {} if a.no_figures else make_figures(a.run, result, a.out, a.manifest, extra)
    result["figures"] = figs
    with open(os.path.join(a.out, "report.json"), "w") as f:
        json.dump(er.finite_or_none(result), f, indent=1)
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write(markdown(result, figs))
    print(os.path.join(a.out, "report.md"))


if __name__ == "__main__":
    main()
