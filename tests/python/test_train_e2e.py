"""`evoq train` end to end on a tiny random Qwen2.5-VL (built here by transformers) with a hand-made
labels.h5 whose labels are consistent (the brighter image wins).

Oracles: the rewards and advantages in the rollouts file are recomputed here from Eq. 2-4 (written
from the paper) using the file's scores; the rollout log-probs of the first step are recomputed with
transformers; the checkpoint loads in transformers; 2 MPI ranks give the same rollouts and weights as
1 rank; runs killed with SIGKILL (also inside a checkpoint write) or stopped with SIGUSR1 and resumed
end with weights identical to an uninterrupted run (these equalities are CPU claims, the device these
tests run on; on CUDA, NCCL's summation order, atomics in the backward and TF32 make them
approximate: docs/TRAINING.md "Determinism: CPU and CUDA"); the mean reward rises (a smoke of learning: the
tiny model's answers start mostly invalid and GRPO makes them valid)."""
import json
import math
import os
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

import faultlib
from parity_precision import pin_fp32
import torch
from safetensors.torch import load_file

from train_testlib import (EVOQ, brightness_images, eq2_eq3_rewards, build_scoring_model, consistent_pairs, hf_prompt,
                           response_logprobs, run, save_checkpoint, write_labels)

torch.set_num_threads(2)
MPIRUN = shutil.which("mpirun")
N_IMAGES, N_PAIRS, B = 6, 6, 2  # 3 steps per epoch
COMMON = ["--pairs-per-step", str(B), "--max-new-tokens", "4", "--reasoning", "false",
          "--micro-batch", "3", "--threads", "1", "--seed", "11"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("train"))
    model = build_scoring_model(seed=0)
    mdir = save_checkpoint(model, os.path.join(d, "model"))
    images = brightness_images(d, N_IMAGES)
    pairs, p_star = consistent_pairs(N_IMAGES, N_PAIRS + 2)
    failed = [0] * N_PAIRS + [1, 0]  # one failed pair and one without a label: skipped
    p_star = p_star[:N_PAIRS] + [float("nan"), float("nan")]
    labels = os.path.join(d, "labels.h5")
    write_labels(labels, [os.path.basename(p) for p in images], pairs, p_star, failed=failed, root=d)
    return d, mdir, labels, model, images


def train(setup, out, *extra, check=True, mpi=0):
    d, mdir, labels, _, _ = setup
    cmd = [EVOQ, "train", "--model", mdir, "--labels", labels, "--out", out] + COMMON + list(extra)
    if "--samples" not in extra:
        cmd += ["--samples", "8"]
    if mpi:
        cmd = [MPIRUN, "-np", str(mpi), "--oversubscribe"] + cmd
    return run(cmd, check=check)


def final_weights(out):
    latest = open(os.path.join(out, "checkpoints", "latest")).read().strip()
    return load_file(os.path.join(out, "checkpoints", latest, "model", "model.safetensors"))


def metrics(out):
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl")) if line.strip()]


