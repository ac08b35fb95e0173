"""`evoq train --absent-partners running` (off by default): P_i becomes every labelled partner of x_i;
partners rolled out in the step use their fresh statistics, absent ones an exponential moving average
of their statistics from earlier steps (momentum m: est = m est + (1 - m) fresh, first observation as
is, only observations with >= min-partner-valid valid samples). The oracle replays that estimate from
the rollouts files (each step's fresh per-image statistics) and recomputes every reward from Eq. 2-3
written here; a resumed run must carry the estimate through its checkpoint. lr 0 throughout: the
samples still differ from step to step (the sampling stream is keyed by the step)."""
import math
import os
import shutil

import h5py
import numpy as np
import pytest
import torch

from train_testlib import (EVOQ, eq2_eq3_rewards, brightness_images, build_scoring_model, consistent_pairs, run, save_checkpoint,
                           write_labels)

torch.set_num_threads(1)
N_IMAGES, N_PAIRS, B, MOMENTUM = 6, 6, 2, 0.5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("running"))
    mdir = save_checkpoint(build_scoring_model(seed=0), os.path.join(d, "model"))
    images = brightness_images(d, N_IMAGES)
    pairs, p_star = consistent_pairs(N_IMAGES, N_PAIRS)
    labels = os.path.join(d, "labels.h5")
    write_labels(labels, [os.path.basename(p) for p in images], pairs, p_star, root=d)
    return d, mdir, labels, pairs, p_star


def train(setup, out, steps, *extra):
    d, mdir, labels, _, _ = setup
    return run([EVOQ, "train", "--model", mdir, "--labels", labels, "--out", out, "--steps", str(steps),
                "--pairs-per-step", str(B), "--samples", "8", "--max-new-tokens", "4", "--reasoning", "false",
                "--micro-batch", "8", "--threads", "1", "--seed", "5", "--beta", "0", "--lr", "0",
                "--absent-partners", "running", "--running-momentum", str(MOMENTUM), "--checkpoint-every", "3",
                *extra])


def test_running_estimate_for_absent_partners(setup, tmp_path):
    _, _, _, pairs, p_star = setup
    out = str(tmp_path / "run")
    steps = 5
    train(setup, out, steps)
    est, absent_used, late_absent = {}, 0, 0
    files = []
    for step in range(steps):
        f = h5py.File(os.path.join(out, "rollouts", f"step-{step:08d}.h5"), "r")
        files.append(f)
        ids = [int(i) for i in f["image_id"][:]]
        fresh = {i: (float(f["stat_mean"][k]), float(f["stat_var"][k]), int(f["stat_valid"][k]))
                 for k, i in enumerate(ids)}
        seq_image, score, valid = f["seq_image"][:], f["score"][:], f["valid"][:]
        for k, i in enumerate(ids):
            partners = []
            for (a, b), p in zip(pairs, p_star):
                if i not in (a, b):
                    continue
                other, p = (b, p) if a == i else (a, 1 - p)
                if other in fresh:
                    partners.append(fresh[other] + (p,))
                elif other in est:
                    partners.append(est[other] + (p,))
                    absent_used += 1
                    late_absent += step >= 3
            rows = np.where(seq_image == k)[0]
            want = eq2_eq3_rewards(list(score[rows]), list(valid[rows]), partners)
            np.testing.assert_allclose(f["reward"][rows], want, atol=1e-9, err_msg=f"step {step} image {i}")
            assert f["partners_used"][k] == sum(1 for x in partners if x[2] >= 2)
        for i, (m, var, n) in fresh.items():  # the estimate after this step
            if n < 2:
                continue
            if i in est:
                em, ev, _ = est[i]
                est[i] = (MOMENTUM * em + (1 - MOMENTUM) * m, MOMENTUM * ev + (1 - MOMENTUM) * var, n)
            else:
                est[i] = (m, var, n)
    assert absent_used > 0  # the option was exercised

    # Resumed after step 3: the estimate comes back from the checkpoint, so steps 3-4 are identical
    # (lr 0: the weights, hence the rollouts, are the same whatever the schedule's length).
    assert late_absent > 0
    # The same run (settings may not change on resume), rolled back to its step-3 checkpoint as if it had
    # died there: the later checkpoint and rollouts files are removed.
    out2 = str(tmp_path / "resumed")
    train(setup, out2, steps)
    ckpts = os.path.join(out2, "checkpoints")
    shutil.rmtree(os.path.join(ckpts, f"step-{steps:08d}"))
    with open(os.path.join(ckpts, "latest"), "w") as f:
        f.write("step-00000003\n")
    for step in (3, 4):
        os.remove(os.path.join(out2, "rollouts", f"step-{step:08d}.h5"))
    res = train(setup, out2, steps, "--resume")
    assert "resuming from" in res.stderr and "at step 3" in res.stderr, res.stderr
    for step in (3, 4):
        g = h5py.File(os.path.join(out2, "rollouts", f"step-{step:08d}.h5"), "r")
        np.testing.assert_array_equal(g["reward"][:], files[step]["reward"][:])
        np.testing.assert_array_equal(g["partners_used"][:], files[step]["partners_used"][:])
