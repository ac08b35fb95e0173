"""Tiny random Qwen2-VL / Qwen2.5-VL models built by transformers (fixed seed, nothing downloaded; the
builder is data_prep/tiny_qwen_vl.py), saved in both weight-key layouts, and helpers to run them next to
`evoq`. Shared by the model tests."""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from parity_precision import pin_fp32  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data_prep"))
import tiny_qwen_vl as tq  # noqa: E402

VOCAB = 1000
IMAGE, VSTART, VEND, VIDEO = 995, 993, 994, 996  # special ids moved inside the small vocabulary
SPECIAL = dict(image_token_id=IMAGE, vision_start_token_id=VSTART, vision_end_token_id=VEND, video_token_id=VIDEO)


def evoq_bin():
    return os.environ.get("EVOQ_BIN", os.path.join(os.environ.get("EVOQ_BUILD_DIR", "build"), "bin", "evoq"))


def make_model(arch, tied, seed=0):
    """The 1000-token model (eval mode), init widened by tiny_qwen_vl.widen; Qwen2.5-VL with 3 vision blocks."""
    return tq.make_model(arch, seed=seed, tied=tied, vocab_size=VOCAB, special=SPECIAL, widen_std=0.1,
                         vision=dict(depth=3) if arch == "qwen2_5_vl" else None)


def relayout(src_dir, dst_dir, keys, flat_config=False):
    """Copy of a save_pretrained directory with the weight keys in one layout: "hub" (visual.*, model.*:
    what transformers 5.23 and the hub checkpoints write) or "new" (model.visual.*,
    model.language_model.*: what transformers 4.52-4.57 wrote); optionally with a flat hub-style config."""
    os.makedirs(dst_dir, exist_ok=True)
    renamed = {}
    for k, v in load_file(os.path.join(src_dir, "model.safetensors")).items():
        if k.startswith("model.visual."):
            k = k[len("model."):]
        elif k.startswith("model.language_model."):
            k = "model." + k[len("model.language_model."):]
        if keys == "new":
            if k.startswith("visual."):
                k = "model." + k
            elif k.startswith("model."):
                k = "model.language_model." + k[len("model."):]
        renamed[k] = v.contiguous()
    save_file(renamed, os.path.join(dst_dir, "model.safetensors"), metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(src_dir, "config.json")))
    if flat_config:
        text = cfg.pop("text_config")
        rope = text.pop("rope_parameters")
        for k in ("model_type", "layer_types", "dtype"):
            text.pop(k, None)
        cfg.update(text)
        cfg["rope_theta"] = rope["rope_theta"]
        cfg["rope_scaling"] = {"type": "mrope", "mrope_section": rope["mrope_section"]}
    json.dump(cfg, open(os.path.join(dst_dir, "config.json"), "w"), indent=2)


def prompt_ids(grids, merge=2, text=(5, 6, 7), tail=(8, 9, 10, 11)):
    """ids: some text, then per image <vision_start> <image_pad>*n <vision_end>, then more text."""
    ids = list(text)
    for t, h, w in grids:
        ids += [VSTART] + [IMAGE] * (t * h * w // (merge * merge)) + [VEND]
    ids += list(tail)
    return ids


def make_inputs(grids, seed=1, ids=None):
    g = torch.Generator().manual_seed(seed)
    ids = prompt_ids(grids) if ids is None else ids
    out = {"input_ids": torch.tensor([ids], dtype=torch.int64)}
    if grids:
        n = sum(t * h * w for t, h, w in grids)
        out["pixel_values"] = torch.randn(n, 1176, generator=g)
        out["image_grid_thw"] = torch.tensor(grids, dtype=torch.int64)
    return out


def hf_logits(model, inputs):
    kwargs = dict(input_ids=inputs["input_ids"])
    if "attention_mask" in inputs:
        kwargs["attention_mask"] = inputs["attention_mask"]
    if "pixel_values" in inputs:
        kwargs.update(pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"],
                      mm_token_type_ids=(inputs["input_ids"] == IMAGE).int())
    with torch.no_grad():
        return model(**kwargs).logits.float().numpy()


def run_evoq(args, check=True):
    proc = subprocess.run(pin_fp32([evoq_bin()] + args), capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="2"))
    if check and proc.returncode != 0:
        raise AssertionError(f"evoq {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def evoq_logits(model_dir, inputs, tmp_path, extra=(), name="in"):
    path = os.path.join(str(tmp_path), f"{name}.safetensors")
    save_file({k: v.contiguous() for k, v in inputs.items()}, path)
    out = os.path.join(str(tmp_path), f"{name}.npy")
    run_evoq(["forward", "--model", model_dir, "--inputs", path, "--out", out, "--threads", "2"] + list(extra))
    return np.load(out)
