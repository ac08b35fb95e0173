"""analysis/oracle_study.sh in a reduced size (a tiny model rigged to answer with digits instead of the
embedded default; 1 seed, 6 pairs, 1 step): both label sources and EvoEstimate are made for the same pairs, trained and
measured, a second (same-reference) round follows the vote round, and the table and figures are written.
Oracle: the truth's labels are recomputed here from the KADID label file (mean score of each type and level),
so the oracle's label accuracy must be exactly 1; EvoEstimate's accuracy is recomputed here from its
estimates.h5."""
import csv
import json
import os
import subprocess
import sys

import h5py
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from train_testlib import DIGITS, build_scoring_model, save_checkpoint  # noqa: E402

ROOT = os.environ.get("EVOQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.path.dirname(os.environ.get("EVOQ_BIN", os.path.join(ROOT, "build", "bin", "evoq")))
KADID = {"gaussian_blur": "GBLUR", "white_noise": "AWGN", "jpeg": "JPEG"}


def kadid_means():
    sums = {}
    with open(os.path.join(ROOT, "data", "iqa-labels", "KADID-10k.txt")) as f:
        for row in csv.DictReader(f):
            sums.setdefault((row["dis_type"], int(row["dis_img_path"][-6:-4])), []).append(float(row["score"]))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def test_oracle_study_reduced(tmp_path):
    model = tmp_path / "model"
    save_checkpoint(build_scoring_model(seed=0, digits=[15] + DIGITS, end_bias=1.5, digit_bias={15: 1.5, 16: 1.5},
                                        context_scale=0.1), str(model))
    study = tmp_path / "study"
    env = dict(os.environ, STUDY_MODEL=str(model), EVOQ_BIN_DIR=BIN_DIR, STUDY_SEEDS="1", STUDY_TRAIN_REFS="2",
               STUDY_PAIRS="6", STUDY_K="2", STUDY_STEPS="1", STUDY_PAIRS_PER_STEP="1", STUDY_TRAIN_SAMPLES="2",
               STUDY_EST_K="16",  # the rigged model's c_score answers are mostly invalid: enough samples for estimates
               STUDY_METHODS="oracle evo est", STUDY_ROUND2="evo")
    r = subprocess.run(["bash", os.path.join(ROOT, "analysis", "oracle_study.sh"), str(study)], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = (study / "oracle_table.md").read_text()
    assert "| oracle |" in table and "| evo |" in table and "| base |" in table
    means = kadid_means()
    manifest = {r["path"]: r for r in csv.DictReader(open(study / "data" / "distorted-train" / "manifest.csv"))}
    truth = lambda p: means[(KADID[manifest[p]["type"]], int(manifest[p]["level"]))]  # noqa: E731
    for method in ("oracle", "evo"):
        with h5py.File(study / "runs" / f"{method}-s1" / "labels.h5", "r") as f:
            names = [x.decode() for x in f["image_path"][:]]
            pairs = [(names[i], names[j]) for i, j in zip(f["pair_i"][:], f["pair_j"][:])]
            p_star = f["p_star"][:]
        assert len(pairs) == 6
        if method == "oracle":
            for (a, b), p in zip(pairs, p_star):
                want = 1.0 if truth(a) > truth(b) else 0.0 if truth(a) < truth(b) else 0.5
                assert p == want, (a, b)
        assert (study / "runs" / f"{method}-s1" / "eval-truth" / "results.json").exists()
    cells = lambda name: next(line for line in table.splitlines() if line.startswith(f"| {name} |")).split(" | ")  # noqa: E731
    accuracy_column = 8
    assert cells("oracle")[accuracy_column] == "1.000 +- 0.000 (n=1)"  # label accuracy against the truth
    # EvoEstimate: the order of the two images' mean sampled scores, against the truth.
    with h5py.File(study / "runs" / "est-s1" / "estimates.h5", "r") as f:
        est = {x.decode(): s for x, s in zip(f["image_path"][:], f["pseudo_score"][:])}
    right = decided = 0
    for a, b in pairs_of(study / "runs" / "est-s1" / "pairs.h5"):
        if truth(a) != truth(b) and est[a] == est[a] and est[b] == est[b]:
            decided += 1
            right += (est[a] > est[b]) == (truth(a) > truth(b))
    assert decided > 0
    assert cells("est")[accuracy_column] == f"{right / decided:.3f} +- 0.000 (n=1)"
    # Round 2: same-reference pairs, trained from round 1's final model, measured on CSIQ too.
    for a, b in pairs_of(study / "runs" / "evo2-s1" / "pairs.h5"):
        assert manifest[a]["reference_id"] == manifest[b]["reference_id"], (a, b)
    with open(study / "runs" / "evo2-s1" / "train" / "run_config.json") as f:
        assert "/runs/evo-s1/train/checkpoints/" in json.load(f)["settings"]["model"]
    assert cells("evo2")[0] == "| evo2"
    assert (study / "runs" / "evo2-s1" / "eval-csiq" / "results.json").exists()
    assert (study / "oracle_srcc.png").stat().st_size > 1000 and (study / "oracle_reward.png").stat().st_size > 1000


def pairs_of(pairs_h5):
    with h5py.File(pairs_h5, "r") as f:
        names = [x.decode() for x in f["image_path"][:]]
        return [(names[i], names[j]) for i, j in zip(f["pair_i"][:], f["pair_j"][:])]
