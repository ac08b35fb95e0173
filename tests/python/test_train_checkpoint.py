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

import faultlib
import qwen_tiny as qt

torch.set_num_threads(1)
EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")
TESTTOOL = os.environ.get("EVOQ_TESTTOOL", os.path.join(os.path.dirname(EVOQ), "evoq-testtool"))  # test drivers
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1")
STEPS = 12


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    qt.make_model("qwen2_5_vl", tied=False, seed=3).save_pretrained(d)
    (d / "generation_config.json").write_text('{"do_sample": false}\n')
    (d / "tokenizer_config.json").write_text('{"model_max_length": 4096}\n')
    return d


def loop_args(model_dir, run, *extra):
    return [TESTTOOL, "debug-optimizer", "ckpt-loop", "--model", str(model_dir), "--run", str(run), "--steps", str(STEPS),
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


def latest_step(run):
    """Step of the checkpoint `latest` names (-1 before the first one)."""
    try:
        return int((run / "checkpoints" / "latest").read_text().strip().split("-")[1])
    except (OSError, IndexError, ValueError):
        return -1


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
    steps_seen = []
    for kill in range(4):
        # The fault: 1-2 checkpoints after the previous kill's, plus up to 50 ms (often mid-save); each step
        # also sleeps 40 ms, so on any machine at least 4 steps remain when it lands.
        target = (steps_seen[-1] if steps_seen else 0) + rng.randint(1, 2)
        cmd = loop_args(model_dir, run, "--save-every", 1, "--sleep-ms", 40, "--resume", "--out", tmp_path / "killed-out")
        p = faultlib.kill_after_progress(cmd, lambda: latest_step(run), target, rng, ENV)
        assert p.returncode == -signal.SIGKILL
        steps_seen.append(check_latest_is_complete(run, model_dir))
        assert target <= steps_seen[-1] < STEPS, f"the kill landed at step {steps_seen[-1]} of {STEPS}: no work remained"
        assert not (tmp_path / "killed-out").exists()
    if not (tmp_path / "killed-out").exists():
        run_loop(model_dir, run, "--save-every", 1, "--resume", "--out", tmp_path / "killed-out")
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
    p = subprocess.Popen(loop_args(model_dir, run, "--save-every", 2, "--sleep-ms", 40, "--out", tmp_path / "out"),
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    # Handlers are installed before the first step; the signal lands while the loop is frozen after its
    # first checkpoint, so work remains by construction.
    faultlib.wait_for(lambda: latest_step(run) >= 2, p, what="the first checkpoint")
    with faultlib.frozen(p):
        p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=600) == 75, p.stderr.read().decode()
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


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun")
def test_sigterm_to_the_launcher_stops_every_rank_with_75(tmp_path, model_dir):
    """`kill <pid>` of an interactive job started with scripts/evoq-mpirun: the ranks checkpoint and the
    launcher exits with 75 (plain mpirun cannot: it kills the ranks itself); the rerun completes."""
    launcher = os.path.join(os.environ.get("EVOQ_SOURCE_DIR", "."), "scripts", "evoq-mpirun")
    ref_args = loop_args(model_dir, tmp_path / "ref", "--save-every", 1, "--out", tmp_path / "ref-out")
    r = subprocess.run([launcher, "-np", "2", "--oversubscribe", *ref_args], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "stopped"
    cmd = [launcher, "-np", "2", "--oversubscribe",
           *loop_args(model_dir, run, "--save-every", 1, "--sleep-ms", 40, "--resume", "--out", tmp_path / "out")]
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    faultlib.wait_for(lambda: latest_step(run) >= 2, p, what="the first checkpoints")
    # Rank 0 is held (SIGSTOP) until mpirun has forwarded the stop request (its log line): no step can
    # finish meanwhile (every step ends in collectives), so the request lands with work remaining, and
    # the stop flag is shared by all ranks at the end of the step.
    ranks = faultlib.processes_of(TESTTOOL, str(run))
    assert len(ranks) == 2, ranks
    rank0 = next(pid for pid in ranks if faultlib.mpi_rank(pid) == 0)
    log = faultlib.LineCollector(p.stderr)
    os.kill(rank0, signal.SIGSTOP)
    p.send_signal(signal.SIGTERM)  # to the launcher only, as `kill <pid>` does
    faultlib.wait_for(lambda: log.contains("Forwarding signal 10"), p, what="mpirun forwarding SIGUSR1")
    os.kill(rank0, signal.SIGCONT)
    assert p.wait(timeout=600) == 75, log.text()
    step = latest_step(run)
    assert 2 <= step < STEPS, step
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want, got = final_weights(tmp_path / "ref-out"), final_weights(tmp_path / "out")
    for k in want:
        assert torch.equal(got[k], want[k]), k
