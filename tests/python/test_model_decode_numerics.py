"""Teacher-forced log-probs of evoq's KV-cached decode equal the full forward's (what GRPO's update
recomputes), in fp32 and in bf16, on a tiny random Qwen2.5-VL whose q/k projections are scaled up so
that attention scores are large (|s| ~ 10-40, as in trained LLMs): there, rounding QK^T to bf16 before
the softmax (half an ulp = 0.03-0.06) moves the log-probs measurably, while SDPA (prefill, training)
keeps the scores in fp32.

Oracles: transformers' forward on prompt + continuation (fp32, and bf16 for bf16's own error), and
evoq's own full forward in bf16 (itself checked against transformers in fp32 by test_model_parity.py
and in bf16 by test_model_checkpoints.py)."""
import numpy as np
import pytest
import torch

import qwen_tiny as qt

torch.set_num_threads(2)
CONT = [17, 400, 3, 999, 42, 5, 123, 321, 77, 640, 8, 901, 250, 33, 12, 700]


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = qt.make_model("qwen2_5_vl", tied=True, seed=5)
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj):
                proj.weight.mul_(6.0)
                proj.bias.mul_(6.0)
    root = tmp_path_factory.mktemp("numerics")
    model.save_pretrained(str(root / "saved"))
    qt.relayout(str(root / "saved"), str(root / "m"), keys="new")
    inputs = qt.make_inputs([(1, 6, 8), (1, 16, 16)], seed=2)
    prompt_len = inputs["input_ids"].shape[1]
    full = dict(inputs, input_ids=torch.cat([inputs["input_ids"], torch.tensor([CONT])], 1))

    def teacher_forced(logits):  # log p(CONT[i] | prompt, CONT[:i]) from the rows predicting CONT
        return log_softmax(logits)[np.arange(len(CONT)), CONT]

    hf32 = qt.hf_logits(model, full)[0][prompt_len - 1:-1]
    bf = model.to(torch.bfloat16)
    hf16 = qt.hf_logits(bf, dict(full, pixel_values=full["pixel_values"].bfloat16()))[0][prompt_len - 1:-1]
    # Score sizes of the first layer at the prompt's positions, for the record.
    return dict(dir=str(root / "m"), inputs=inputs, full=full, prompt_len=prompt_len, tf=teacher_forced,
                ref=teacher_forced(hf32), hf16=teacher_forced(hf16))


def evoq_decode(s, tmp_path, dtype, copies=3):
    out = qt.evoq_logits(s["dir"], s["inputs"], tmp_path, name=f"dec_{dtype}",
                         extra=["--continue", ",".join(map(str, CONT)), "--copies", str(copies), "--dtype", dtype])
    return s["tf"](out[:-1])  # rows: prefill's last logits, then one per fed token; the last predicts nothing


def evoq_full(s, tmp_path, dtype):
    out = qt.evoq_logits(s["dir"], s["full"], tmp_path, name=f"full_{dtype}", extra=["--all-positions", "--dtype", dtype])
    return s["tf"](out[s["prompt_len"] - 1:-1])


def test_fp32_decode_logprobs_equal_the_full_forward(setup, tmp_path):
    dec = evoq_decode(setup, tmp_path, "fp32")
    err = np.abs(dec - setup["ref"]).max()
    print(f"fp32 decode vs transformers fp32: max |d log p| {err:.2e} (log-probs {setup['ref'].min():.1f}..{setup['ref'].max():.1f})")
    assert err < 1e-4, err


def test_bf16_decode_logprobs_equal_the_full_forward(setup, tmp_path):
    ref, hf16 = setup["ref"], setup["hf16"]
    dec, full = evoq_decode(setup, tmp_path, "bf16"), evoq_full(setup, tmp_path, "bf16")
    hf_err = np.abs(hf16 - ref).max()
    dec_err = np.abs(dec - ref).max()
    full_err = np.abs(full - ref).max()
    gap = np.abs(dec - full)
    print(f"bf16 max |d log p| vs fp32: transformers {hf_err:.3e}, evoq full forward {full_err:.3e}, evoq decode "
          f"{dec_err:.3e}; decode vs evoq full forward: max {gap.max():.3e} mean {gap.mean():.3e}, "
          f"mean signed {np.mean(dec - full):+.3e}")
    # The decode's bf16 error is bf16's own (transformers' bf16 forward as the yardstick) ...
    assert dec_err <= 1.5 * hf_err + 0.02, (dec_err, hf_err)
    # ... and the update's log-probs (evoq's full forward) are those of the rollout.
    assert gap.max() <= 1.5 * hf_err + 0.02, (gap.max(), hf_err)