def test_outputs_and_reward_oracle(setup, tmp_path):
    d, mdir, labels, model, images = setup
    out = str(tmp_path / "run")
    res = train(setup, out, "--steps", "3", "--lr", "1e-3", "--beta", "0.05", "--checkpoint-every", "2")
    assert "6 usable pairs (1 failed, 1 without a label skipped)" in res.stderr + res.stdout
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["latest", "step-00000002", "step-00000003"]
    lines = metrics(out)
    assert [m["step"] for m in lines] == [0, 1, 2]
    for m in lines:
        for key in ("reward_mean", "reward_std", "kl", "clip_fraction", "grad_norm", "lr", "invalid_rate",
                    "zero_variance_groups", "rollout_seconds", "reference_seconds", "update_seconds", "entropy", "optimizer_seconds",
                    "rollout_tokens_per_second"):
            assert key in m and math.isfinite(m[key]), key
        assert m["sequences"] == 8 * m["images"]
    assert lines[0]["lr"] == pytest.approx(1e-3) and lines[1]["lr"] == pytest.approx(1e-3 * 2 / 3)

    for step in range(3):
        f = h5py.File(os.path.join(out, "rollouts", f"step-{step:08d}.h5"), "r")
        assert f.attrs["format"] == "evoq-rollouts" and f.attrs["step"] == step
        ids = list(f["image_id"][:])
        stats = {i: (f["stat_mean"][k], f["stat_var"][k], f["stat_valid"][k]) for k, i in enumerate(ids)}
        seq_image, score, valid = f["seq_image"][:], f["score"][:], f["valid"][:]
        off, tok = f["response_offset"][:], f["response_tokens"][:]
        assert set(ids) == set(f["pair_i"][:]) | set(f["pair_j"][:])
        for k, i in enumerate(ids):
            rows = np.where(seq_image == k)[0]
            assert len(rows) == 8
            sc, ok = score[rows], valid[rows]
            v = sc[ok == 1]
            assert stats[i][2] == len(v)
            if len(v):
                assert stats[i][0] == pytest.approx(v.mean())
            partners = []
            for a, b, p in zip(f["pair_i"][:], f["pair_j"][:], f["p_star"][:]):
                if a == i:
                    partners.append(stats[b] + (p,))
                elif b == i:
                    partners.append(stats[a] + (1 - p,))
            want = eq2_eq3_rewards(list(sc), list(ok), partners)
            np.testing.assert_allclose(f["reward"][rows], want, atol=1e-9)
            r = np.array(want)
            sd = r.std(ddof=1)
            adv = np.zeros(8) if r.max() == r.min() else (r - r.mean()) / (sd + 1e-6)  # Eq. 4
            np.testing.assert_allclose(f["advantage"][rows], adv, atol=1e-6)
            for row in rows:  # a valid answer is exactly the parsed number
                text = f["text"][row].decode()
                if valid[row]:
                    assert float(text) == score[row]
        if step == 0:  # logp of the rollouts under the initial policy, recomputed by transformers
            ids0 = f["image_id"][0]
            prompt = f.attrs["prompt"]
            p_ids, pix, grid = hf_prompt(mdir, images[ids0], prompt)
            for row in np.where(seq_image == 0)[0][:2]:
                resp = [int(t) for t in tok[off[row]:off[row + 1]]]
                with torch.no_grad():
                    lp = response_logprobs(model, p_ids, pix, grid, resp).sum().item()
                assert f["logp_old_sum"][row] == pytest.approx(lp, abs=2e-3)
                assert f["logp_ref_sum"][row] == pytest.approx(lp, abs=2e-3)  # reference = initial policy

    # The checkpoint is a transformers checkpoint.
    import transformers as tf
    latest = open(os.path.join(out, "checkpoints", "latest")).read().strip()
    hf = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(os.path.join(out, "checkpoints", latest, "model"))
    w = final_weights(out)
    for name, p in hf.named_parameters():
        assert torch.equal(p.detach(), w[name]), name
    assert not torch.equal(w["lm_head.weight"], model.lm_head.weight.detach())  # it trained

    # A rerun into the same folder without --resume is refused; --resume of a finished run is a no-op.
    res = train(setup, out, "--steps", "3", "--lr", "1e-3", "--beta", "0.05", check=False)
    assert res.returncode != 0 and "--resume" in res.stderr
    train(setup, out, "--steps", "3", "--lr", "1e-3", "--beta", "0.05", "--resume")
    assert len(metrics(out)) == 3

    res = run([EVOQ, "train", "--model", mdir, "--dry-run", "--ranks", "8"])
    assert "GiB" in res.stdout


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun")
def test_two_ranks_equal_one(setup, tmp_path):
    # CPU: rollouts equal, weights within summation-order noise. On CUDA each rank's rollout batch is
    # smaller with 2 ranks (other kernels) and NCCL's sum order depends on the rank count and topology:
    # rollouts then agree in distribution, not token for token (docs/TRAINING.md "Determinism").
    _, _, _, model, _ = setup
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    args = ["--steps", "2", "--lr", "1e-3", "--beta", "0.05", "--checkpoint-every", "2"]
    train(setup, one, *args)
    train(setup, two, *args, mpi=2)
    for step in range(2):
        a = h5py.File(os.path.join(one, "rollouts", f"step-{step:08d}.h5"), "r")
        b = h5py.File(os.path.join(two, "rollouts", f"step-{step:08d}.h5"), "r")
        for key in ("image_id", "response_tokens", "reward", "advantage"):
            np.testing.assert_allclose(a[key][:], b[key][:], atol=1e-6, err_msg=key)
    w1, w2 = final_weights(one), final_weights(two)
    w0 = dict(model.named_parameters())
    # Adam moves every element with a non-zero gradient by about lr per step, so a wrong gradient
    # (e.g. one rank's share counted twice or missing) shows up as differences of order lr = 1e-3;
    # summation order alone leaves a few elements at ~1e-5.
    assert any(not torch.equal(w1[k], w0[k].detach()) for k in w1)
    worst = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    off = sum(((w1[k] - w2[k]).abs() > 1e-5).sum().item() for k in w1)
    assert worst < 1e-4 and off <= 10, (worst, off)
    m1, m2 = metrics(one), metrics(two)
    for a, b in zip(m1, m2):
        assert a["reward_mean"] == pytest.approx(b["reward_mean"], abs=1e-9)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
    assert max(m["grad_norm"] for m in m1) > 1e-3  # the policy-gradient term is active


