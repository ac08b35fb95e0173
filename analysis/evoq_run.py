"""Readers for the outputs of `evoq evolve` (docs/FORMATS.md, docs/TRAINING.md, docs/EVAL.md) and the
statistics the study reports. Plain numpy/scipy/h5py; no plotting here (figures.py)."""
import csv
import json
import math
import os
import re

import h5py
import numpy as np
from scipy import stats


def _s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def _num(v):
    return float(v) if isinstance(v, (int, float)) and v is not None else float("nan")


# ----------------------------------------------------------------------------------------------- ground truth
class Truth:
    """Known distortion level / type / reference of images, from `data_prep/distort` manifests
    (CSV columns path, reference_id, type, level). Lookup by absolute path, then by file name."""

    def __init__(self, manifests=()):
        self.by_path, self.by_name = {}, {}
        for m in manifests:
            with open(m, newline="") as f:
                for r in csv.DictReader(f):
                    path = r["path"]
                    if not os.path.isabs(path):
                        path = os.path.join(os.path.dirname(os.path.abspath(m)), path)
                    info = {"level": int(r["level"]), "type": r.get("type", ""), "reference": r.get("reference_id", "")}
                    self.by_path[os.path.normpath(path)] = info
                    self.by_name[os.path.basename(path)] = info

    def __bool__(self):
        return bool(self.by_path)

    def get(self, path, root=""):
        p = path if os.path.isabs(path) or not root else os.path.join(root, path)
        return self.by_path.get(os.path.normpath(p)) or self.by_name.get(os.path.basename(path))


# ----------------------------------------------------------------------------------------------- run layout
def rounds_of(run):
    """Round numbers present in RUN (round_0 = the initial model's evaluation)."""
    out = []
    for name in os.listdir(run):
        m = re.fullmatch(r"round_(\d+)", name)
        if m and os.path.isdir(os.path.join(run, name)):
            out.append(int(m.group(1)))
    return sorted(out)


def round_dir(run, t):
    return os.path.join(run, f"round_{t}")


def read_metrics(path):
    """metrics.jsonl of `evoq train`: list of dicts, in step order (a torn last line is ignored)."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return sorted(rows, key=lambda r: r["step"])


def read_eval(path):
    """eval.json (= results.json of `evoq eval`): first dataset's metrics."""
    if not os.path.exists(path):
        return None
    d = json.load(open(path))["datasets"][0]
    return {"name": d.get("name"), "n": d.get("n", 0), "images": d.get("images", 0), "invalid": d.get("invalid", 0),
            "srcc": _num(d.get("srcc")), "plcc": _num(d.get("plcc")), "krcc": _num(d.get("krcc"))}


def read_eval_scores(eval_dir):
    """scores.csv of `evoq eval`: list of (path, human score, model score or NaN)."""
    path = os.path.join(eval_dir, "scores.csv")
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            ms = r["model_score"]
            rows.append((r["path"], float(r["human_score"]), float(ms) if ms not in ("", "nan") else float("nan")))
    return rows


def read_labels(path):
    """labels.h5 (docs/FORMATS.md): per-pair arrays and attributes."""
    with h5py.File(path, "r") as f:
        out = {k: f[k][:] for k in ("votes_i", "votes_j", "invalid", "samples_used", "p_star", "failed")}
        out["path_i"] = [_s(x) for x in f["path_i"][:]]
        out["path_j"] = [_s(x) for x in f["path_j"][:]]
        out["K"] = int(f.attrs["K"])
        out["root"] = _s(f.attrs.get("root", ""))
        out["early_stop"] = int(f.attrs.get("early_stop", 1))
    return out


def read_estimates(path):
    """estimates.h5 of `evoq estimate` (docs/FORMATS.md)."""
    with h5py.File(path, "r") as f:
        return {"image_path": [_s(x) for x in f["image_path"][:]], "pseudo_score": f["pseudo_score"][:],
                "valid": f["valid"][:], "K": int(f.attrs["K"]), "root": _s(f.attrs.get("root", ""))}


def read_rollout_scores(train_dir):
    """Every sampled score of the rollouts files: (step, score, valid, reward) arrays."""
    d = os.path.join(train_dir, "rollouts")
    steps, scores, valid, reward = [], [], [], []
    if os.path.isdir(d):
        for name in sorted(os.listdir(d)):
            if not name.endswith(".h5"):
                continue
            with h5py.File(os.path.join(d, name), "r") as f:
                n = len(f["score"])
                steps.append(np.full(n, int(f.attrs["step"])))
                scores.append(f["score"][:])
                valid.append(f["valid"][:])
                reward.append(f["reward"][:])
    cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt)  # noqa: E731
    return cat(steps, int), cat(scores, float), cat(valid, np.uint8), cat(reward, float)


# ----------------------------------------------------------------------------------------------- statistics
MARGIN_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0001)


