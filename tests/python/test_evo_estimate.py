"""EvoEstimate (the paper's ablation, Table 5) end to end on a tiny Qwen2.5-VL rigged to answer with short
digit strings (train_testlib): `evoq evolve --method evoestimate` with 2 MPI ranks runs pairs -> estimate ->
train --reward estimate -> eval. Checked independently here:
  - estimates.h5: every sampled answer re-parsed in Python, pseudo score = mean of the valid ones;
    a 1-rank `evoq estimate` with the same seed gives the same file (sample streams keyed by image;
    bit for bit on the CPU, where this runs: on CUDA the batch-size-dependent kernels make it equal in
    distribution only, docs/TRAINING.md "Determinism: CPU and CUDA");
  - the rollouts of training: reward = 1 when the answer is valid and |score - pseudo| < threshold, else 0,
    and advantages = Eq. 4 of those rewards."""
import json
import os
import re
import sys

import h5py
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from test_evo_labels import ENV, EVOQ, MPIRUN, evoq  # noqa: E402
from train_testlib import DIGITS, build_scoring_model, save_checkpoint  # noqa: E402

THRESHOLD = 0.6
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


def parse_score(text):
    """Oracle of gen::parse_score for these answers: the last boxed{...} content, else the bare text
    (after </think>); valid when it is a plain number in [1, 5]."""
    boxes = [m.end() for m in re.finditer(r"boxed\s*\{", text)]
    if boxes:
        depth, start = 1, boxes[-1]
        for k in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                content = text[start:k].strip()
                break
        else:
            return None
    else:
        content = text.split("</think>")[-1].strip()
    if not NUMBER.fullmatch(content):
        return None
    v = float(content)
    return v if 1.0 <= v <= 5.0 else None


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if MPIRUN is None:
        pytest.skip("no mpirun")
    d = tmp_path_factory.mktemp("estimate")
    model = d / "model"
    save_checkpoint(build_scoring_model(seed=0, digits=[15] + DIGITS, end_bias=1.5,
                                        digit_bias={15: 1.5, 16: 1.5}, context_scale=0.1), str(model))
    rng = np.random.default_rng(1)
    pool = d / "pool"
    pool.mkdir()
    rows = []
    for ref in range(3):
        base = rng.random((56, 56, 3))
        for level in range(3):
            noisy = np.clip(base + rng.normal(0, 0.15 * level, base.shape), 0, 1)
            name = f"r{ref}_l{level}.png"
            Image.fromarray((noisy * 255).astype("uint8")).save(pool / name)
            rows.append((name, f"ref{ref}", level))
    (pool / "manifest.txt").write_text("".join(f"{n},{r}\n" for n, r, _ in rows))
    (d / "levels.csv").write_text("path,score\n" + "".join(f"{pool / n},{-lv}\n" for n, _, lv in rows))
    runs = d / "run"
    (d / "stages.cfg").write_text(
        "threads = 1\nmax-new-tokens = 8\n[estimate]\nsamples = 6\ndtype = fp32\n"
        "[train]\nsteps = 2\npairs-per-step = 3\nsamples = 4\ncheckpoint-every = 2\nmicro-batch = 4\n"
        f"lr = 1e-3\nbeta = 0.05\ndevice = cpu\ndtype = fp32\nautocast = off\nestimate-threshold = {THRESHOLD}\n")
    evoq("evolve", "--run", runs, "--model", model, "--rounds", "1", "--method", "evoestimate",
         "--images", pool / "manifest.txt", "--mode", "same-reference", "--pairs", "6", "--seed", "5",
         "--eval-dataset", f"csv:{d / 'levels.csv'}", "--stage-config", d / "stages.cfg", np_ranks=2)
    return d, model, runs


def read(path):
    with h5py.File(path, "r") as f:
        out = {k: f[k][:] for k in f}
        out.update({f"@{k}": v for k, v in f.attrs.items()})
    return out