def test_resume_after_kill_and_signal_equals_uninterrupted_and_learns(setup, tmp_path):
    d, mdir, labels, _, _ = setup
    args = ["--steps", "7", "--lr", "1e-2", "--beta", "0", "--checkpoint-every", "1", "--keep-checkpoints", "0",
            # The learning smoke runs at a huge lr on a 4-token answer: the token-mean aggregation learns
            # there; Eq. 5's per-sequence mean (the default) is checked against autograd in test_train_grpo_grad.
            "--loss-agg", "token-mean", "--samples", "8",
            ]
    ref = str(tmp_path / "ref")
    train(setup, ref, *args)
    rewards = [m["reward_mean"] for m in metrics(ref)]
    # Learning smoke: most answers start invalid (reward 0); GRPO makes them valid.
    assert rewards[-1] > rewards[0] + 0.2, rewards
    assert metrics(ref)[-1]["invalid_rate"] < metrics(ref)[0]["invalid_rate"]

    out = str(tmp_path / "killed")
    cmd = pin_fp32([EVOQ, "train", "--model", mdir, "--labels", labels, "--out", out] + COMMON + args)
    ckpt = os.path.join(out, "checkpoints")

    def n_lines():
        p = os.path.join(out, "metrics.jsonl")
        return sum(1 for _ in open(p)) if os.path.exists(p) else 0

    def writing_checkpoint():
        return os.path.isdir(ckpt) and any(n.startswith(".tmp-") for n in os.listdir(ckpt))

    # Each fault is delivered while the job is frozen (SIGSTOP) right after the progress it waits for, so
    # it lands with work remaining on any machine; that is asserted after each one.
    # 1: killed right after the first metrics line (before or while its checkpoint is written).
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    faultlib.wait_for(lambda: n_lines() >= 1, proc, what="the first metrics line")
    with faultlib.frozen(proc):
        proc.kill()
    assert faultlib.wait_or_report(proc) == -signal.SIGKILL and n_lines() < 7
    # 2: resumed, killed inside a checkpoint write (a step >= 3 checkpoint; step 3 is the epoch boundary).
    proc = subprocess.Popen(cmd + ["--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    faultlib.wait_for(lambda: n_lines() >= 3 and writing_checkpoint(), proc, what="a checkpoint write after step 3")
    with faultlib.frozen(proc):
        proc.kill()
    assert faultlib.wait_or_report(proc) == -signal.SIGKILL and n_lines() < 7
    # 3: resumed, stopped by SIGUSR1 after its first step of its own (its stop handler is installed by then):
    # finishes the step under way, checkpoints, exits with status 75.
    proc = subprocess.Popen(cmd + ["--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    log = faultlib.LineCollector(proc.stderr)
    faultlib.wait_for(lambda: log.contains("train: step "), proc, what="the resumed run's first step")
    with faultlib.frozen(proc):
        lines_at_signal = n_lines()
        assert lines_at_signal < 6, "too little work left to stop: make the run longer"
        proc.send_signal(signal.SIGUSR1)
    faultlib.wait_or_report(proc, what="the run stopped by SIGUSR1")
    err = log.text()
    assert proc.returncode == 75, err
    assert "stop requested" in err, err
    # The step under way when stopped is finished and recorded, no more.
    assert lines_at_signal <= n_lines() <= lines_at_signal + 1 and n_lines() < 7
    # 4: resumed to the end.
    run(cmd + ["--resume"])

    got = metrics(out)
    assert [m["step"] for m in got] == list(range(7))  # never duplicated
    assert [m["reward_mean"] for m in got] == [m["reward_mean"] for m in metrics(ref)]
    w_ref, w = final_weights(ref), final_weights(out)
    for k in w_ref:
        assert torch.equal(w_ref[k], w[k]), k
