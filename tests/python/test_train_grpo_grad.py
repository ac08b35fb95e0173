"""One GRPO update's gradient (paper Eq. 5-6) on FIXED sampled sequences: `evoq debug-grpo-grad`
against PyTorch autograd of the same loss, written here from the equations, on the transformers
model with the same weights (1e-4 relative). Covers the clipped ratio (logp_old away from logp_new),
the k3 KL to a different reference model, the global normaliser with micro-batches, and the
per-sequence aggregation."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from train_testlib import (EVOQ, IM_END, build_model, hf_prompt, make_images, response_logprobs, run,
                           save_checkpoint)

torch.set_num_threads(2)
PROMPT = "Rate the quality of this picture from 1 to 5."


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("grad"))
    policy = build_model(seed=0)
    ref = build_model(seed=1)
    pdir = save_checkpoint(policy, os.path.join(d, "policy"))
    rdir = save_checkpoint(ref, os.path.join(d, "ref"))
    images = make_images(d, 2)
    rng = np.random.default_rng(0)
    seqs = []
    for n in range(6):  # 3 responses per image, lengths 2..6, some ending with the stop id
        length = int(rng.integers(2, 7))
        resp = [int(t) for t in rng.integers(0, 5000, length)]
        if n % 2 == 0:
            resp[-1] = IM_END
        seqs.append(dict(image=images[n % 2], response=resp, advantage=float(rng.normal())))
    prompts = {p: hf_prompt(pdir, p, PROMPT) for p in images}
    return d, pdir, rdir, policy, ref, seqs, prompts


def eq5_loss(policy, ref, seqs, prompts, old, beta, clip_low, clip_high, aggregation):
    """Eq. 5 with the k3 estimator of Eq. 6, per token, aggregated over all sequences."""
    terms, counts = [], []
    for s, lp_old in zip(seqs, old):
        ids, pix, grid = prompts[s["image"]]
        lp = response_logprobs(policy, ids, pix, grid, s["response"])
        ratio = torch.exp(torch.clamp(lp - lp_old, -20, 20))
        a = s["advantage"]
        pg = torch.maximum(-a * ratio, -a * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
        if beta:
            with torch.no_grad():
                lr = response_logprobs(ref, ids, pix, grid, s["response"])
            d = torch.clamp(lr - lp, -20, 20)
            pg = pg + beta * (torch.exp(d) - d - 1)
        terms.append(pg)
        counts.append(len(s["response"]))
    if aggregation == "token-mean":
        return sum(t.sum() for t in terms) / sum(counts)
    return sum(t.mean() for t in terms) / len(terms)  # seq-mean-token-mean


@pytest.mark.parametrize("case", [
    dict(beta=0.05, aggregation="token-mean", micro_batch=4, perturb=0.3),
    dict(beta=0.0, aggregation="seq-mean-token-mean", micro_batch=1, perturb=0.3),
    dict(beta=0.05, aggregation="token-mean", micro_batch=100, perturb=None),  # ratio 1: old = new
])
def test_gradient_matches_autograd(setup, case):
    d, pdir, rdir, policy, ref, seqs, prompts = setup
    rng = np.random.default_rng(1)
    with torch.no_grad():
        new = [response_logprobs(policy, *prompts[s["image"]], s["response"]) for s in seqs]
    if case["perturb"] is None:
        old = [t.clone() for t in new]
    else:  # logp_old away from the current policy so that some ratios leave [1 - eps, 1 + eps]
        old = [t + torch.tensor(rng.uniform(-case["perturb"], case["perturb"], t.shape[0]), dtype=torch.float32)
               for t in new]
    spec = dict(model=pdir, prompt=PROMPT, beta=case["beta"], clip_low=0.2, clip_high=0.25,
                aggregation=case["aggregation"], micro_batch=case["micro_batch"], sequences=[])
    if case["beta"]:
        spec["ref_model"] = rdir
    for s, o in zip(seqs, old):
        e = dict(s)
        if case["perturb"] is not None:
            e["logp_old"] = o.tolist()
        spec["sequences"].append(e)
    name = f"{case['aggregation']}-{case['micro_batch']}-{case['beta']}"
    inp = os.path.join(d, name + ".json")
    json.dump(spec, open(inp, "w"))
    out = os.path.join(d, name)
    run([EVOQ, "debug-grpo-grad", "--in", inp, "--out", out, "--threads", "2"])
    result = json.load(open(os.path.join(out, "result.json")))
    for s, ids in zip(seqs, result["prompt_ids"]):
        assert ids == prompts[s["image"]][0].tolist()

    policy.zero_grad()
    loss = eq5_loss(policy, ref, seqs, prompts, old, case["beta"], 0.2, 0.25, case["aggregation"])
    loss.backward()
    assert result["loss"] == pytest.approx(loss.item(), rel=1e-4, abs=1e-6)
    got = load_file(os.path.join(out, "model.safetensors"))
    compared = 0
    for name, p in policy.named_parameters():
        want = p.grad if p.grad is not None else torch.zeros_like(p)
        g = got[name]
        scale = want.norm().item()
        if scale == 0:
            assert g.abs().max().item() < 1e-9, name
            continue
        rel = (g - want).norm().item() / scale
        assert rel < 1e-4, f"{name}: relative gradient error {rel:.2e}"
        compared += 1
    assert compared > 20  # the vision tower, merger, decoder and lm_head all receive gradient
    if case["perturb"] is not None:
        assert result["clipped_tokens"] > 0  # the clip branch is exercised