def vote_margin(votes_i, votes_j):
    """|K_x - K_y| / (K_x + K_y): the share of the valid votes by which the majority won (0 = tie)."""
    vi, vj = np.asarray(votes_i, float), np.asarray(votes_j, float)
    tot = vi + vj
    return np.where(tot > 0, np.abs(vi - vj) / np.maximum(tot, 1), np.nan)


def label_statistics(labels, truth=None):
    """Counts of a labels.h5, the early stop's savings and, where the true order is known (same
    reference, different distortion level: the less distorted image is better), the pseudo-label
    accuracy. Accuracy = right / ordered pairs, where a tie (p* = 0.5) or a missing label counts as
    not right (the demo's definition); accuracy_decided leaves ties and missing labels out."""
    p = np.asarray(labels["p_star"], float)
    failed = np.asarray(labels["failed"]).astype(bool)
    used = np.asarray(labels["samples_used"], float)
    K = labels["K"]
    ok = ~failed
    margin = vote_margin(labels["votes_i"], labels["votes_j"])
    out = {
        "pairs": int(len(p)), "failed": int(failed.sum()), "labelled": int(np.isfinite(p[ok]).sum()),
        "ties": int((p[ok] == 0.5).sum()), "K": K,
        "samples_used": int(used[ok].sum()), "samples_budget": int(K * ok.sum()),
        "invalid_answers": int(np.asarray(labels["invalid"])[ok].sum()),
        "margin_mean": float(np.nanmean(margin[ok])) if ok.any() and np.isfinite(margin[ok]).any() else float("nan"),
    }
    out["samples_saved"] = out["samples_budget"] - out["samples_used"]
    out["samples_saved_fraction"] = out["samples_saved"] / out["samples_budget"] if out["samples_budget"] else float("nan")
    out["accuracy"] = out["accuracy_decided"] = float("nan")
    out["ordered_pairs"] = 0
    out["accuracy_by_margin"] = []
    if not truth:
        return out
    correct, ordered_margin = [], []
    for a, b, ps, m, bad in zip(labels["path_i"], labels["path_j"], p, margin, failed):
        ta, tb = truth.get(a, labels["root"]), truth.get(b, labels["root"])
        if bad or ta is None or tb is None or ta["reference"] != tb["reference"] or ta["level"] == tb["level"]:
            continue
        if not np.isfinite(ps) or ps == 0.5:
            correct.append(np.nan)  # no decision
        else:
            correct.append(1.0 if (ps == 1.0) == (ta["level"] < tb["level"]) else 0.0)
        ordered_margin.append(m)
    c = np.array(correct, float)
    om = np.array(ordered_margin, float)
    out["ordered_pairs"] = int(len(c))
    if len(c):
        out["accuracy"] = float(np.nansum(c) / len(c))
        decided = np.isfinite(c)
        out["accuracy_decided"] = float(c[decided].mean()) if decided.any() else float("nan")
        for lo, hi in zip(MARGIN_BINS[:-1], MARGIN_BINS[1:]):
            sel = (om >= lo) & (om < hi)
            n = int(sel.sum())
            out["accuracy_by_margin"].append({"lo": lo, "hi": min(hi, 1.0), "n": n,
                                              "accuracy": float(np.nansum(c[sel]) / n) if n else float("nan")})
    return out


def correlations(human, model):
    """SRCC and raw PLCC over the pairs where the model gave a score (NaN when undefined)."""
    h, m = np.asarray(human, float), np.asarray(model, float)
    ok = np.isfinite(m)
    h, m = h[ok], m[ok]
    if len(h) < 2 or np.ptp(m) == 0 or np.ptp(h) == 0:
        return float("nan"), float("nan")
    return float(stats.spearmanr(h, m)[0]), float(stats.pearsonr(h, m)[0])


def per_type_srcc(score_rows, truth, root=""):
    """SRCC of model score vs human score per distortion type (images whose type is known)."""
    groups = {}
    for path, human, model in score_rows:
        t = truth.get(path, root) if truth else None
        if t is not None:
            groups.setdefault(t["type"], ([], []))
            groups[t["type"]][0].append(human)
            groups[t["type"]][1].append(model)
    return {k: {"n": len(v[0]), "srcc": correlations(*v)[0]} for k, v in sorted(groups.items())}


def train_statistics(metrics):
    if not metrics:
        return None
    col = lambda k: [float(r.get(k, float("nan"))) for r in metrics]  # noqa: E731
    reward, kl, clip = col("reward_mean"), col("kl"), col("clip_fraction")
    return {"steps": len(metrics), "reward_first": reward[0], "reward_last": reward[-1],
            "reward_mean": float(np.mean(reward)), "kl_last": kl[-1], "clip_fraction_mean": float(np.mean(clip)),
            "invalid_rate_mean": float(np.mean(col("invalid_rate")))}


def finite_or_none(x):
    """JSON-friendly: NaN/inf -> None, numpy scalars -> Python numbers, recursively."""
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_or_none(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x
