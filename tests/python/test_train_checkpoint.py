"""Training checkpoints under crashes: `evoq debug-optimizer ckpt-loop` (a fake training loop over a
tiny transformers-built model: seeded random gradients, DistributedAdamW, a checkpoint every step) is
killed with SIGKILL at random moments (also mid-write) and resumed; after every kill the `latest`
checkpoint must be complete (trainer state, optimizer state, weights loadable by transformers), and the
final weights must equal those of an uninterrupted run bit for bit. SIGTERM stops cleanly with exit 75."""
import os
import random
import shutil
import signal
import subprocess
import time

import h5py
import pytest
import torch
from safetensors.torch import load_file

import qwen_tiny as qt

torch.set_num_threads(1)
EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1")
STEPS = 10


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    qt.make_model("qwen2_5_vl", tied=False, seed=3).save_pretrained(d)
    (d / "generation_config.json").write_text('{"do_sample": false}\n')
    (d / "tokenizer_config.json").write_text('{"model_max_length": 4096}\n')
    return d


def loop_args(model_dir, run, *extra):
    return [EVOQ, "debug-optimizer", "ckpt-loop", "--model", str(model_dir), "--run", str(run), "--steps", str(STEPS),
            "--lr", "1e-3", "--weight-decay", "0.01", "--warmup-steps", "2", "--bucket-mb", "0.01", *map(str, extra)]


def run_loop(model_dir, run, *extra):
    r = subprocess.run(loop_args(model_dir, run, *extra), env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def check_latest_is_complete(run, model_dir):
    ck = run / "checkpoints"
    if not (ck / "latest").exists():
        return None
    name = (ck / "latest").read_text().strip()
    d = ck / name
    assert d.is_dir(), f"latest names {name}, which does not exist"
    with h5py.File(d / "trainer_state.h5", "r") as f:
        assert f.attrs["format"] == "evoq-trainer-state"
        step = int(f.attrs["step"])
        assert name == f"step-{step:08d}"
        assert int(f.attrs["world_size"]) == 1
    with h5py.File(d / "optimizer-r0.h5", "r") as f:
        assert int(f.attrs["steps_taken"]) == step
        assert f["exp_avg"].shape == f["exp_avg_sq"].shape
    weights = load_file(d / "model" / "model.safetensors")
    assert len(weights) > 10
    assert (d / "model" / "generation_config.json").read_text() == '{"do_sample": false}\n'
    return step


def final_weights(out):
    return load_file(out / "model.safetensors")


def test_kill_9_at_random_moments_then_resume(tmp_path, model_dir):
    run_loop(model_dir, tmp_path / "ref", "--save-every", 3, "--out", tmp_path / "ref-out")
    want = final_weights(tmp_path / "ref-out")
    # The reference run's last checkpoint loads in transformers with its final weights.
    import transformers as tf
    loaded = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "ref" / "checkpoints" /
                                                                    f"step-{STEPS:08d}" / "model")
    sd = loaded.state_dict()
    for k, v in want.items():
        assert torch.equal(sd[k], v), k

    run = tmp_path / "killed"
    rng = random.Random(1234)
    kills, steps_seen = 0, []
    while kills < 5:
        p = subprocess.Popen(loop_args(model_dir, run, "--save-every", 1, "--sleep-ms", 40, "--resume",
                                       "--out", tmp_path / "killed-out"),
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.4, 2.0))
        if p.poll() is not None:
            assert p.returncode == 0, p.stderr.read().decode()
            break
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        steps_seen.append(check_latest_is_complete(run, model_dir))
    if not (tmp_path / "killed-out").exists():
        run_loop(model_dir, run, "--save-every", 1, "--resume", "--out", tmp_path / "killed-out")
    assert kills >= 2, "the loop finished before it could be interrupted twice"
    assert check_latest_is_complete(run, model_dir) == STEPS
    # Only the newest two checkpoints are kept; no temporary folder is referenced.
    names = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert names == [f"step-{STEPS - 1:08d}", f"step-{STEPS:08d}"]
    got = final_weights(tmp_path / "killed-out")
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_sigterm_saves_and_exits_75(tmp_path, model_dir):
    run_loop(model_dir, tmp_path / "ref", "--save-every", 5, "--out", tmp_path / "ref-out")
    run = tmp_path / "stopped"
    p = subprocess.Popen(loop_args(model_dir, run, "--save-every", 2, "--sleep-ms", 300, "--out", tmp_path / "out"),
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "latest").exists():  # handlers are installed before the first step
        assert p.poll() is None and time.time() < deadline, p.stderr.read().decode()
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=120) == 75, p.stderr.read().decode()
    step = check_latest_is_complete(run, model_dir)
    assert step is not None and 0 < step < STEPS
    run_loop(model_dir, run, "--save-every", 2, "--resume", "--out", tmp_path / "out")
    want, got = final_weights(tmp_path / "ref-out"), final_weights(tmp_path / "out")
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_resume_with_other_rank_count_or_layout_is_refused(tmp_path, model_dir):
    run = tmp_path / "r"
    run_loop(model_dir, run, "--save-every", 1, "--out", tmp_path / "o")
    # A different bucket size changes nothing unsharded; a different trainable scope changes the names.
    r = subprocess.run(loop_args(model_dir, run, "--resume", "--trainable", "lm"), env=ENV, capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert "optimizer-r0.h5" in r.stderr
