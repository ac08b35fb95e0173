"""Teacher-forced log-probs of evoq's KV-cached decode equal the full forward's (what GRPO's update
recomputes), in fp32 and within bf16's own error in bf16, on a tiny random Qwen2.5-VL with the real
head_dim (128) and q/k projections scaled so that attention scores are large (|s| up to ~40).

Oracles: transformers' forward on prompt + continuation in fp32 (and in bf16, whose error against the
fp32 one is the yardstick of "bf16 tolerance"), and evoq's own bf16 full forward (itself checked against
transformers by test_model_parity.py in fp32 and test_model_checkpoints.py in bf16). The attention op
alone (fp32 scores as SDPA's, and what rounding the scores to bf16 would cost) is tested exactly in
tests/unit/model/test_model.cpp (DecodeAttention)."""
import numpy as np
import pytest
import torch

import qwen_tiny as qt

torch.set_num_threads(2)
CONT = [17, 400, 3, 999, 42, 5, 123, 321, 77, 640, 8, 901, 250, 33, 12, 700]
HEAD_DIM = 128


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def make_model(qk_scale=4.0, seed=5):
    import transformers as tf
    torch.manual_seed(seed)
    # qwen_tiny's former TEXT_ARGS (2 layers, the 1000-token vocabulary) with the real head_dim.
    text = dict(hidden_size=2 * HEAD_DIM, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                intermediate_size=256, vocab_size=qt.VOCAB, rms_norm_eps=1e-6,
                rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]})
    config = tf.Qwen2_5_VLConfig(text_config=text, tie_word_embeddings=True, **qt.SPECIAL,
                                 vision_config=dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=48,
                                                    out_hidden_size=2 * HEAD_DIM, fullatt_block_indexes=[1]))
    model = tf.Qwen2_5_VLForConditionalGeneration(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.05)
            if p.dim() == 1 and ("norm" in name or "ln_q" in name) and name.endswith("weight"):
                p.add_(1.0)
        for layer in model.model.language_model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj):
                proj.weight.mul_(qk_scale)
                proj.bias.mul_(qk_scale)
    return model.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = make_model()
    root = tmp_path_factory.mktemp("numerics")
    model.save_pretrained(str(root / "saved"))
    qt.relayout(str(root / "saved"), str(root / "m"), keys="new")
    inputs = qt.make_inputs([(1, 6, 8), (1, 16, 16)], seed=2)
    prompt_len = inputs["input_ids"].shape[1]
    full = dict(inputs, input_ids=torch.cat([inputs["input_ids"], torch.tensor([CONT])], 1))

    def teacher_forced(logits):  # log p(CONT[i] | prompt, CONT[:i]) from the rows that predict CONT
        return log_softmax(logits)[np.arange(len(CONT)), CONT]

    ref = teacher_forced(qt.hf_logits(model, full)[0][prompt_len - 1:-1])
    bf = model.to(torch.bfloat16)
    hf16 = teacher_forced(qt.hf_logits(bf, dict(full, pixel_values=full["pixel_values"].bfloat16()))[0][prompt_len - 1:-1])
    return dict(dir=str(root / "m"), inputs=inputs, full=full, prompt_len=prompt_len, tf=teacher_forced, ref=ref,
                hf16=hf16)


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
    print(f"fp32 decode vs transformers fp32: max |d log p| {err:.2e}")
    assert err < 1e-4, err


def test_bf16_decode_logprobs_equal_the_full_forward(setup, tmp_path):
    ref, hf16 = setup["ref"], setup["hf16"]
    dec, full = evoq_decode(setup, tmp_path, "bf16"), evoq_full(setup, tmp_path, "bf16")
    hf_err, dec_err, gap = np.abs(hf16 - ref), np.abs(dec - ref), np.abs(dec - full)
    print(f"bf16 |d log p| vs fp32 (mean / max): transformers {hf_err.mean():.4f} / {hf_err.max():.4f}, evoq decode "
          f"{dec_err.mean():.4f} / {dec_err.max():.4f}, evoq full forward {np.abs(full - ref).mean():.4f}; decode vs "
          f"evoq full forward {gap.mean():.4f} / {gap.max():.4f} (signed mean {np.mean(dec - full):+.4f})")
    # The decode's bf16 error is bf16's own, transformers' bf16 forward being the yardstick ...
    assert dec_err.mean() <= 1.5 * hf_err.mean() + 0.005, (dec_err.mean(), hf_err.mean())
    assert dec_err.max() <= 1.5 * hf_err.max() + 0.01, (dec_err.max(), hf_err.max())
    # ... and the rollout's log-probs differ from the update's (evoq's full forward) by less than that.
    assert gap.max() <= hf_err.max(), (gap.max(), hf_err.max())
