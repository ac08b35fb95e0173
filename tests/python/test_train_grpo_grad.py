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

from train_testlib import (EVOQ, TESTTOOL, IM_END, build_model, hf_prompt, make_images, response_logprobs, run,
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


def eq5_loss(policy, ref, seqs, prompts, old, beta, clip_low, clip_high, aggregation, temperature=1.0):
    """Eq. 5 with the k3 estimator of Eq. 6, per token, aggregated over all sequences; every log-prob
    under softmax(logits / temperature)."""
    terms, counts = [], []
    for s, lp_old in zip(seqs, old):
        ids, pix, grid = prompts[s["image"]]
        lp = response_logprobs(policy, ids, pix, grid, s["response"], temperature)
        ratio = torch.exp(torch.clamp(lp - lp_old, -20, 20))
        a = s["advantage"]
        pg = torch.maximum(-a * ratio, -a * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
        if beta:
            with torch.no_grad():
                lr = response_logprobs(ref, ids, pix, grid, s["response"], temperature)
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
    # Rollouts sampled at temperature 0.7: policy, old and reference log-probs all under logits / 0.7.
    dict(beta=0.05, aggregation="seq-mean-token-mean", micro_batch=4, perturb=0.3, temperature=0.7),
])
def test_gradient_matches_autograd(setup, case):
    d, pdir, rdir, policy, ref, seqs, prompts = setup
    rng = np.random.default_rng(1)
    with torch.no_grad():
        new = [response_logprobs(policy, *prompts[s["image"]], s["response"], case.get("temperature", 1.0))
               for s in seqs]
    if case["perturb"] is None:
        old = [t.clone() for t in new]
    else:  # logp_old away from the current policy so that some ratios leave [1 - eps, 1 + eps]
        old = [t + torch.tensor(rng.uniform(-case["perturb"], case["perturb"], t.shape[0]), dtype=torch.float32)
               for t in new]
    spec = dict(model=pdir, prompt=PROMPT, beta=case["beta"], clip_low=0.2, clip_high=0.25,
                aggregation=case["aggregation"], micro_batch=case["micro_batch"], sequences=[],
                temperature=case.get("temperature", 1.0))
    if case["beta"]:
        spec["ref_model"] = rdir
    for s, o in zip(seqs, old):
        e = dict(s)
        if case["perturb"] is not None:
            e["logp_old"] = o.tolist()
        spec["sequences"].append(e)
    name = f"{case['aggregation']}-{case['micro_batch']}-{case['beta']}-{case.get('temperature', 1.0)}"
    inp = os.path.join(d, name + ".json")
    json.dump(spec, open(inp, "w"))
    out = os.path.join(d, name)
    run([TESTTOOL, "debug-grpo-grad", "--in", inp, "--out", out, "--threads", "2"])
    result = json.load(open(os.path.join(out, "result.json")))
    for s, ids in zip(seqs, result["prompt_ids"]):
        assert ids == prompts[s["image"]][0].tolist()

    policy.zero_grad()
    loss = eq5_loss(policy, ref, seqs, prompts, old, case["beta"], 0.2, 0.25, case["aggregation"],
                    case.get("temperature", 1.0))
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


def evoq_grad(d, name, spec, *flags):
    """`evoq debug-grpo-grad` on `spec` with extra flags -> (result.json, {name: gradient})."""
    inp = os.path.join(d, name + ".json")
    json.dump(spec, open(inp, "w"))
    out = os.path.join(d, name)
    run([TESTTOOL, "debug-grpo-grad", "--in", inp, "--out", out, "--threads", "2", *flags])
    return json.load(open(os.path.join(out, "result.json"))), load_file(os.path.join(out, "model.safetensors"))


def perturbed_spec(setup, beta=0.05, micro_batch=4):
    """The clipped-ratio case with a reference model (every term of Eq. 5-6 active)."""
    d, pdir, rdir, policy, ref, seqs, prompts = setup
    rng = np.random.default_rng(2)
    with torch.no_grad():
        new = [response_logprobs(policy, *prompts[s["image"]], s["response"]) for s in seqs]
    spec = dict(model=pdir, ref_model=rdir, prompt=PROMPT, beta=beta, clip_low=0.2, clip_high=0.25,
                aggregation="token-mean", micro_batch=micro_batch, sequences=[])
    for s, t in zip(seqs, new):
        spec["sequences"].append(dict(s, logp_old=(t + torch.tensor(rng.uniform(-0.3, 0.3, t.shape[0]),
                                                                     dtype=torch.float32)).tolist()))
    return spec


