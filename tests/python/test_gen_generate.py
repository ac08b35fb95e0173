"""`evoq generate` on tiny random Qwen2-VL / Qwen2.5-VL models against transformers.

Oracles:
- greedy: transformers' generate(do_sample=False) token ids for 32 new tokens (one and two images);
- sampled: the raw model log-prob evoq reports for each sampled token equals log_softmax of
  transformers' full (uncached) forward over prompt + sampled tokens, which checks the shared-prefix
  cached decoding position by position;
- shared prefix: K samples from one prefill equal K single-sample runs with the same seed (token for
  token on the CPU, where this runs; on CUDA a batch of K and a batch of 1 use different kernels, so
  a sample can differ after a near-tie: docs/TRAINING.md "Determinism: CPU and CUDA").
The models use the real Qwen2-VL vocabulary size so the real tokenizer and chat template apply.
"""
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from parity_precision import pin_fp32
from train_testlib import INSTRUCT_CHAT_TEMPLATE, SPECIAL, build_model, save_checkpoint  # the shared tiny model

torch.set_num_threads(2)
EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")
PROMPT = "Which image is sharper? Answer with 0 or 1."


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def checkpoint(request, tmp_path_factory):
    d = str(tmp_path_factory.mktemp(request.param))
    model = build_model(arch=request.param, tied=request.param == "qwen2_vl")
    save_checkpoint(model, d, defaults={"do_sample": False, "eos_token_id": [151645, 151643]})
    rng = np.random.default_rng(3)
    images = []
    for i, (h, w) in enumerate([(56, 84), (84, 56)]):  # multiples of 28 inside the pixel budget: no resize
        p = os.path.join(d, f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        images.append(p)
    return d, model, images


def hf_inputs(d, images, prompt):
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = AutoTokenizer.from_pretrained(d)
    proc = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": prompt}]
    text = tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True,
                                   chat_template=INSTRUCT_CHAT_TEMPLATE)
    pix = grid = None
    if images:
        out = proc(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt")
        pix, grid = out["pixel_values"], out["image_grid_thw"]
        parts = text.split("<|image_pad|>")
        text = parts[0]
        for i, g in enumerate(grid):
            text += "<|image_pad|>" * int(g.prod() // 4) + parts[i + 1]
    ids = tok(text, return_tensors="pt")["input_ids"]
    return ids, pix, grid


def run_evoq(d, images, *args, prompt=PROMPT):
    cmd = [EVOQ, "generate", "--model", d, "--prompt", prompt, "--json", "--threads", "2"]
    for p in images:
        cmd += ["--image", p]
    res = subprocess.run(pin_fp32(cmd + list(args)), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def image_kwargs(seq, pix, grid):
    """transformers 5.x needs mm_token_type_ids (which positions are image tokens) to compute M-RoPE
    positions for prompts with images; without it generate() falls back to text-only positions."""
    if pix is None:
        return {}
    return dict(pixel_values=pix, image_grid_thw=grid, mm_token_type_ids=(seq == SPECIAL["image_token_id"]).int())


@pytest.mark.parametrize("n_images", [0, 1, 2])
def test_greedy_matches_transformers_generate(checkpoint, n_images):
    d, model, images = checkpoint
    images = images[:n_images]
    ids, pix, grid = hf_inputs(d, images, PROMPT)
    with torch.no_grad():
        kw = image_kwargs(ids, pix, grid)
        ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw, do_sample=False, max_new_tokens=32, repetition_penalty=1.0,
                             eos_token_id=[151645, 151643], pad_token_id=151643)
    want = ref[0, ids.shape[1]:].tolist()
    out = run_evoq(d, images, "--greedy", "--max-new-tokens", "32")
    assert out["prompt_tokens"] == ids.shape[1]
    got = out["samples"][0]["tokens"]
    assert got == want
    assert out["samples"][0]["finish"] == ("stop" if got[-1] in (151645, 151643) else "length")


@pytest.mark.parametrize("n_images", [0, 2])
def test_sampled_logprobs_match_full_forward_and_shared_prefix(checkpoint, n_images):
    d, model, images = checkpoint
    images = images[:n_images]
    k, n = 4, 12
    args = ["--samples", str(k), "--seed", "5", "--max-new-tokens", str(n), "--temperature", "1.5",
            "--top-k", "0", "--top-p", "1.0", "--model-logprobs"]
    out = run_evoq(d, images, *args)
    ids, pix, grid = hf_inputs(d, images, PROMPT)
    tokens = [s["tokens"] for s in out["samples"]]
    assert len({tuple(t) for t in tokens}) > 1, "samples should differ at temperature 1.5"
    for s in out["samples"]:
        seq = torch.cat([ids, torch.tensor([s["tokens"]])], 1)
        with torch.no_grad():
            kw = image_kwargs(seq, pix, grid)
            logits = model(input_ids=seq, attention_mask=torch.ones_like(seq), **kw).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        L = ids.shape[1]
        want = [logp[L - 1 + t, tok].item() for t, tok in enumerate(s["tokens"])]
        np.testing.assert_allclose(s["model_logprobs"], want, atol=2e-4)
        # sampling distribution: softmax(logits / 1.5)
        want_s = [torch.log_softmax(logits[L - 1 + t] / 1.5, -1)[tok].item() for t, tok in enumerate(s["tokens"])]
        np.testing.assert_allclose(s["sample_logprobs"], want_s, atol=2e-4)
    # The same samples drawn one at a time (no shared prefill) are identical.
    for i in range(k):
        single = run_evoq(d, images, *(args[:1] + ["1"] + args[2:] + ["--first-sample", str(i)]))
        assert single["samples"][0]["index"] == i
        assert single["samples"][0]["tokens"] == tokens[i]


def run_requests(d, lines, *args, check=True):
    """`evoq generate --requests -` with `lines` on stdin: its JSON answers (one per line)."""
    cmd = [EVOQ, "generate", "--model", d, "--prompt", PROMPT, "--requests", "-", "--threads", "2"]
    res = subprocess.run(pin_fp32(cmd + list(args)), input="".join(json.dumps(x) + "\n" for x in lines),
                         capture_output=True, text=True)
    if not check:
        return res
    assert res.returncode == 0, res.stderr
    return [json.loads(x) for x in res.stdout.splitlines()]


def test_requests_greedy_match_transformers_generate(checkpoint):
    """A held process answers several prompts in order; each greedy answer is transformers' generate."""
    d, model, images = checkpoint
    asks = [[], images[:1], images, [images[1], images[0]]]
    out = run_requests(d, [{"images": im} for im in asks], "--greedy", "--max-new-tokens", "16")
    assert [o["request"] for o in out] == list(range(len(asks)))
    for im, o in zip(asks, out):
        ids, pix, grid = hf_inputs(d, im, PROMPT)
        with torch.no_grad():
            ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **image_kwargs(ids, pix, grid),
                                 do_sample=False, max_new_tokens=16, repetition_penalty=1.0,
                                 eos_token_id=[151645, 151643], pad_token_id=151643)
        assert o["prompt_tokens"] == ids.shape[1]
        assert o["samples"][0]["tokens"] == ref[0, ids.shape[1]:].tolist()


def test_requests_sampled_equal_one_process_per_prompt(checkpoint):
    """Samples of a held process (its caches warm from earlier prompts) equal those of a fresh process per
    prompt with the same seed, samples and request id; the prompt text can change per request."""
    d, _, images = checkpoint
    common = ["--temperature", "1.5", "--top-k", "0"]
    asks = [{"images": images, "seed": 7, "samples": 3},
            {"images": images[:1], "seed": 8, "samples": 2, "prompt": "Rate this image.", "max_new_tokens": 6},
            {"images": images, "seed": 7, "samples": 3, "request_id": 4}]
    out = run_requests(d, asks, "--max-new-tokens", "10", *common)
    assert len(out) == 3
    assert all(len(s["tokens"]) == 6 or s["finish"] == "stop" for s in out[1]["samples"])
    for ask, o in zip(asks, out):
        single = run_evoq(d, ask["images"], "--samples", str(ask["samples"]), "--seed", str(ask["seed"]),
                          "--request-id", str(ask.get("request_id", 0)), *common,
                          "--max-new-tokens", str(ask.get("max_new_tokens", 10)), prompt=ask.get("prompt", PROMPT))
        assert [s["tokens"] for s in o["samples"]] == [s["tokens"] for s in single["samples"]]
        assert o["prompt_tokens"] == single["prompt_tokens"]
    # another request id draws other samples from the same prompt and seed
    assert [s["tokens"] for s in out[0]["samples"]] != [s["tokens"] for s in out[2]["samples"]]


@pytest.mark.parametrize("line,message", [
    ({"imags": []}, 'line 2: unknown key "imags"'),
    ({"samples": 0}, "line 2: samples must be >= 1"),
    ({"samples": "four"}, "line 2: bad value"),
    ("four", "line 2: a request is a JSON object"),
    ({"max_new_tokens": 5}, "line 2: max_new_tokens must be in 1..4"),
])
def test_requests_bad_line_is_one_clear_error(checkpoint, line, message):
    d, _, images = checkpoint
    res = run_requests(d, [{"images": images[:1]}, line], "--max-new-tokens", "4", check=False)
    assert res.returncode != 0
    assert message in res.stderr, res.stderr
    assert len(res.stdout.splitlines()) == 1  # the good first line was answered before the bad one
