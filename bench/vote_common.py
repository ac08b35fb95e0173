"""What the two voting anchors (bench/vote_anchor_transformers.py, bench/vote_anchor_vllm.py) share, written
as a researcher would write it next to either engine: the paper's compare prompt, a plain answer parser,
Eq. 1 and the per-sample random image order. Standard library only (each anchor runs in its engine's venv).
"""
import json
import random
import re

COMPARE = ("You are performing an image quality assessment task. Compare the two images and decide which one has "
           "better perceptual quality. Answer strictly with the index of the better image: 0 if the first image is "
           "better, or 1 if the second image is better.")
REASONING = ("You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
             "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in boxed{}.")
# The vote's sampling (as `evoq vote`: gen/vote_sampling.cpp); stop ids from the model's generation_config.json.
TEMPERATURE, TOP_P, TOP_K = 1.0, 1.0, 50
BOX = re.compile(r"boxed\{([^{}]*)\}")


def prompt_text(reasoning):
    return COMPARE + (" " + REASONING if reasoning else "")


def chat_text(user_text, image_pads):
    """The Qwen2-VL Instruct chat prompt: one vision block per image (image_pads[i] pad tokens) before the text."""
    s = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    for n in image_pads:
        s += "<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>"
    return s + user_text + "<|im_end|>\n<|im_start|>assistant\n"


def parse_vote(text):
    """0 or 1 from the last boxed{...}; None when there is none or it is not 0/1."""
    boxes = BOX.findall(text)
    if not boxes:
        return None
    a = boxes[-1].strip()
    return int(a) if a in ("0", "1") else None


def swap_split(seed, pair_index, k):
    """How many of the pair's K samples show the images in the original order, how many swapped
    (each sample's order drawn at random, paper section 3.1)."""
    rng = random.Random(seed * 1_000_003 + pair_index)
    swapped = sum(rng.random() < 0.5 for _ in range(k))
    return k - swapped, swapped


def majority_vote(votes_first, votes_second):
    """Eq. 1: 1 / 0.5 / 0, or None without a single valid vote."""
    if votes_first + votes_second == 0:
        return None
    return 1.0 if votes_first > votes_second else 0.0 if votes_first < votes_second else 0.5


def tally(texts_original, texts_swapped):
    """Votes for the original first / second image and the invalid answers of one pair."""
    first = second = invalid = 0
    for texts, swapped in ((texts_original, False), (texts_swapped, True)):
        for t in texts:
            v = parse_vote(t)
            if v is None:
                invalid += 1
            elif (v == 0) != swapped:
                first += 1
            else:
                second += 1
    return first, second, invalid


def load_pairs(path):
    """[[path_i, path_j], ...] written by bench/bench_vote_job.py."""
    return json.load(open(path))


def anchor_arguments(default_dtype):
    """The options every anchor takes (the job's model, pairs, K, length, dtype, threads, prompt, seed)."""
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("-K", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default=default_dtype)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reasoning", type=int, default=1)
    ap.add_argument("--seed", type=int, default=3)
    return ap
