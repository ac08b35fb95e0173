"""data_prep/make_default_model.py (the embedded default): two builds give identical bytes; the result
loads in transformers; evoq's greedy `compare` and `score` on held-out distorted images (references never
used in training) give mostly valid answers. Reduced-size builds (fewer references and steps) keep it fast;
the reduced format warm-up uses a larger learning rate than the full build."""
import csv
import filecmp
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from parity_precision import pin_fp32  # noqa: E402

SRC = os.environ.get("EVOQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("EVOQ_BUILD_DIR", os.path.join(SRC, "build"))
EVOQ = os.environ.get("EVOQ_BIN", os.path.join(BUILD, "bin", "evoq"))
DISTORT = os.environ.get("EVOQ_DISTORT", os.path.join(os.path.dirname(EVOQ), "distort"))
SCRIPT = os.path.join(SRC, "data_prep", "make_default_model.py")
REFS = os.path.join(SRC, "data", "cq100-mini")
HELD_OUT = sorted(f for f in os.listdir(REFS) if f.endswith(".png"))[-6:]


def build(out, *args):
    env = dict(os.environ, EVOQ_DISTORT=DISTORT, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, SCRIPT, str(out), *args], check=True, env=env, capture_output=True, text=True)
    with open(os.path.join(out, "warmup.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def format_model(tmp_path_factory):
    """A reduced warm-up that still learns the answer formats (not the perception)."""
    out = tmp_path_factory.mktemp("default") / "model"
    build(out, "--train-refs", "4", "--compare-examples", "160", "--score-examples", "160", "--batch", "4", "--lr", "8e-3",
          "--no-eval")
    return out


def test_two_builds_are_identical_and_load(tmp_path):
    args = ("--train-refs", "3", "--compare-examples", "12", "--score-examples", "8", "--no-eval")
    info = build(tmp_path / "a", *args)
    build(tmp_path / "b", *args)
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == sorted(os.listdir(tmp_path / "b"))
    for n in names:
        if n != "warmup.json":  # holds the build time
            assert filecmp.cmp(tmp_path / "a" / n, tmp_path / "b" / n, shallow=False), n
    assert info["held_out_references"] == HELD_OUT
    assert not set(info["train_references"]) & set(HELD_OUT)

    import torch
    import transformers as tf
    from safetensors.torch import load_file
    model = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "a")
    saved = load_file(tmp_path / "a" / "model.safetensors")
    state = model.state_dict()
    for k, v in saved.items():
        # save_pretrained writes the hub layout (visual.*, model.*); the loaded model names them
        # model.visual.*, model.language_model.*
        name = ("model." + k if k.startswith("visual.") else
                "model.language_model." + k[len("model."):] if k.startswith("model.") else k)
        assert torch.equal(state[name], v), k
    # the warm-up moved the weights away from the untrained tiny model
    sys.path.insert(0, os.path.join(SRC, "data_prep"))
    import make_tiny_model
    base = make_tiny_model.make_model("qwen2_5_vl", 0).state_dict()
    assert any(not torch.equal(base[k], state[k]) for k in base)


def held_out_images(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    for n in HELD_OUT[:3]:
        os.symlink(os.path.join(REFS, n), refs / n)
    subprocess.run([DISTORT, "--input", str(refs), "--out", str(tmp_path / "d"), "--types", "gaussian_blur,white_noise",
                    "--levels", "1,5", "--seed", "7"], check=True, capture_output=True)
    with open(tmp_path / "d" / "manifest.csv") as f:
        return [r["path"] for r in csv.DictReader(f)]


def test_evoq_answers_are_mostly_valid(format_model, tmp_path):
    images = held_out_images(tmp_path)
    valid = total = 0
    for a, b in zip(images[0::2], images[1::2]):
        # greedy: the reduced warm-up learns the format less firmly than the full build, whose sampled
        # validity docs/MODEL.md reports
        out = subprocess.run(pin_fp32([EVOQ, "compare", "--model", str(format_model), a, b, "--greedy", "--samples", "4",
                              "--seed", "3",
                              "--max-new-tokens", "32", "--json", "--threads", "1"]),
                             check=True, capture_output=True, text=True)
        j = json.loads(out.stdout)
        valid += j["votes_a"] + j["votes_b"]
        total += j["samples"]
        for r in j["responses"]:
            assert r["status"] != "valid" or r["vote"] in (0, 1)
    assert valid >= 0.8 * total, (valid, total)

    out_json = tmp_path / "scores.json"
    subprocess.run(pin_fp32([EVOQ, "score", "--model", str(format_model), *images, "--max-new-tokens", "32", "--threads", "1",
                    "--out", str(out_json)]), check=True, capture_output=True, text=True)
    scores = json.load(open(out_json))["images"]
    assert len(scores) == len(images)
    ok = [s for s in scores if s["valid"] == 1]
    assert len(ok) >= 0.8 * len(scores), scores
    assert all(1.0 <= s["mean"] <= 5.0 for s in ok)


def test_builder_forward_agrees_with_evoq(format_model, tmp_path):
    """The warm-up trains through make_default_model.hidden_states; evoq must compute the same logits on
    the built model, or the perception the warm-up teaches does not reach evoq (transformers without
    mm_token_type_ids gives image tokens text positions: the default model was once trained that way,
    and evoq's answers on it were unrelated to the images)."""
    import numpy as np
    import torch
    import transformers as tf
    from safetensors.torch import save_file
    sys.path.insert(0, os.path.join(SRC, "data_prep"))
    import make_default_model as builder
    images = held_out_images(tmp_path)
    enc = builder.Encoder(str(format_model))
    ids, pix, grid = enc.prompt(images[:2], builder.COMPARE_PROMPT + " " + builder.SUFFIX)
    model = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(format_model).eval()
    seq = torch.tensor([ids])
    with torch.no_grad():
        want = (builder.hidden_states(model, seq, pix, grid)[0] @ model.lm_head.weight.t()).numpy()
    inputs = tmp_path / "inputs.safetensors"
    save_file({"input_ids": seq, "pixel_values": pix.contiguous(), "image_grid_thw": grid.to(torch.int64)}, str(inputs))
    out = tmp_path / "logits.npy"
    subprocess.run([EVOQ, "forward", "--model", str(format_model), "--inputs", str(inputs), "--out", str(out),
                    "--all-positions", "--threads", "1", "--log-level", "warn"], check=True)
    got = np.load(out)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-3 * max(1.0, np.abs(want).max())
