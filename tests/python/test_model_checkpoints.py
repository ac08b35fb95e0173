"""Checkpoint handling: our writer's output loads in transformers with identical weights and logits
(round trip, fp32 and bf16), and bad checkpoints give one clear line naming the problem."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import qwen_tiny as qt

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = qt.make_model("qwen2_5_vl", tied=False)
    d = str(tmp_path_factory.mktemp("orig") / "m")
    model.save_pretrained(d)
    return model, d


@pytest.mark.parametrize("layout", ["new", "hub"])
def test_round_trip_through_our_writer(saved, layout, tmp_path):
    import transformers as tf
    model, d = saved
    src = d
    if layout == "hub":
        src = str(tmp_path / "hub")
        qt.relayout(d, src, keys="hub", flat_config=True)
    else:
        src = str(tmp_path / "new")
        qt.relayout(d, src, keys="new")
    out = str(tmp_path / "conv")
    qt.run_evoq(["convert", "--model", src, "--out", out, "--dtype", "fp32"])
    reloaded = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(out).eval()
    a, b = model.state_dict(), reloaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    inputs = qt.make_inputs([(1, 10, 14)])
    assert np.abs(qt.hf_logits(model, inputs) - qt.hf_logits(reloaded, inputs)).max() == 0.0


def test_bf16_save_loads_in_transformers(saved, tmp_path):
    import transformers as tf
    model, d = saved
    out = str(tmp_path / "bf16")
    qt.run_evoq(["convert", "--model", d, "--out", out, "--dtype", "bf16"])
    reloaded = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(out, dtype=torch.bfloat16)
    for k, v in model.state_dict().items():
        assert torch.equal(v.to(torch.bfloat16), reloaded.state_dict()[k]), k
    assert json.load(open(os.path.join(out, "config.json")))["dtype"] == "bfloat16"


def _forward_error(model_dir, tmp_path):
    inputs = qt.make_inputs([(1, 6, 8)])
    path = str(tmp_path / "in.safetensors")
    save_file(inputs, path)
    proc = qt.run_evoq(["forward", "--model", model_dir, "--inputs", path, "--out", str(tmp_path / "o.npy")],
                       check=False)
    assert proc.returncode != 0
    return proc.stderr.strip()


def _broken_copy(d, tmp_path, edit_tensors=None, edit_config=None):
    out = str(tmp_path / "broken")
    shutil.copytree(d, out)
    if edit_tensors:
        t = load_file(os.path.join(out, "model.safetensors"))
        edit_tensors(t)
        save_file(t, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    if edit_config:
        cfg = json.load(open(os.path.join(out, "config.json")))
        edit_config(cfg)
        json.dump(cfg, open(os.path.join(out, "config.json"), "w"))
    return out


def test_missing_tensor(saved, tmp_path):
    key = "model.layers.1.mlp.up_proj.weight"  # transformers 5 saves the hub layout
    d = _broken_copy(saved[1], tmp_path, edit_tensors=lambda t: t.pop(key))
    err = _forward_error(d, tmp_path)
    assert "missing tensor model.language_model.layers.1.mlp.up_proj.weight" in err, err


def test_wrong_shape(saved, tmp_path):
    key = "visual.blocks.0.attn.qkv.weight"

    def edit(t):
        t[key] = t[key][:-1].contiguous()
    err = _forward_error(_broken_copy(saved[1], tmp_path, edit_tensors=edit), tmp_path)
    assert key in err and "shape" in err, err


def test_unexpected_tensor(saved, tmp_path):
    def edit(t):
        t["model.visual.blocks.9.norm1.weight"] = torch.ones(32)
    err = _forward_error(_broken_copy(saved[1], tmp_path, edit_tensors=edit), tmp_path)
    assert "unexpected tensor model.visual.blocks.9.norm1.weight" in err, err


def test_unknown_model_type(saved, tmp_path):
    err = _forward_error(_broken_copy(saved[1], tmp_path, edit_config=lambda c: c.update(model_type="qwen3_vl")),
                         tmp_path)
    assert "unsupported model_type 'qwen3_vl'" in err, err
    assert len(err.splitlines()) == 1, err


def test_bf16_forward_as_close_as_transformers_bf16(saved, tmp_path):
    """bf16 at load time: our error against the fp32 logits is of the same size as transformers' own
    bf16 error (rounding differs op by op, so bit equality is not expected)."""
    import copy
    model, d = saved
    inputs = qt.make_inputs([(1, 10, 14)])
    ref = qt.hf_logits(model, inputs)[0, -1]
    hf16 = copy.deepcopy(model).to(torch.bfloat16)
    hf_err = np.abs(qt.hf_logits(hf16, dict(inputs, pixel_values=inputs["pixel_values"].bfloat16()))[0, -1] - ref).max()
    ours = qt.evoq_logits(d, inputs, tmp_path, extra=["--dtype", "bf16"], name="bf16")
    our_err = np.abs(ours - ref).max()
    print(f"bf16 max-abs vs fp32: transformers {hf_err:.3e}, evoq {our_err:.3e}")
    assert our_err <= 2 * hf_err + 1e-2, (our_err, hf_err)