def test_stages_and_outputs(run):
    d, _, runs = run
    state = json.loads((runs / "state.json").read_text())
    assert state["rounds"]["1"] == {"pairs": True, "estimate": True, "train": True, "eval": True}
    assert state["settings"]["method"] == "evoestimate"
    r1 = runs / "round_1"
    assert not (r1 / "labels.h5").exists()
    assert (r1 / "model" / "model.safetensors").exists()
    cfg = json.loads((r1 / "train" / "run_config.json").read_text())["settings"]
    assert cfg["reward"] == "estimate" and cfg["data"].endswith("estimates.h5")
    assert cfg["estimate_threshold"] == THRESHOLD and cfg["samples"] == 4
    assert json.loads((r1 / "eval.json").read_text())["datasets"][0]["images"] == 9


def test_estimates_recomputed_from_the_answers(run):
    d, model, runs = run
    e = read(runs / "round_1" / "estimates.h5")
    K = int(e["@K"])
    assert K == 6 and e["@format"] in ("evoq-estimates", b"evoq-estimates")
    with h5py.File(runs / "round_1" / "pairs.h5", "r") as f:
        used = sorted(set(f["pair_i"][:]) | set(f["pair_j"][:]))
        paths = [f["image_path"][i] for i in used]
    assert list(e["image_path"]) == paths  # the images of the pairs, in pairs.h5 order
    texts = [t.decode() for t in e["responses"]]
    parsed = np.array([np.nan if (v := parse_score(t)) is None else v for t in texts]).reshape(-1, K)
    np.testing.assert_array_equal(np.isnan(parsed), np.isnan(e["sample_score"].reshape(-1, K)))
    np.testing.assert_allclose(e["sample_score"].reshape(-1, K), parsed)
    valid = np.isfinite(parsed).sum(1)
    assert list(e["valid"]) == list(valid)
    assert 0 < valid.sum() < parsed.size  # the rigged model gives valid and invalid answers
    with np.errstate(invalid="ignore"):
        mean = np.where(valid > 0, np.nansum(parsed, 1) / np.maximum(valid, 1), np.nan)
    np.testing.assert_allclose(e["pseudo_score"], mean, rtol=0, atol=1e-12)
    # One rank, same model and seed (round 1 = seed + 1): the same answers.
    single = d / "single.h5"
    evoq("estimate", "--model", model, "--pairs", runs / "round_1" / "pairs.h5", "--out", single, "-K", "6",
         "--seed", "6", "--max-new-tokens", "8", "--threads", "1")
    s = read(single)
    assert [t.decode() for t in s["responses"]] == texts
    np.testing.assert_array_equal(s["pseudo_score"], e["pseudo_score"])


def test_rollout_rewards_are_the_estimate_reward(run):
    _, _, runs = run
    e = read(runs / "round_1" / "estimates.h5")
    files = sorted((runs / "round_1" / "train" / "rollouts").glob("step-*.h5"))
    assert len(files) == 2
    checked = 0
    for p in files:
        r = read(p)
        assert len(r["pair_i"]) == 3 and np.array_equal(r["pair_i"], r["pair_j"])  # one image per unit
        pseudo = e["pseudo_score"][r["image_id"][r["seq_image"]]]
        want = ((r["valid"] == 1) & (np.abs(r["score"] - pseudo) < THRESHOLD)).astype(float)
        np.testing.assert_array_equal(r["reward"], want)
        for n in range(len(r["image_id"])):
            rw = r["reward"][r["seq_image"] == n]
            adv = r["advantage"][r["seq_image"] == n]
            if rw.max() == rw.min():
                np.testing.assert_array_equal(adv, 0.0)
            else:
                np.testing.assert_allclose(adv, (rw - rw.mean()) / (rw.std(ddof=1) + 1e-6), rtol=1e-9, atol=1e-12)
                checked += 1
    assert checked > 0  # some group had a spread of rewards


def test_bad_reward_options_are_one_line_errors(run):
    d, model, runs = run
    r = evoq("train", "--model", model, "--reward", "estimate", "--out", d / "t", check=False)
    assert r.returncode == 2 and "--estimates" in r.stderr
    r = evoq("train", "--model", model, "--reward", "rank", "--estimates", runs / "round_1" / "estimates.h5",
             "--out", d / "t2", check=False)
    assert r.returncode == 2 and "--reward 'rank'" in r.stderr
    r = evoq("evolve", "--run", d / "r", "--model", model, "--images", d / "pool", "--method", "evoguess", check=False)
    assert r.returncode == 2 and "--method 'evoguess'" in r.stderr
