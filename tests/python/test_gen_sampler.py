"""The sampler's logits processors against transformers' LogitsProcessorList on random logits.

Oracle: transformers' RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper and
TopPLogitsWarper, in the order generate() applies them; the sampled token is checked against an
inverse-CDF draw written here in numpy from transformers' probabilities.
"""
import json
import os
import subprocess
import tempfile

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

torch.set_num_threads(1)
EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")
TESTTOOL = os.environ.get("EVOQ_TESTTOOL", os.path.join(os.path.dirname(EVOQ), "evoq-testtool"))  # test drivers

SETTINGS = [
    dict(sample=False, repetition_penalty=1.3, temperature=0.7, top_k=5, top_p=0.9),  # greedy: penalty only
    dict(sample=True, repetition_penalty=1.0, temperature=1.0, top_k=0, top_p=1.0),
    dict(sample=True, repetition_penalty=1.05, temperature=0.1, top_k=1, top_p=0.001),  # Qwen2-VL-2B defaults
    dict(sample=True, repetition_penalty=1.2, temperature=0.7, top_k=50, top_p=0.9),
    dict(sample=True, repetition_penalty=0.8, temperature=1.5, top_k=0, top_p=0.5),
    dict(sample=True, repetition_penalty=1.0, temperature=2.0, top_k=7, top_p=1.0),
]


def hf_process(logits, history, s):
    procs = LogitsProcessorList()
    if s["repetition_penalty"] != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(s["repetition_penalty"]))
    if s["sample"]:
        if s["temperature"] != 1.0:
            procs.append(TemperatureLogitsWarper(s["temperature"]))
        if s["top_k"] != 0:
            procs.append(TopKLogitsWarper(s["top_k"], min_tokens_to_keep=1))
        if s["top_p"] < 1.0:
            procs.append(TopPLogitsWarper(s["top_p"], min_tokens_to_keep=1))
    return procs(torch.from_numpy(history), torch.from_numpy(logits.copy()))


def inverse_cdf(probs, u):
    cum = np.cumsum(probs.astype(np.float64))
    idx = int(np.searchsorted(cum, u * cum[-1], side="right"))
    return min(idx, len(probs) - 1)


# 3000 spans several of the sampler's 512-token blocks and a partial last block.
@pytest.mark.parametrize("vocab", [300, 3000])
@pytest.mark.parametrize("s", SETTINGS)
def test_processors_match_transformers(s, vocab):
    rng = np.random.default_rng(1234)
    rows, hist_len = 6, 40
    logits = (rng.standard_normal((rows, vocab)) * 3).astype(np.float32)
    history = rng.integers(0, vocab, size=(rows, hist_len)).astype(np.int64)
    uniforms = rng.random(rows)
    with tempfile.TemporaryDirectory() as d:
        paths = {k: os.path.join(d, k) for k in ("logits", "history", "uniforms", "out")}
        logits.tofile(paths["logits"])
        history.tofile(paths["history"])
        uniforms.astype(np.float64).tofile(paths["uniforms"])
        cmd = [TESTTOOL, "process-logits", "--logits", paths["logits"], "--rows", str(rows), "--vocab", str(vocab),
               "--history", paths["history"], "--history-len", str(hist_len), "--out", paths["out"],
               "--temperature", str(s["temperature"]), "--top-k", str(s["top_k"]), "--top-p", str(s["top_p"]),
               "--repetition-penalty", str(s["repetition_penalty"])]
        if s["sample"]:
            cmd += ["--sample", "--uniforms", paths["uniforms"]]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        ours = np.fromfile(paths["out"], dtype=np.float32).reshape(rows, vocab)
        chosen = json.loads(res.stdout)

    ref = hf_process(logits, history, s).numpy()
    assert np.array_equal(np.isinf(ours), np.isinf(ref)), "different tokens filtered"
    finite = np.isfinite(ref)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-6, atol=1e-6)

    ref_t = torch.from_numpy(ref)
    ref_logp = torch.log_softmax(ref_t, -1).numpy()
    raw_logp = torch.log_softmax(torch.from_numpy(logits), -1).numpy()
    for r in range(rows):
        if s["sample"]:
            want = inverse_cdf(torch.softmax(ref_t[r], -1).numpy(), uniforms[r])
        else:
            want = int(np.argmax(ref[r]))
        assert chosen["tokens"][r] == want
        assert chosen["sample_logprobs"][r] == pytest.approx(ref_logp[r, want], abs=1e-5)
        assert chosen["model_logprobs"][r] == pytest.approx(raw_logp[r, want], abs=1e-5)


def test_bad_option_is_a_usage_error():
    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "l")
        np.zeros(4, np.float32).tofile(f)
        res = subprocess.run([TESTTOOL, "process-logits", "--logits", f, "--vocab", "4", "--out", os.path.join(d, "o"),
                              "--top-p", "1.5"], capture_output=True, text=True)
        assert res.returncode != 0
        assert "top_p" in res.stderr
