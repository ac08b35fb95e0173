#!/usr/bin/env python3
"""Builds a tiny random model of the real Qwen2.5-VL (or Qwen2-VL) architecture with the real Qwen2-VL
tokenizer, reproducibly (fixed seed, nothing downloaded), as a Hugging Face checkpoint directory that
both transformers and evoq load. Used by the demo and the benchmarks ("tiny" config). The builder itself
is data_prep/tiny_qwen_vl.py; this is its "tiny" variant and command line.

usage: make_tiny_model.py OUT_DIR [--arch qwen2_5_vl|qwen2_vl] [--seed N] [--max-pixels N]
"""
import argparse

import tiny_qwen_vl as tq  # same directory (on sys.path for the script and for every importer of this one)

TOKENIZER_FILES = tq.TOKENIZER_FILES + ("LICENSE",)
SPECIAL = dict(tq.SPECIAL, bos_token_id=151643, eos_token_id=151645)
GENERATION = {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
              "repetition_penalty": 1.0, "temperature": 1.0, "top_p": 1.0, "top_k": 0}


def make_model(arch="qwen2_5_vl", seed=0):
    """The tiny random model in memory (eval mode): fixed seed, real special token ids, default init."""
    return tq.make_model(arch, seed=seed, special=SPECIAL, max_position_embeddings=4096,
                         vision=dict(depth=4, fullatt_block_indexes=[1, 3]) if arch == "qwen2_5_vl" else None)


def support(max_pixels):
    """The support files: tokenizer, image processor (with `max_pixels`) and sampling defaults."""
    return dict(files=TOKENIZER_FILES, preprocessor=dict(max_pixels=max_pixels), generation=GENERATION, indent=2)


def write_support_files(out_dir, max_pixels):
    """Tokenizer, image processor (with `max_pixels`) and sampling defaults next to the weights."""
    tq.write_support_files(out_dir, **support(max_pixels))


def save(model, out_dir, max_pixels):
    """Writes `model` as a checkpoint directory that transformers and evoq load."""
    tq.save_checkpoint(model, out_dir, **support(max_pixels))


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