def test_activation_checkpointing_gives_the_same_gradients(setup):
    """Recomputing every decoder layer and vision block in backward (the custom autograd Function)
    changes no gradient: equal to the stored-activation run to float32 round-off, and to PyTorch
    autograd on the transformers model like the other cases."""
    d, pdir, rdir, policy, ref, seqs, prompts = setup
    spec = perturbed_spec(setup)
    base, g0 = evoq_grad(d, "ckpt-off", spec)
    ckpt, g1 = evoq_grad(d, "ckpt-on", spec, "--activation-checkpointing")
    assert ckpt["loss"] == pytest.approx(base["loss"], rel=1e-6, abs=1e-9)
    old = [torch.tensor(s["logp_old"]) for s in spec["sequences"]]
    policy.zero_grad()
    eq5_loss(policy, ref, seqs, prompts, old, 0.05, 0.2, 0.25, "token-mean").backward()
    compared = 0
    for name, p in policy.named_parameters():
        want = p.grad if p.grad is not None else torch.zeros_like(p)
        scale = want.norm().item()
        if scale == 0:
            assert g1[name].abs().max().item() < 1e-9, name
            continue
        assert (g1[name] - g0[name]).norm().item() / scale < 1e-5, name
        assert (g1[name] - want).norm().item() / scale < 1e-4, name
        compared += 1
    assert compared > 20 and any(n.startswith("model.visual.blocks") for n in g1)


def test_bf16_autocast_close_to_fp32(setup):
    """--autocast bf16 (CPU autocast here; CUDA in production): the forwards run in bf16 with the fp32
    weights, so the loss and the gradient stay close to the fp32 ones (bf16 has an 8-bit mantissa:
    ~1e-2 relative), and differ from them (autocast is really on). With checkpointing too, the
    recompute must use the same autocast state, so the gradients equal the plain autocast ones."""
    d = setup[0]
    spec = perturbed_spec(setup)
    base, g0 = evoq_grad(d, "ac-off", spec)
    bf, g1 = evoq_grad(d, "ac-bf16", spec, "--autocast", "bf16")
    both, g2 = evoq_grad(d, "ac-bf16-ckpt", spec, "--autocast", "bf16", "--activation-checkpointing")
    # The loss is a mean of O(1) terms (standardised advantages x ratios ~1) that nearly cancel, so its
    # bf16 error is bounded in absolute terms: 2^-8 relative per term (~4e-3), not relative to the sum.
    assert abs(bf["loss"] - base["loss"]) < 4e-3, (bf["loss"], base["loss"])
    flat0 = torch.cat([g.flatten() for g in g0.values()])
    flat1 = torch.cat([g1[k].flatten() for k in g0])
    flat2 = torch.cat([g2[k].flatten() for k in g0])
    cos = torch.nn.functional.cosine_similarity(flat0, flat1, dim=0).item()
    assert cos > 0.98, cos
    assert not torch.equal(flat0, flat1)
    assert (flat2 - flat1).norm().item() <= 1e-5 * flat1.norm().item()
    assert both["loss"] == pytest.approx(bf["loss"], rel=1e-6, abs=1e-9)


def test_dry_run_memory_with_checkpointing_and_autocast():
    """`evoq train --dry-run` on the real Qwen2-VL-2B config (docs/TRAINING.md memory model), activation
    rows against the formulas evaluated here by hand: per token and layer b (6 H + 4 kv + 4 I) stored,
    or only the layer input (b H) per layer plus one layer's activations with checkpointing; bf16
    autocast: 2-byte activations with fp32 weights plus the 2-byte weight copies the graph keeps."""
    import re
    cfg = os.path.join(os.environ.get("EVOQ_TEST_DATA", "tests/data"), "qwen2-vl-2b")

    def rows(*flags):
        out = run([EVOQ, "train", "--model", cfg, "--dry-run", "--micro-batch", "2", "--max-new-tokens", "112",
                   *flags]).stdout
        vals = {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^\s+(\w[\w +]*?)\s+([\d.]+) GiB$", out, re.M)}
        params = int(re.search(r"parameters: (\d+)", out).group(1))
        return vals, params

    H, kv, I, L = 1536, 2 * 128, 8960, 28
    w, wI, depth = 1280, 4 * 1280, 32
    tokens, patches = 2 * (400 + 112), 2 * 256 * 4  # micro-batch x (prompt + response); 256 image tokens x 2x2

    def expected(b, ckpt):
        layer = b * (6 * H + 4 * kv + 4 * I)
        block = b * (6 * w + 4 * wI)
        lm = tokens * (L * b * H + layer) if ckpt else tokens * L * layer
        vis = patches * (depth * b * w + block) if ckpt else patches * depth * block
        return (lm + vis) / 2 ** 30

    plain, P = rows()
    ckpt, _ = rows("--activation-checkpointing")
    auto, _ = rows("--activation-checkpointing", "--autocast", "bf16")
    assert plain["activations"] == pytest.approx(expected(4, False), abs=0.006)
    assert ckpt["activations"] == pytest.approx(expected(4, True), abs=0.006)
    assert ckpt["activations"] < plain["activations"] / 5
    assert auto["activations"] == pytest.approx(expected(2, True) + 2 * P / 2 ** 30, abs=0.006)
    assert auto["weights"] == plain["weights"]  # fp32 weights either way
    res = run([EVOQ, "train", "--model", cfg, "--dry-run", "--dtype", "bf16", "--autocast", "bf16"], check=False)
    assert res.returncode != 0 and "--autocast" in res.stderr
    res = run([EVOQ, "train", "--model", cfg, "--dry-run", "--autocast", "fp8"], check=False)
    assert res.returncode != 0 and "fp8" in res.stderr
