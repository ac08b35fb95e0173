"""README's first command (scripts/demo.sh) in a reduced size: a tiny model rigged to answer with short
digit strings (train_testlib) instead of the embedded default, few pairs and steps. Every output file
must exist and be readable (h5py, JSON), and the held-out summary must be printed."""
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


@pytest.mark.skipif(not os.path.exists("/usr/bin/mpirun"), reason="no mpirun")
def test_demo_reduced(tmp_path):
    model = tmp_path / "model"
    save_checkpoint(build_scoring_model(seed=0, digits=[15] + DIGITS, end_bias=1.5, digit_bias={15: 1.5, 16: 1.5},
                                        context_scale=0.1), str(model))
    run = tmp_path / "run"
    env = dict(os.environ, EVOQ_DEMO_MODEL=str(model), EVOQ_RUN_DIR=str(run), EVOQ_DEMO_TRAIN_REFS="2",
               EVOQ_DEMO_PAIRS="10", EVOQ_DEMO_TEST_PAIRS="8", EVOQ_DEMO_K="6", EVOQ_DEMO_STEPS="2",
               EVOQ_DEMO_PAIRS_PER_STEP="2")
    if os.environ.get("EVOQ_BUILD_DIR"):
        env["EVOQ_BUILD_DIR"] = os.environ["EVOQ_BUILD_DIR"]
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "demo.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "pseudo-label accuracy" in r.stdout and "SRCC vs KADID truth" in r.stdout
    assert "within-type SRCC vs level" in r.stdout
    # The truth: mean KADID-10k score of the image's type and level, recomputed here from the label file's
    # dis_type column and the level in KADID's file names (kadid_truth.py parses the type from the names).
    kadid_name = {"gaussian_blur": "GBLUR", "white_noise": "AWGN", "jpeg": "JPEG"}
    sums = {}
    with open(os.path.join(ROOT, "data", "iqa-labels", "KADID-10k.txt")) as f:
        for row in csv.DictReader(f):
            key = (row["dis_type"], int(row["dis_img_path"][-6:-4]))
            sums.setdefault(key, []).append(float(row["score"]))
    manifest = {r["path"]: r for r in csv.DictReader(open(run / "distorted-test" / "manifest.csv"))}
    truth = list(csv.DictReader(open(run / "test-truth.csv")))
    assert len(truth) == 54
    for r in truth:
        m = manifest[r["path"]]
        v = sums[(kadid_name[m["type"]], int(m["level"]))]
        assert float(r["score"]) == pytest.approx(sum(v) / len(v), abs=1e-4)
    for name in ("test-pairs.h5", "test-labels-before.h5", "test-labels-after.h5", "evolve/round_1/pairs.h5",
                 "evolve/round_1/labels.h5"):
        with h5py.File(run / name, "r") as f:
            assert len(f["pair_i"]) > 0, name
    with h5py.File(run / "test-labels-after.h5", "r") as f:
        assert f.attrs["K"] == 6 and len(f["p_star"]) == 8
    state = json.loads((run / "evolve" / "state.json").read_text())
    assert state["rounds"]["1"] == {"pairs": True, "vote": True, "train": True, "eval": True}
    for t in (0, 1):
        assert json.loads((run / "evolve" / f"round_{t}" / "eval.json").read_text())["datasets"][0]["images"] == 54
    assert (run / "evolve" / "round_1" / "model" / "model.safetensors").exists()
    rollouts = sorted((run / "evolve" / "round_1" / "train" / "rollouts").iterdir())
    assert rollouts
    for p in rollouts:
        with h5py.File(p, "r") as f:
            assert len(f.keys()) > 0
