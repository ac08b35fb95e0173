"""analysis/oracle_study.sh in a reduced size (a tiny model rigged to answer with digits instead of the
embedded default; 1 seed, 6 pairs, 1 step): both label sources are made for the same pairs, trained and
measured, and the table is written. Oracle: the truth's labels are recomputed here from the KADID label
file (mean score of each type and level), so the oracle's label accuracy must be exactly 1."""
import csv
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
               STUDY_PAIRS="6", STUDY_K="2", STUDY_STEPS="1", STUDY_PAIRS_PER_STEP="2", STUDY_TRAIN_SAMPLES="2",
               STUDY_METHODS="oracle evo")
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
    oracle_row = next(line for line in table.splitlines() if line.startswith("| oracle |"))
    assert oracle_row.rstrip(" |").endswith("1.000 +- 0.000 (n=1)")  # label accuracy against the truth
