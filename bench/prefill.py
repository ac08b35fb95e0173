"""Prefill latency: one 448x448 image + the c_score prompt (--workload score) or two 448x448 images +
the c_compare prompt (--workload compare), our `evoq forward --repeat` vs transformers
(same image, same prompt ids, same thread count), on the tiny test config and the "small" config
(bench/configs/small/config.json, random weights, fixed seed). Prints a Markdown table row per config.

usage: python bench/prefill.py [--threads 2] [--repeat 3] [--configs tiny,small] [--workload score|compare]"""
import argparse
import os
import resource
import subprocess
import sys
import time

import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
sys.path.insert(0, os.path.join(ROOT, "data_prep"))
import tiny_qwen_vl as tq  # noqa: E402

C_SCORE = ("You are doing the image quality assessment task. Here is the question: What is your overall rating on "
           "the quality of this picture? The rating should be a float between 1 and 5, rounded to two decimal places, "
           "with 1 representing very poor quality and 5 representing excellent quality.")
C_COMPARE = ("You are performing an image quality assessment task. Compare the two images and decide which one has "
             "better perceptual quality. Answer strictly with the index of the better image: 0 if the first image is "
             "better, or 1 if the second image is better.")


def build_model(name, out):
    """The random model (seed 0) of config `name`, saved to `out` unless a config.json is there already."""
    import transformers as tf
    if name == "small":
        model = tq.make_model(config=tf.AutoConfig.from_pretrained(os.path.join(ROOT, "bench", "configs", "small")))
    else:  # tiny: transformers' rms_norm_eps, 3 vision blocks
        model = tq.make_model(rms_norm_eps=None, vision=dict(depth=3))
    if not os.path.exists(os.path.join(out, "config.json")):
        tq.save_checkpoint(model, out, tokenizer_dir=os.path.join(DATA, "qwen2-vl-2b"),
                           files=tq.TOKENIZER_FILES + ("chat_template.json", "preprocessor_config.json"))
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--configs", default="tiny,small")
    ap.add_argument("--workload", default="score", choices=["score", "compare"])
    ap.add_argument("--evoq", default=os.path.join(ROOT, "build", "bin", "evoq"))
    ap.add_argument("--workdir", default=os.path.expanduser("~/.cache/evoq/bench"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoImageProcessor, AutoTokenizer

    img = os.path.join(args.workdir, "img448.png")
    os.makedirs(args.workdir, exist_ok=True)
    Image.open(os.path.join(DATA, "csiq-sample", "1600.BLUR.2.png")).convert("RGB").resize((448, 448)).save(img)
    img2 = os.path.join(args.workdir, "img448b.png")
    Image.open(os.path.join(DATA, "csiq-sample", "1600.AWGN.3.png")).convert("RGB").resize((448, 448)).save(img2)
    images = [img] if args.workload == "score" else [img, img2]
    prompt = C_SCORE if args.workload == "score" else C_COMPARE
    print(f"workload: {args.workload} ({len(images)} image(s) 448x448)")
    print("| config | params | tokens | transformers prefill (ms) | evoq prefill (ms) | ratio | evoq peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs.split(","):
        d = os.path.join(args.workdir, name)
        model = build_model(name, d)
        params = sum(p.numel() for p in model.parameters())
        proc = AutoImageProcessor.from_pretrained(d, backend="pil")
        feats = proc(images=[Image.open(p) for p in images], return_tensors="pt")
        tok = AutoTokenizer.from_pretrained(d)
        vision = "".join("<|vision_start|>" + "<|image_pad|>" * int(g.prod() // 4) + "<|vision_end|>"
                         for g in feats["image_grid_thw"])
        chat = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + vision + prompt +
                "<|im_end|>\n<|im_start|>assistant\n")
        ids = torch.tensor([tok(chat, add_special_tokens=False)["input_ids"]])
        kw = dict(input_ids=ids, pixel_values=feats["pixel_values"], image_grid_thw=feats["image_grid_thw"],
                  mm_token_type_ids=(ids == 151655).int(), logits_to_keep=1)
        times = []
        with torch.no_grad():
            model(**kw)
            for _ in range(args.repeat):
                t = time.perf_counter()
                model(**kw)
                times.append((time.perf_counter() - t) * 1000)
        hf_ms = sorted(times)[len(times) // 2]
        del model
        image_args = [a for p in images for a in ("--image", p)]
        res = subprocess.run([args.evoq, "forward", "--model", d, *image_args, "--prompt", prompt,
                              "--out", os.path.join(args.workdir, "o.npy"), "--threads", str(args.threads),
                              "--repeat", str(args.repeat)], capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
        if res.returncode != 0:
            sys.exit(res.stderr)
        fields = res.stdout.split()
        ours, rss = float(fields[1]), float(fields[5])
        print(f"| {name} | {params / 1e6:.0f}M | {ids.shape[1]} | {hf_ms:.1f} | {ours:.1f} | {ours / hf_ms:.2f} | {rss:.0f} |")
    print(f"\npeak RSS of the transformers (python) process, which also built and saved the models: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
