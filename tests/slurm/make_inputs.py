#!/usr/bin/env python3
"""Inputs of the Slurm pipeline test, made here (nothing downloaded): a tiny random Qwen2.5-VL
(data_prep/make_tiny_model.py) nudged to answer in short digit strings, a few images, an eval CSV and
one config file with tiny sizes for the vote, train and eval stages.

Why the nudge: a plain random model never writes a parseable answer, so every pair would end without
a label and training would have nothing to learn from. Here the last decoder layer writes a large
constant into residual dimension 0 (one value channel with zero weights and bias 1, copied by o_proj),
and lm_head's column 0 then pushes every token except "0".."5", "x" and <|im_end|> far down. The other
columns stay random, so answers still depend on the images. With one new token per answer, "0"/"1"
are valid c_compare answers and "1".."5" valid c_score answers; "x" and "" are invalid ones.

usage: make_inputs.py OUT_DIR
"""
import csv
import json
import os
import sys

import numpy as np
import torch
import transformers as tf
from PIL import Image

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "data_prep"))
import make_tiny_model  # noqa: E402
N_IMAGES = 12  # 66 possible random pairs; the test votes 64
N_EVAL = 8     # images of the eval CSV


def nudge(model_dir):
    vocab = json.load(open(os.path.join(model_dir, "vocab.json")))
    # token -> weight on the constant dimension (larger = likelier): "0"/"1" answer c_compare, "1".."5"
    # c_score; "x" and <|im_end|> give invalid answers.
    keep = {vocab["0"]: 0.8, vocab["1"]: 0.8, vocab["x"]: 0.3, 151645: 0.3}
    keep.update({vocab[str(d)]: 0.6 for d in range(2, 6)})
    model = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        attn = model.model.language_model.layers[-1].self_attn
        attn.v_proj.weight[0].zero_()
        attn.v_proj.bias[0] = 1.0
        group = attn.config.num_attention_heads // attn.config.num_key_value_heads
        for head in range(group):  # the query heads that read kv head 0
            attn.o_proj.weight[:, head * attn.head_dim] = 0.0
            attn.o_proj.weight[0, head * attn.head_dim] = 50.0
        w = model.lm_head.weight
        w[:, 0] = -3.0
        for t, bias in keep.items():
            w[t, 1:] = torch.randn(w.shape[1] - 1, generator=g)
            w[t, 0] = bias
    model.save_pretrained(model_dir, safe_serialization=True)


def main(out):
    os.makedirs(out, exist_ok=True)
    model = os.path.join(out, "model")
    make_tiny_model.build(model, "qwen2_5_vl", 0, 56 * 56)
    nudge(model)

    images = os.path.join(out, "images")
    os.makedirs(images, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N_IMAGES):
        a = np.clip(20 + 20 * i + rng.normal(0, 25, (56, 56, 3)), 0, 255).astype(np.uint8)
        path = os.path.join(images, f"img{i}.png")
        Image.fromarray(a).save(path)
        rows.append((path, i))
    with open(os.path.join(out, "eval.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "score"])
        w.writerows(rows[:N_EVAL])

    with open(os.path.join(out, "tiny.cfg"), "w") as f:
        f.write(f"""# Tiny sizes for the Slurm CI test (4 CPU ranks, seconds per stage).
[vote]
samples = 3
seed = 1
reasoning = 0
max-new-tokens = 1
# one pair per batch, flushed at once: the test freezes the voters after the first flush, and each
# rank then finishes at most the pair it is voting before it stops.
pairs-per-batch = 1
flush-every = 1
dtype = fp32
threads = 1

[train]
steps = 6
pairs-per-step = 2
samples = 2
max-new-tokens = 1
reasoning = 0
micro-batch = 4
checkpoint-every = 1
keep-checkpoints = 2
lr = 1e-3
seed = 3
dtype = fp32
autocast = off
threads = 1

[eval]
samples = 4
dataset = csv:{out}/eval.csv
max-new-tokens = 1
dtype = fp32
""")
    print(out)


if __name__ == "__main__":
    main(sys.argv[1])
