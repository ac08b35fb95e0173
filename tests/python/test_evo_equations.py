"""Eq. 1-6 of the EvoQuality paper: evoq (through `evoq debug-evo equations`) against an independent
NumPy/SciPy/PyTorch implementation written here from the equations in section 3."""
import json
import os
import subprocess
import tempfile

import numpy as np
import pytest
import torch
from scipy.stats import norm

torch.set_num_threads(1)
EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")
TESTTOOL = os.environ.get("EVOQ_TESTTOOL", os.path.join(os.path.dirname(EVOQ), "evoq-testtool"))  # test drivers


def run_evoq(payload):
    """One `evoq debug-evo equations` run (a process start loads LibTorch: batch the cases)."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.json"), os.path.join(d, "out.json")
        with open(src, "w") as f:
            json.dump(payload, f)
        subprocess.run([TESTTOOL, "debug-evo", "equations", "--in", src, "--out", dst], check=True)
        with open(dst) as f:
            return json.load(f)


# ---- Eq. 1 ---------------------------------------------------------------------------------------
def test_eq1_majority_vote_and_early_stop():
    cases = [[a, b] for a in range(0, 6) for b in range(0, 6)]
    stops = [[a, b, r] for a in range(0, 5) for b in range(0, 5) for r in range(0, 6)]
    out = run_evoq({"majority": cases, "early_stop": stops})
    for (a, b), p in zip(cases, out["majority"]):
        expected = None if a == b == 0 else (1.0 if a > b else 0.0 if a < b else 0.5)
        assert p == expected, (a, b)
    # Oracle for the early stop: enumerate every continuation of r answers.
    import itertools
    for (a, b, r), decided in zip(stops, out["early_stop"]):
        outcomes = set()
        for seq in itertools.product((0, 1, 2), repeat=r):
            fa, fb = a + seq.count(0), b + seq.count(1)
            outcomes.add(None if fa == fb == 0 else np.sign(fa - fb))
        assert decided == (len(outcomes) == 1), (a, b, r)


# ---- Eq. 2-3 -------------------------------------------------------------------------------------
def oracle_rewards(images, pairs, gamma, min_valid=2):
    """Eq. 2-3 with the documented policy: invalid -> 0; stats over valid samples, unbiased variance
    (0 with one valid sample); partners with < min_valid valid samples are skipped."""
    stats = []
    for im in images:
        q = np.array(im["scores"], dtype=np.float64)[np.array(im["valid"], dtype=bool)]
        var = q.var(ddof=1) if len(q) >= 2 else 0.0
        stats.append((len(q), q.mean() if len(q) else 0.0, var))
    partners = [[] for _ in images]
    for i, j, p in pairs:
        partners[i].append((j, p))
        partners[j].append((i, 1.0 - p))  # Algorithm 1 line 11: swap positions for x_j
    out = []
    for i, im in enumerate(images):
        used = [(j, p) for j, p in partners[i] if stats[j][0] >= min_valid]
        r = np.zeros(len(im["scores"]))
        for k, (q, v) in enumerate(zip(im["scores"], im["valid"])):
            if not v or not used:
                continue
            terms = []
            for j, ps in used:
                pk = norm.cdf((q - stats[j][1]) / np.sqrt(stats[i][2] + stats[j][2] + gamma))  # Eq. 2
                terms.append(np.sqrt(ps * pk) + np.sqrt((1 - ps) * (1 - pk)))  # Eq. 3 summand
            r[k] = np.mean(terms)
        out.append((r, len(im["scores"]) - stats[i][0], len(used)))
    return out


def reward_case(seed):
    rng = np.random.default_rng(seed)
    K, n = 8, 7
    images = []
    for i in range(n):
        scores = np.round(rng.uniform(1, 5, K), 2)
        valid = (rng.uniform(size=K) > 0.2).astype(int)
        if i == 5:
            valid[:] = 0; valid[0] = 1  # one valid sample: var 0, unusable as partner
        if i == 6:
            valid[:] = 0  # all invalid
        if i == 4:
            scores[:] = 3.0; valid[:] = 1  # zero variance scores
        images.append({"scores": scores.tolist(), "valid": valid.tolist()})
    pairs = [[0, 1, 1.0], [0, 2, 0.5], [1, 3, 0.0], [2, 3, 1.0], [4, 0, 0.0], [5, 1, 1.0], [6, 2, 0.0],
             [5, 6, 0.5], [3, 4, 0.5]]
    gamma = 1e-6 if seed != 2 else 0.1
    return {"images": images, "pairs": pairs, "gamma": gamma}


def test_eq2_eq3_fidelity_rewards():
    cases = [reward_case(seed) for seed in (0, 1, 2)]
    results = run_evoq({"reward": cases})["reward"]
    for case, got in zip(cases, results):
        check_rewards(case, got)


def check_rewards(case, got):
    K = len(case["images"][0]["scores"])
    want = oracle_rewards(case["images"], case["pairs"], case["gamma"])
    for i, (g, (r, invalid, used)) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g["rewards"], r, rtol=1e-12, atol=1e-14, err_msg=f"image {i}")
        assert g["invalid"] == invalid
        assert g["partners_used"] == used
        assert g["has_signal"] == (used > 0)
    assert got[6]["rewards"] == [0.0] * K  # all invalid -> minimum reward everywhere
    assert got[5]["partners_skipped"] == 1  # image 6 has no valid sample: skipped as a partner
    assert all(0.0 <= x <= 1.0 for g in got for x in g["rewards"])


# ---- Eq. 4 ---------------------------------------------------------------------------------------
def test_eq4_group_advantages():
    rng = np.random.default_rng(3)
    groups = [rng.uniform(0, 1, 8).tolist() for _ in range(5)] + [[0.4] * 8, [0.2, 0.9]]
    cases = [{"groups": groups, "epsilon": 1e-6, "divide_by_std": divide} for divide in (True, False)]
    results = run_evoq({"advantage": cases})["advantage"]
    for divide, out in zip((True, False), results):
        for g, o in zip(groups, out):
            r = torch.tensor(g, dtype=torch.float64)
            if r.max() == r.min():
                assert o["zero_variance"] and o["advantages"] == [0.0] * len(g)
                continue
            expected = (r - r.mean()) / (r.std() + 1e-6) if divide else r - r.mean()  # torch.std: unbiased
            np.testing.assert_allclose(o["advantages"], expected.numpy(), rtol=1e-12, atol=1e-15)
            assert not o["zero_variance"]


# ---- Eq. 5-6 -------------------------------------------------------------------------------------
def oracle_loss(logp_new, logp_old, logp_ref, adv, mask, eps_low, eps_high, beta, agg, divisor, clamp=20.0):
    logp = logp_new.clone().requires_grad_(True)
    old = logp.detach() if logp_old is None else logp_old
    ratio = torch.exp(torch.clamp(logp - old, -clamp, clamp))
    a = adv[:, None]
    surrogate = torch.min(ratio * a, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * a)  # Eq. 5 inner min
    per_token = -surrogate
    if beta != 0:
        lr = torch.clamp(logp_ref - logp, -clamp, clamp)  # log(pi_ref / pi_theta)
        kl = torch.exp(lr) - lr - 1  # Eq. 6
        per_token = per_token + beta * kl
    else:
        kl = torch.zeros_like(per_token)
    if agg == "token-mean":
        loss = (per_token * mask).sum() / mask.sum()
    elif agg == "seq-mean-token-mean":
        lens = mask.sum(1)
        keep = lens > 0
        loss = ((per_token * mask).sum(1)[keep] / lens[keep]).sum() / keep.sum()
    else:
        loss = (per_token * mask).sum() / (divisor * (mask.sum(1) > 0).sum())
    loss.backward()
    clipped = ((-torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * a) > (-ratio * a)).double()
    return (loss.item(), logp.grad.numpy(), ((clipped * mask).sum() / mask.sum()).item(),
            ((kl * mask).sum() / mask.sum()).item())


def make_loss_case(seed, S=6, T=9, beta=0.05, agg="token-mean", with_old=True, eps=(0.2, 0.2), divisor=1.0,
                   micro=None):
    g = torch.Generator().manual_seed(seed)
    logp_new = -torch.rand(S, T, generator=g, dtype=torch.float64) * 3
    logp_old = logp_new + 0.3 * torch.randn(S, T, generator=g, dtype=torch.float64)  # ratios beyond the clip
    logp_ref = logp_new + 0.5 * torch.randn(S, T, generator=g, dtype=torch.float64)
    logp_old[0, 0] = logp_new[0, 0] - 30.0  # exercises the +-20 clamp
    adv = torch.randn(S, generator=g, dtype=torch.float64)
    mask = torch.zeros(S, T, dtype=torch.float64)
    for s in range(S):
        mask[s, 2: 2 + int(torch.randint(1, T - 2, (1,), generator=g))] = 1
    mask[S - 1] = 0  # an empty sequence
    case = {"logp_new": logp_new.tolist(), "logp_old": logp_old.tolist() if with_old else None,
            "logp_ref": logp_ref.tolist(), "advantages": adv.tolist(), "mask": mask.tolist(),
            "config": {"beta": beta, "aggregation": agg, "clip_low": eps[0], "clip_high": eps[1],
                       "constant_divisor": divisor}}
    if micro:
        case["micro_batches"] = micro
    args = (logp_new, logp_old if with_old else None, logp_ref, adv, mask, eps[0], eps[1], beta, agg, divisor)
    return case, args


LOSS_CASES = [
    dict(seed=0),
    dict(seed=1, beta=0.0),
    dict(seed=2, agg="seq-mean-token-mean"),
    dict(seed=3, agg="constant", divisor=9.0),
    dict(seed=4, eps=(0.1, 0.3)),
    dict(seed=5, with_old=False),  # one optimizer step per rollout batch: old = new (detached)
    dict(seed=6, micro=[[0, 1], [2, 3, 4], [5]]),
    dict(seed=7, agg="seq-mean-token-mean", micro=[[5, 0], [1, 2, 3, 4]]),
    dict(seed=8, agg="constant", divisor=4.0, micro=[[0], [1], [2], [3], [4], [5]]),
]


def micro_batch_cases():
    """Pairs (whole batch, same batch in micro-batches) for each aggregation."""
    out = []
    for agg in ("token-mean", "seq-mean-token-mean", "constant"):
        whole, _ = make_loss_case(11, agg=agg, divisor=7.0)
        out += [whole, dict(whole, micro_batches=[[3], [0, 5], [1, 2, 4]])]
    return out


def test_eq5_eq6_grpo_loss_and_gradients():
    cases, oracles = [], []
    for spec in LOSS_CASES:
        case, args = make_loss_case(**spec)
        cases.append(case)
        oracles.append(oracle_loss(*args))
    micro = micro_batch_cases()
    f32_case, f32_args = make_loss_case(12)
    all_results = run_evoq({"loss": cases + micro + [dict(f32_case, dtype="float32")]})["loss"]
    got = all_results[:len(cases)]
    check_micro_batch_invariance(all_results[len(cases):len(cases) + len(micro)])
    check_float32(all_results[-1], f32_args)
    for spec, g, (loss, grad, clip, kl) in zip(LOSS_CASES, got, oracles):
        np.testing.assert_allclose(g["loss"], loss, rtol=1e-12, atol=1e-14, err_msg=str(spec))
        np.testing.assert_allclose(np.array(g["grad"]), grad, rtol=1e-10, atol=1e-14, err_msg=str(spec))
        np.testing.assert_allclose(g["clip_fraction"], clip, rtol=1e-12, atol=1e-14, err_msg=str(spec))
        np.testing.assert_allclose(g["kl_mean"], kl, rtol=1e-12, atol=1e-14, err_msg=str(spec))
    # Old == new: the ratio is exactly 1, nothing is clipped.
    assert got[5]["clip_fraction"] == 0.0 and got[5]["ratio_mean"] == 1.0
    assert got[1]["kl_mean"] == 0.0


def check_micro_batch_invariance(results):
    """The loss does not depend on micro-batching: the normaliser is global."""
    for a, b in zip(results[0::2], results[1::2]):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-13)
        np.testing.assert_allclose(a["grad"], b["grad"], rtol=1e-12, atol=1e-16)


def check_float32(got, args):
    loss, grad, _, _ = oracle_loss(*args)
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(np.array(got["grad"]), grad, rtol=1e-4, atol=1e-7)
