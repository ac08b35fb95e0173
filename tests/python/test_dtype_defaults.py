"""The precision defaults: inference commands run in bf16 where the hardware computes it natively
(`--dtype auto`), training keeps fp32 weights and runs its forwards under bf16 autocast there
(`--autocast auto`); elsewhere both are fp32. What a run used is printed at start and recorded resolved.

Oracle: this machine's /proc/cpuinfo flags, read here (avx512_bf16 or amx_bf16 = native bf16)."""
import json
import os
import subprocess

import h5py
import pytest

from train_testlib import EVOQ, brightness_images, build_scoring_model, save_checkpoint


def native_bf16():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = line.split()
                return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def evoq(*args):
    """evoq with the product's defaults (the other tests pin fp32 through their helpers)."""
    r = subprocess.run([EVOQ, *map(str, args)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("defaults")
    images = brightness_images(str(d), 4)
    pairs = d / "pairs.h5"
    evoq("pairs", "--manifest", d, "-n", "2", "--seed", "4", "-o", pairs)
    model = save_checkpoint(build_scoring_model(seed=0), str(d / "model"))
    return d, images, pairs, model


def test_help_states_the_defaults():
    for command in ("vote", "estimate", "score", "compare", "eval", "generate"):
        assert "--dtype arg (=auto)" in evoq(command, "--help"), command
    train = evoq("train", "--help")
    assert "--dtype arg (=fp32)" in train and "--autocast arg (=auto)" in train


def test_vote_runs_in_native_bf16_by_default(setup, tmp_path):
    d, _, pairs, model = setup
    want = "bf16" if native_bf16() else "fp32"
    log = evoq("vote", "--model", model, "--pairs", pairs, "--out", tmp_path / "l.h5", "-K", "2",
               "--max-new-tokens", "2", "--threads", "1")
    assert f"cpu {want} (--dtype auto)" in log, log
    with h5py.File(tmp_path / "l.h5", "r") as f:
        assert json.loads(f.attrs["sampling"])["dtype"] == want  # recorded resolved
    log = evoq("vote", "--model", model, "--pairs", pairs, "--out", tmp_path / "f.h5", "-K", "2",
               "--max-new-tokens", "2", "--threads", "1", "--dtype", "fp32")
    assert "cpu fp32, " in log and "(--dtype auto)" not in log


def test_training_autocasts_where_native(setup, tmp_path):
    d, images, pairs, model = setup
    scores = tmp_path / "s.csv"
    scores.write_text("path,score\n" + "".join(f"{p},{i}\n" for i, p in enumerate(images)))
    labels = tmp_path / "labels.h5"
    evoq("labels-from-scores", "--pairs", pairs, "--scores", scores, "-o", labels)
    common = ["--model", model, "--labels", labels, "--steps", "1", "--pairs-per-step", "1", "--samples", "2",
              "--max-new-tokens", "2", "--reasoning", "false", "--threads", "1"]
    want = "bf16" if native_bf16() else "off"
    log = evoq("train", *common, "--out", tmp_path / "auto")
    assert f"cpu fp32, 1 threads, autocast {want} (--autocast auto)" in log, log
    recorded = json.loads((tmp_path / "auto" / "run_config.json").read_text())["settings"]
    assert recorded["autocast"] == want and recorded["dtype"] == "fp32"
    # bf16 weights: nothing to autocast.
    log = evoq("train", *common, "--out", tmp_path / "bf16", "--dtype", "bf16")
    assert "cpu bf16, 1 threads, autocast off (--autocast auto)" in log, log


def test_more_threads_than_allowed_cpus_is_warned(setup, tmp_path):
    """Open MPI binds a small job's ranks to one core each by default; a rank asked for more threads than
    its affinity mask allows says so (oracle: the mask set here)."""
    _, _, pairs, model = setup
    one_cpu = {min(os.sched_getaffinity(0))}

    def vote(threads, out):
        r = subprocess.run([EVOQ, "vote", "--model", model, "--pairs", pairs, "--out", tmp_path / out, "-K", "2",
                            "--max-new-tokens", "2", "--threads", str(threads), "--dtype", "fp32"],
                           capture_output=True, text=True, timeout=600,
                           preexec_fn=lambda: os.sched_setaffinity(0, one_cpu))
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stderr

    log = vote(2, "two.h5")
    assert "--threads 2 but this process may run on only 1 CPU(s)" in log and "--bind-to none" in log, log
    assert "may run on only" not in vote(1, "one.h5")
