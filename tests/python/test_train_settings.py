"""`evoq train` on a checkpoint that carries Qwen2-VL-2B-Instruct's real generation_config.json
(temperature 0.1, top_p 0.001, top_k 1, repetition penalty 1.05: near-greedy).

- By default the rollouts use training's own sampling (temperature 1, top_p 1, top_k 0), so the K
  answers of an image differ: checked on the rollouts file's token sequences, not on evoq's summary.
- The model's own settings passed as flags are refused with one line naming the reason; with
  --allow-near-greedy they run, every image's K answers are then identical (the constructed all-equal
  batch: every group's reward spread is 0) and the zero-signal guard warns and reports it at the end.
- run_config.json records the settings; --resume with another beta, lr, K, seed or reference model is
  refused naming each key with both values; another thread count is accepted.
"""
import json
import os
import shutil

import h5py
import numpy as np
import pytest

from train_testlib import (EVOQ, brightness_images, build_scoring_model, consistent_pairs, run, save_checkpoint,
                           write_labels)

QWEN2_VL_2B_GENERATION = os.path.join(os.environ.get("EVOQ_TEST_DATA", os.path.join(os.path.dirname(__file__), "..", "data")),
                                      "qwen2-vl-2b", "generation_config.json")
N_IMAGES, N_PAIRS = 6, 6
COMMON = {"--pairs-per-step": "3", "--samples": "6", "--max-new-tokens": "4", "--reasoning": "false",
          "--micro-batch": "6", "--threads": "1", "--seed": "4", "--lr": "1e-4", "--checkpoint-every": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("train-settings"))
    generation = json.load(open(QWEN2_VL_2B_GENERATION))
    assert generation["top_k"] == 1 and generation["temperature"] == 0.1  # the real, near-greedy file
    mdir = save_checkpoint(build_scoring_model(seed=0), os.path.join(d, "model"), generation=generation)
    images = brightness_images(d, N_IMAGES)
    pairs, p_star = consistent_pairs(N_IMAGES, N_PAIRS)
    labels = os.path.join(d, "labels.h5")
    write_labels(labels, [os.path.basename(p) for p in images], pairs, p_star, root=d)
    return d, mdir, labels


def train(setup, out, *extra, check=True):
    _, mdir, labels = setup
    common = [x for key, value in COMMON.items() if key not in extra for x in (key, value)]
    return run([EVOQ, "train", "--model", mdir, "--labels", labels, "--out", out, *common, *extra], check=check)


def answers_per_image(rollouts):
    """{image id: [token tuple of each of its K answers]} read from the rollouts file."""
    with h5py.File(rollouts) as f:
        offsets, tokens = f["response_offset"][:], f["response_tokens"][:]
        seq_image = f["seq_image"][:]
    out = {}
    for s, image in enumerate(seq_image):
        out.setdefault(int(image), []).append(tuple(tokens[offsets[s]:offsets[s + 1]].tolist()))
    return out


def test_default_rollout_sampling_has_a_spread(setup, tmp_path):
    out = str(tmp_path / "run")
    res = train(setup, out, "--steps", "1")
    answers = answers_per_image(os.path.join(out, "rollouts", "step-00000000.h5"))
    assert len(answers) >= 3 and all(len(a) == 6 for a in answers.values())
    distinct = [len(set(a)) for a in answers.values()]
    assert all(n > 1 for n in distinct), distinct
    settings = json.load(open(os.path.join(out, "run_config.json")))["settings"]
    assert settings["sampling"]["temperature"] == 1.0 and settings["sampling"]["top_k"] == 0
    assert settings["sampling"]["top_p"] == 1.0 and settings["sampling"]["repetition_penalty"] == 1.0
    assert settings["reference_model"] == settings["model"]
    for key in ("beta", "lr", "clip_low", "clip_high", "gamma", "samples", "seed", "loss_agg", "pairs_per_step"):
        assert key in settings, key
    assert "WARNING" not in res.stderr


@pytest.mark.parametrize("flags,reason", [
    (["--temperature", "0.1"], "temperature 0.1 < 0.3"),
    (["--temperature", "1", "--top-k", "1"], "top_k 1"),
    (["--top-p", "0.001"], "top_p 0.001 < 0.05"),
])
def test_near_greedy_sampling_is_refused(setup, tmp_path, flags, reason):
    res = train(setup, str(tmp_path / "run"), "--steps", "1", *flags, check=False)
    assert res.returncode == 2, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "near-deterministic" in lines[0] and reason in lines[0], res.stderr
    assert not os.path.exists(tmp_path / "run" / "run_config.json")


def test_zero_signal_guard_on_an_all_equal_batch(setup, tmp_path):
    out = str(tmp_path / "run")
    greedy = ["--temperature", "0.1", "--top-p", "0.001", "--top-k", "1", "--repetition-penalty", "1.05"]
    res = train(setup, out, "--steps", "2", *greedy, "--allow-near-greedy", "--zero-signal-steps", "2")
    for step in (0, 1):
        answers = answers_per_image(os.path.join(out, "rollouts", f"step-{step:08d}.h5"))
        assert all(len(set(a)) == 1 for a in answers.values())  # K identical answers: no reward spread
    metrics = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    assert [m["zero_spread_fraction"] for m in metrics] == [1.0, 1.0]
    assert "near-deterministic" in res.stderr  # allowed, but said
    assert "for 2 consecutive steps more than half of the images" in res.stderr, res.stderr
    assert "2 of 2 steps had more than half of their images without reward spread" in res.stderr, res.stderr


def test_resume_refuses_changed_settings_and_accepts_threads(setup, tmp_path):
    d, mdir, _ = setup
    out = str(tmp_path / "run")
    train(setup, out, "--steps", "2")
    other_reference = os.path.join(d, "reference-copy")
    if not os.path.exists(other_reference):
        shutil.copytree(mdir, other_reference)
    changes = {
        ("--beta", "0.1"): "beta (was 0.05, now 0.1)",
        ("--lr", "0.001"): "lr (was 0.0001, now 0.001)",
        ("--samples", "4"): "samples (was 6, now 4)",
        ("--seed", "5"): "seed (was 4, now 5)",
        ("--reference-model", other_reference): "reference_model (was",
    }
    for flag, named in changes.items():
        res = train(setup, out, "--steps", "2", "--resume", *flag, check=False)
        assert res.returncode == 2, (flag, res.stderr)
        assert "settings differ" in res.stderr and named in res.stderr, (flag, res.stderr)
    res = train(setup, out, "--steps", "2", "--resume", "--threads", "2")
    assert "already complete" in res.stderr
