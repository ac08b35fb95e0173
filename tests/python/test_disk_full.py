"""A full disk on every stage that writes: vote shards (2 ranks), the labels merge, training checkpoints /
rollouts / metrics (2 ranks) and evaluation score files (2 ranks). The run folder lives on a small
tmpfs; once the job has visibly written something, it is frozen (SIGSTOP), the tmpfs is filled to the
last byte, and the job is let go. Every rank must then end with the same plain error (exit 1) whose
line names the file and says "No space left on device" (no segfault, no MPI_ABORT), nothing written
before may be lost, a rerun while the disk is still full must fail the same clean way, and a rerun
after freeing the space must finish with the result of an uninterrupted run.

Needs root to mount a tmpfs (skipped otherwise)."""
import json
import os
import random
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402
from parity_precision import pin_fp32  # noqa: E402
from test_evo_labels import DATASETS, ENV, EVOQ, MPIRUN, TESTTOOL  # noqa: E402
from train_testlib import brightness_images, build_scoring_model, consistent_pairs, save_checkpoint, write_labels  # noqa: E402

SRC = os.environ.get("EVOQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
CSIQ = os.path.join(SRC, "tests", "data", "csiq-sample", "dmos.csv")

pytestmark = [pytest.mark.skipif(MPIRUN is None, reason="no mpirun"),
              pytest.mark.skipif(os.geteuid() != 0 or not faultlib.can_mount_tmpfs(),
                                 reason="mounting a tmpfs needs root")]


def mpi(*cmd):
    return [MPIRUN, "-np", "2", "--oversubscribe", *map(str, cmd)]


def start(cmd):
    return subprocess.Popen(pin_fp32(cmd), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def fill_when(proc, progress, disk):
    """Waits for progress(), then fills `disk` while the job is frozen. Returns (status, stderr)."""
    try:
        faultlib.wait_for(progress, proc, what="the first output")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{proc.stdout.read()}{proc.stderr.read()}") from None
    with faultlib.frozen(proc):
        faultlib.fill(disk)
    out, err = proc.communicate(timeout=900)
    return proc.returncode, out + err


def error_lines(text):
    return [line for line in text.splitlines() if ": error: " in line]


def run(cmd, check=True):
    r = subprocess.run(pin_fp32(cmd), env=ENV, capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def read_labels(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in DATASETS}


def assert_same_labels(a, b):
    A, B = read_labels(a), read_labels(b)
    for k in DATASETS:
        if A[k].dtype == object:
            assert list(A[k]) == list(B[k]), k
        else:
            assert A[k].tobytes() == B[k].tobytes(), k


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    imgs = d / "imgs"
    imgs.mkdir()
    for i in range(14):
        (imgs / f"im{i:02d}.png").write_bytes(b"png")
    out = d / "pairs.h5"
    run([EVOQ, "pairs", "--manifest", imgs, "-n", 90, "--seed", 9, "-o", out])
    return out


def vote_fake(pairs, out, shards, *extra):
    return [TESTTOOL, "debug-evo", "vote-fake", "--pairs", pairs, "--out", out, "--shards", shards, "--K", 9,
            "--seed", 4, "--flush-every", 1, "--keep-responses", *extra]


def test_vote_shards_and_merge(tmp_path, pairs):
    reference = tmp_path / "reference.h5"
    run(mpi(*vote_fake(pairs, reference, tmp_path / "reference.shards")))
    disk = tmp_path / "disk"
    with faultlib.small_tmpfs(disk, 16):
        out, shards = disk / "labels.h5", disk / "shards"
        cmd = mpi(*vote_fake(pairs, out, shards, "--sleep-ms", 3))
        status, text = fill_when(start(cmd), lambda: faultlib.flushed_pair_count(shards) >= 4, disk)
        faultlib.assert_clean_failure(status, text, "labels-shard-r")
        assert len(error_lines(text)) == 2, text  # both ranks ended through the same error path
        flushed = set(faultlib.label_segments(shards))
        assert 4 <= len(flushed) < 90 and not out.exists()
        # A rerun while the disk is still full fails the same clean way and loses nothing.
        again = run(mpi(*vote_fake(pairs, out, shards)), check=False)
        faultlib.assert_clean_failure(again.returncode, again.stdout + again.stderr, "labels-shard-r")
        assert set(faultlib.label_segments(shards)) >= flushed
        os.remove(disk / "filler")
        run(mpi(*vote_fake(pairs, out, shards)))
        assert_same_labels(reference, out)

        # The merge: every shard is there, labels.h5 cannot be written.
        os.remove(out)
        faultlib.fill(disk)
        r = run(mpi(*vote_fake(pairs, out, shards, "--merge-only")), check=False)
        faultlib.assert_clean_failure(r.returncode, r.stdout + r.stderr, "labels.h5")
        assert len(error_lines(r.stdout + r.stderr)) == 2 and not out.exists()
        os.remove(disk / "filler")
        run(mpi(*vote_fake(pairs, out, shards, "--merge-only")))
        assert_same_labels(reference, out)


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("train"))
    mdir = save_checkpoint(build_scoring_model(seed=0), os.path.join(d, "model"))
    images = brightness_images(d, 6)
    pair_list, p_star = consistent_pairs(6, 6)
    labels = os.path.join(d, "labels.h5")
    write_labels(labels, [os.path.basename(p) for p in images], pair_list, p_star, root=d)
    return mdir, labels


def train_cmd(training, out, *extra):
    mdir, labels = training
    return mpi(EVOQ, "train", "--model", mdir, "--labels", labels, "--out", out, "--steps", 5, "--pairs-per-step", 2,
               "--samples", 4, "--max-new-tokens", 4, "--reasoning", "false", "--micro-batch", 3, "--threads", 1,
               "--seed", 11, "--lr", "1e-2", "--beta", "0.05", "--checkpoint-every", 1, *extra)


def final_weights(out):
    latest = open(os.path.join(out, "checkpoints", "latest")).read().strip()
    return load_file(os.path.join(out, "checkpoints", latest, "model", "model.safetensors"))


def test_training_checkpoints_rollouts_metrics(tmp_path, training):
    reference = tmp_path / "reference"
    run(train_cmd(training, reference))
    disk = tmp_path / "disk"
    with faultlib.small_tmpfs(disk, 1400):  # a checkpoint of the test model is ~384 MB (its vocabulary)
        out = disk / "run"
        latest = out / "checkpoints" / "latest"
        status, text = fill_when(start(train_cmd(training, out)), latest.exists, disk)
        faultlib.assert_clean_failure(status, text, str(out))
        assert len(error_lines(text)) == 2, text
        kept = latest.read_text().strip()
        assert kept != "step-00000005" and (out / "checkpoints" / kept / "trainer_state.h5").exists()
        again = run(train_cmd(training, out, "--resume"), check=False)
        faultlib.assert_clean_failure(again.returncode, again.stdout + again.stderr, str(out))
        os.remove(disk / "filler")
        run(train_cmd(training, out, "--resume"))
        want, got = final_weights(reference), final_weights(out)
        for k in want:
            assert torch.equal(want[k], got[k]), k
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
        assert [m["step"] for m in lines] == list(range(5))


def eval_cmd(out):
    return mpi(EVOQ, "eval", "--model", "niqe", "--dataset", f"csv:{CSIQ}", "--out", out, "--flush-every", 1)


def test_eval_score_files(tmp_path):
    reference = tmp_path / "reference"
    run(eval_cmd(reference))
    disk = tmp_path / "disk"
    with faultlib.small_tmpfs(disk, 2):
        out = disk / "eval"
        status, text = fill_when(start(eval_cmd(out)),
                                 lambda: out.is_dir() and any(n.startswith("scores.rank") for n in os.listdir(out)),
                                 disk)
        faultlib.assert_clean_failure(status, text, "scores.")
        assert len(error_lines(text)) == 2, text
        assert not (out / "results.json").exists()
        os.remove(disk / "filler")
        run(eval_cmd(out))
        a = json.load(open(reference / "results.json"))["datasets"][0]
        b = json.load(open(out / "results.json"))["datasets"][0]
        assert a["images"] == b["images"] == 10
        assert a["srcc"] == pytest.approx(b["srcc"], abs=1e-12)
        assert a["plcc"] == pytest.approx(b["plcc"], abs=1e-12)
