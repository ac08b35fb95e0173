#!/usr/bin/env python3
"""Voting-workload generation benchmark: evoq generate vs transformers generate.

Workload (issue 4): two 448x448 images + c_compare + reasoning suffix, K samples of exactly
--new-tokens new tokens (stop ids disabled on both sides so every sample runs to the length), on a
tiny random Qwen2-VL and the project's "small" Qwen2.5-VL (bench/configs/small), random weights
built with transformers. Each side runs in its own process with
the same thread count; wall time, tokens/s and peak RSS (ru_maxrss of the child) are reported, and
evoq's split between prefill and decode.

usage: bench/bench_generate.py [--evoq build/bin/evoq] [--threads 2] [--k 8 32] [--new-tokens 128]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
QWEN = os.path.join(ROOT, "tests", "data", "qwen2-vl-2b")
sys.path.insert(0, os.path.join(ROOT, "data_prep"))  # tiny_qwen_vl, imported where used (it imports torch)

COMPARE = ("You are performing an image quality assessment task. Compare the two images and decide which one has "
           "better perceptual quality. Answer strictly with the index of the better image: 0 if the first image is "
           "better, or 1 if the second image is better.")
SUFFIX = ("You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
          "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in boxed{}.")
PROMPT = COMPARE + " " + SUFFIX
# "tiny": a random Qwen2-VL of data_prep/tiny_qwen_vl.py; "small" is the project's benchmark config
# (bench/configs/small: Qwen2.5-VL, 0.42B parameters).
SMALL = os.path.join(HERE, "configs", "small")


def build(name, d):
    import tiny_qwen_vl as tq
    if name == "small":
        import transformers as tf
        model = tq.make_model(config=tf.AutoConfig.from_pretrained(SMALL))
    elif name == "tiny":
        model = tq.make_model("qwen2_vl", max_position_embeddings=8192)
    else:
        raise SystemExit(f"unknown config {name!r} (tiny or small)")
    # No stop ids: every sample generates exactly --new-tokens tokens on both sides.
    tq.save_checkpoint(model, d, tokenizer_dir=QWEN,
                       files=tq.TOKENIZER_FILES + ("chat_template.json", "preprocessor_config.json"),
                       generation={"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "eos_token_id": []})


def images(d):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        p = os.path.join(d, f"bench{i}.png")
        Image.fromarray(rng.integers(0, 256, (448, 448, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


HF_CHILD = r"""
import json, sys, time, torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessor
d, k, n, threads, prompt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
imgs = sys.argv[6:]
torch.set_num_threads(threads)
model = AutoModelForImageTextToText.from_pretrained(d, dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(d)
proc = Qwen2VLImageProcessor.from_pretrained(d)
# The Instruct chat template (tests/data holds the base model's template, which has no roles).
text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        + "<|vision_start|><|image_pad|><|vision_end|>" * len(imgs) + prompt + "<|im_end|>\n<|im_start|>assistant\n")
out = proc(images=[Image.open(p).convert("RGB") for p in imgs], return_tensors="pt")
parts = text.split("<|image_pad|>")
text = parts[0]
for i, g in enumerate(out["image_grid_thw"]):
    text += "<|image_pad|>" * int(g.prod() // 4) + parts[i + 1]
ids = tok(text, return_tensors="pt")["input_ids"]
t0 = time.perf_counter()
with torch.no_grad():
    seq = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=out["pixel_values"],
                         image_grid_thw=out["image_grid_thw"], mm_token_type_ids=(ids == 151655).int(), do_sample=True, num_return_sequences=k,
                         max_new_tokens=n, min_new_tokens=n, temperature=1.0, top_k=0, top_p=1.0,
                         eos_token_id=None, pad_token_id=151643)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "new_tokens": int((seq.shape[1] - ids.shape[1]) * seq.shape[0]),
                  "prompt_tokens": int(ids.shape[1])}))
"""


def run_child(cmd):
    """Runs cmd; returns (stdout, peak RSS in MiB of that child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {res.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return res.stdout, max(peak, before) / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--evoq", default=os.path.join(ROOT, "build", "bin", "evoq"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--configs", nargs="+", default=["tiny", "small"])
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        imgs = images(tmp)
        for name in args.configs:
            d = os.path.join(tmp, name)
            build(name, d)
            for k in args.k:
                # Each side runs under its own small python wrapper, whose RUSAGE_CHILDREN peak is that side's.
                evoq_cmd = [args.evoq, "generate", "--model", d, "--prompt", PROMPT, "--samples", str(k), "--seed", "1",
                            "--max-new-tokens", str(args.new_tokens), "--threads", str(args.threads), "--json",
                            "--ignore-stop"]
                for p in imgs:
                    evoq_cmd += ["--image", p]
                wrap = [sys.executable, "-c",
                        "import resource,subprocess,sys,json;r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
                        "sys.stderr.write(r.stderr);print(r.stdout.strip());"
                        "print(json.dumps({'peak_mib':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024}));"
                        "sys.exit(r.returncode)"]
                t0 = time.perf_counter()
                out, _ = run_child(wrap + evoq_cmd)
                ours_wall = time.perf_counter() - t0
                lines = out.strip().splitlines()
                ours, ours_peak = json.loads(lines[0]), json.loads(lines[1])["peak_mib"]
                ours_tokens = sum(len(s["tokens"]) for s in ours["samples"])
                out, _ = run_child(wrap + [sys.executable, "-c", HF_CHILD, d, str(k), str(args.new_tokens),
                                           str(args.threads), PROMPT] + imgs)
                lines = out.strip().splitlines()
                hf, hf_peak = json.loads(lines[0]), json.loads(lines[1])["peak_mib"]
                row = dict(config=name, k=k, prompt_tokens=ours["prompt_tokens"], evoq_tokens=ours_tokens,
                           evoq_s=ours["seconds"], evoq_tok_s=ours_tokens / ours["seconds"],
                           evoq_prefill_s=ours["prefill_seconds"], evoq_decode_s=ours["decode_seconds"],
                           evoq_peak_mib=ours_peak, hf_tokens=hf["new_tokens"], hf_s=hf["seconds"],
                           hf_tok_s=hf["new_tokens"] / hf["seconds"], hf_peak_mib=hf_peak)
                row["speedup"] = row["evoq_tok_s"] / row["hf_tok_s"]
                row["memory_ratio"] = row["evoq_peak_mib"] / row["hf_peak_mib"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| config | K | prompt tok | evoq tok/s | transformers tok/s | speed-up | evoq prefill/decode s | "
          "evoq peak MiB | transformers peak MiB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['k']} | {r['prompt_tokens']} | {r['evoq_tok_s']:.1f} | {r['hf_tok_s']:.1f} | "
              f"{r['speedup']:.2f}x | {r['evoq_prefill_s']:.2f} / {r['evoq_decode_s']:.2f} | {r['evoq_peak_mib']:.0f} | "
              f"{r['hf_peak_mib']:.0f} | {r['memory_ratio']:.2f} |")


if __name__ == "__main__":
    main()
