"""analysis/report.py on a run folder built by hand (the layout of `evoq evolve`, docs/FORMATS.md): every
figure is written, and the report's numbers equal values derived here by hand / with scipy."""
import csv
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from scipy import stats

ROOT = os.environ.get("EVOQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
REPORT = os.path.join(ROOT, "analysis", "report.py")

# Images: reference A and B, levels 1..3, types blur / noise. Higher level = worse.
IMAGES = [("A_blur_1.png", "A", "blur", 1), ("A_blur_3.png", "A", "blur", 3), ("A_noise_2.png", "A", "noise", 2),
          ("B_blur_1.png", "B", "blur", 1), ("B_noise_2.png", "B", "noise", 2), ("B_noise_3.png", "B", "noise", 3)]


def write_labels(path, root, pairs, K):
    """pairs: (name_i, name_j, votes_i, votes_j, samples_used, failed)."""
    names = [n for n, *_ in IMAGES]
    vi = np.array([p[2] for p in pairs], np.int32)
    vj = np.array([p[3] for p in pairs], np.int32)
    failed = np.array([p[5] for p in pairs], np.uint8)
    p_star = np.where(vi > vj, 1.0, np.where(vi < vj, 0.0, 0.5))
    p_star[(vi + vj) == 0] = np.nan
    p_star[failed == 1] = np.nan
    s = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs["K"] = K
        f.attrs["root"] = root
        f.attrs["early_stop"] = 1
        f["image_path"] = np.array(names, dtype=object).astype(s)
        f["pair_i"] = np.array([names.index(p[0]) for p in pairs], np.int64)
        f["pair_j"] = np.array([names.index(p[1]) for p in pairs], np.int64)
        f["path_i"] = np.array([p[0] for p in pairs], dtype=object).astype(s)
        f["path_j"] = np.array([p[1] for p in pairs], dtype=object).astype(s)
        f["votes_i"], f["votes_j"] = vi, vj
        f["invalid"] = np.array([p[4] - p[2] - p[3] for p in pairs], np.int32)
        f["samples_used"] = np.array([p[4] for p in pairs], np.int32)
        f["p_star"] = p_star
        f["failed"] = failed
        f["labelled"] = np.isfinite(p_star).astype(np.uint8)


def write_eval(d, root, model_scores):
    os.makedirs(d / "eval", exist_ok=True)
    with open(d / "eval" / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "image", "path", "human_score", "model_score", "invalid_reason"])
        for (name, _, _, level), m in zip(IMAGES, model_scores):
            p = os.path.join(root, name)
            w.writerow(["levels", p, p, -level, "" if m is None else m, "" if m is not None else "no_answer"])
    h = [-lv for *_, lv in IMAGES]
    ok = [i for i, m in enumerate(model_scores) if m is not None]
    srcc = stats.spearmanr([h[i] for i in ok], [model_scores[i] for i in ok])[0]
    plcc = stats.pearsonr([h[i] for i in ok], [model_scores[i] for i in ok])[0]
    (d / "eval.json").write_text(json.dumps({"datasets": [
        {"name": "levels", "images": 6, "n": len(ok), "invalid": 6 - len(ok), "srcc": srcc, "plcc": plcc}]}))
    return srcc, plcc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("analysis")
    root = str(d / "images")
    with open(d / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "reference_id", "reference_path", "type", "type_id", "level"])
        for name, ref, typ, lv in IMAGES:
            w.writerow([os.path.join(root, name), ref, "", typ, 0, lv])
    r0, r1 = d / "run" / "round_0", d / "run" / "round_1"
    r0.mkdir(parents=True)
    (r1 / "train").mkdir(parents=True)
    base = write_eval(r0, root, [3.0, 2.0, 2.5, 4.0, 1.5, None])
    after = write_eval(r1, root, [4.0, 2.0, 3.0, 4.5, 3.5, 3.0])
    K = 8
    pairs = [  # name_i, name_j, votes_i, votes_j, samples_used, failed
        ("A_blur_1.png", "A_blur_3.png", 6, 1, 7, 0),    # right (level 1 < 3, p* = 1), margin 5/7
        ("A_blur_3.png", "A_noise_2.png", 5, 0, 5, 0),   # wrong (3 is worse but won), margin 1
        ("A_blur_1.png", "A_noise_2.png", 4, 4, 8, 0),   # tie: not right, margin 0
        ("B_noise_3.png", "B_blur_1.png", 1, 6, 8, 0),   # right (p* = 0, level 3 > 1), margin 5/7
        ("B_noise_2.png", "B_noise_3.png", 0, 0, 8, 0),  # no label (all invalid): not right
        ("A_blur_1.png", "B_blur_1.png", 5, 2, 8, 0),    # different references: no true order
        ("B_blur_1.png", "B_noise_2.png", 0, 0, 0, 1),   # failed: ignored
    ]
    write_labels(r1 / "labels.h5", root, pairs, K)
    metrics = [{"step": s, "reward_mean": 0.5 + 0.1 * s, "kl": 0.01 * s, "clip_fraction": 0.02 * s,
                "invalid_rate": 0.1} for s in range(3)]
    (r1 / "train" / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    out = d / "report"
    r = subprocess.run([sys.executable, REPORT, str(d / "run"), "--out", str(out), "--manifest", str(d / "manifest.csv"),
                        "--labels", f"heldout={r1 / 'labels.h5'}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return d, out, base, after, root


def test_figures_and_report_exist(run):
    _, out, *_ = run
    for name in ("training_curves", "vote_margins", "accuracy_vs_margin", "score_distributions", "score_vs_truth",
                 "per_type_srcc", "early_stop"):
        p = out / f"{name}.png"
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    md = (out / "report.md").read_text()
    assert "Pseudo-labels" in md and "![per_type_srcc](per_type_srcc.png)" in md


def test_pseudo_label_accuracy_by_hand(run):
    _, out, *_ = run
    rep = json.loads((out / "report.json").read_text())
    lab = rep["rounds"][1]["labels"]
    # Ordered pairs: the 5 same-reference pairs with different levels (not the cross-reference one, not the
    # failed one). Right: 2; tie 1; no label 1; wrong 1.
    assert lab["ordered_pairs"] == 5
    assert lab["accuracy"] == pytest.approx(2 / 5)
    assert lab["accuracy_decided"] == pytest.approx(2 / 3)
    assert lab["ties"] == 1 and lab["failed"] == 1 and lab["labelled"] == 5
    # Early stop: budget 6 non-failed pairs x K 8 = 48, used 7+5+8+8+8+8 = 44.
    assert lab["samples_budget"] == 48 and lab["samples_used"] == 44 and lab["samples_saved"] == 4
    # Margins of the non-failed pairs: 5/7, 1, 0, 5/7, (none), 3/7.
    assert lab["margin_mean"] == pytest.approx(np.mean([5 / 7, 1, 0, 5 / 7, 3 / 7]))
    # By margin bin: [0,.2): the tie (not right) -> 0 of 1; [.6,.8): two right -> 1.0; [.8,1]: the wrong one.
    bins = {(b["lo"], b["n"]): b["accuracy"] for b in lab["accuracy_by_margin"]}
    assert bins[(0.0, 1)] == 0.0 and bins[(0.6, 2)] == 1.0 and bins[(0.8, 1)] == 0.0
    assert rep["extra_labels"]["heldout"]["accuracy"] == pytest.approx(2 / 5)


def test_eval_and_per_type_numbers(run):
    d, out, base, after, root = run
    rep = json.loads((out / "report.json").read_text())
    r0, r1 = rep["rounds"]
    assert r0["eval"]["srcc"] == pytest.approx(base[0]) and r1["eval"]["plcc"] == pytest.approx(after[1])
    assert r0["scores"]["valid"] == 5 and r1["scores"]["mean"] == pytest.approx(np.mean([4, 2, 3, 4.5, 3.5, 3]))
    # Per type, round 1: blur images (levels 1, 3, 1) scored 4, 2, 4.5; noise (2, 2, 3) scored 3, 3.5, 3.
    blur = stats.spearmanr([-1, -3, -1], [4.0, 2.0, 4.5])[0]
    noise = stats.spearmanr([-2, -2, -3], [3.0, 3.5, 3.0])[0]
    assert r1["per_type_srcc"]["blur"]["srcc"] == pytest.approx(blur)
    assert r1["per_type_srcc"]["noise"]["srcc"] == pytest.approx(noise)
    # Round 0 noise: the level-3 image has no score, the two others are level 2: constant truth -> undefined.
    assert r0["per_type_srcc"]["noise"]["srcc"] is None
    tr = r1["train"]
    assert tr["steps"] == 3 and tr["reward_last"] == pytest.approx(0.7) and tr["clip_fraction_mean"] == pytest.approx(0.02)
