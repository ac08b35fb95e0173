#!/usr/bin/env python3
"""Builds a tiny random model of the real Qwen2.5-VL (or Qwen2-VL) architecture with the real Qwen2-VL
tokenizer, reproducibly (fixed seed, nothing downloaded), as a Hugging Face checkpoint directory that
both transformers and evoq load. Used by the demo and the benchmarks ("tiny" config).

usage: make_tiny_model.py OUT_DIR [--arch qwen2_5_vl|qwen2_vl] [--seed N] [--max-pixels N]
"""
import argparse
import json
import os
import shutil

import torch
import transformers as tf

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_DIR = os.path.join(HERE, "..", "tests", "data", "qwen2-vl-2b")
TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer_config.json", "LICENSE"]
SPECIAL = dict(image_token_id=151655, vision_start_token_id=151652, vision_end_token_id=151653,
               video_token_id=151656, bos_token_id=151643, eos_token_id=151645)
TEXT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=151936, rms_norm_eps=1e-6, max_position_embeddings=4096,
            rope_theta=1000000.0, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})


def make_model(arch="qwen2_5_vl", seed=0):
    """The tiny random model in memory (eval mode): fixed seed, real special token ids."""
    torch.manual_seed(seed)
    if arch == "qwen2_vl":
        config = tf.Qwen2VLConfig(text_config=dict(TEXT), tie_word_embeddings=True, **SPECIAL,
                                  vision_config=dict(depth=2, embed_dim=32, num_heads=2, hidden_size=64, mlp_ratio=2))
        model = tf.Qwen2VLForConditionalGeneration(config)
    else:
        config = tf.Qwen2_5_VLConfig(text_config=dict(TEXT), tie_word_embeddings=True, **SPECIAL,
                                     vision_config=dict(depth=4, hidden_size=32, num_heads=2, intermediate_size=48,
                                                        out_hidden_size=64, fullatt_block_indexes=[1, 3]))
        model = tf.Qwen2_5_VLForConditionalGeneration(config)
    model.eval()
    return model


def write_support_files(out_dir, max_pixels):
    """Tokenizer, image processor (with `max_pixels`) and sampling defaults next to the weights."""
    os.makedirs(out_dir, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(TOKENIZER_DIR, name), os.path.join(out_dir, name))
    with open(os.path.join(TOKENIZER_DIR, "preprocessor_config.json")) as f:
        pre = json.load(f)
    pre["max_pixels"] = max_pixels
    with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f, indent=2)
    gen = {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
           "repetition_penalty": 1.0, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)


def save(model, out_dir, max_pixels):
    """Writes `model` as a checkpoint directory that transformers and evoq load."""
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    write_support_files(out_dir, max_pixels)


def build(out_dir, arch, seed, max_pixels):
    model = make_model(arch, seed)
    save(model, out_dir, max_pixels)
    n = sum(p.numel() for p in model.parameters())
    print(f"{out_dir}: {arch}, {n / 1e6:.2f} M parameters, seed {seed}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--arch", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen2_vl"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-pixels", type=int, default=224 * 224)
    a = ap.parse_args()
    build(a.out_dir, a.arch, a.seed, a.max_pixels)
