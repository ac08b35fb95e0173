#!/usr/bin/env python3
"""Builds evoq's embedded default model: the tiny random Qwen2.5-VL of make_tiny_model.py followed by a
structured initialisation of its vision tower (band-energy shares of the patches, image mean) and a
ridge quality readout on random GELU features of those shares fitted on the training references, then a
short supervised warm-up (cold start) on synthetic distortions of the training references of
data/cq100-mini, so that it answers the paper's c_compare and c_score prompts in the expected format
("<think>...</think>\\boxed{...}"); the targets follow the tower's own quality estimate (so the LM
learns what the tower sees; the tower sees the true level only in part). Measured (docs/MODEL.md):
weak, imperfect perception on held-out references. Reproducible: fixed seeds, fixed torch thread count,
fixed data order (same bytes on the same machine). Nothing is downloaded.

The last HELD_OUT references (sorted by name) are never used for training; they are the demo's
held-out split. Writes OUT_DIR (checkpoint that transformers and evoq load) and OUT_DIR/warmup.json
(settings, split, and format validity / accuracy measured by greedy decoding on held-out pairs).

usage: make_default_model.py OUT_DIR [--distort BIN] [--seed S] [--train-refs N] [--no-eval] (see --help)
"""
import argparse
import csv
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import make_tiny_model  # noqa: E402  (same directory)

REFS_DIR = os.path.join(ROOT, "data", "cq100-mini")
HELD_OUT = 6  # the last 6 references: scripts/demo.sh's held-out split
PAD = 151643  # <|endoftext|>
IMAGE_PAD = 151655  # <|image_pad|>
THREADS = 1  # 2 threads ran 4-8x slower than 1 on this shared 2-core machine
SYSTEM = "You are a helpful assistant."
# The paper's prompts exactly as evoq sends them (include/evoq/gen/prompts.h).
COMPARE_PROMPT = ("You are performing an image quality assessment task. Compare the two images and decide which "
                  "one has better perceptual quality. Answer strictly with the index of the better image: 0 if the "
                  "first image is better, or 1 if the second image is better.")
SCORE_PROMPT = ("You are doing the image quality assessment task. Here is the question: What is your overall "
                "rating on the quality of this picture? The rating should be a float between 1 and 5, rounded to "
                "two decimal places, with 1 representing very poor quality and 5 representing excellent quality.")
SUFFIX = ("You FIRST think about the reasoning process as an internal monologue and then provide the final "
          "answer. The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE "
          "put in boxed{}.")
# Short fixed reasoning: the decision is the one token inside the box, and answers stay ~20 tokens.
COMPARE_REASON = "I compare the two images."
SCORE_REASON = "I rate this one image."
TRAIN_TYPES = "gaussian_blur,white_noise,jpeg,pixelate"
EVAL_TYPES, EVAL_LEVELS, EVAL_SEED = "gaussian_blur,white_noise,jpeg", "1,3,5", 7  # as scripts/demo.sh


def builder_hash():
    """sha256 of this script, make_tiny_model.py and tiny_qwen_vl.py: scripts/demo.sh rebuilds a cached model
    whose warmup.json records another value."""
    import hashlib
    h = hashlib.sha256()
    for name in ("make_default_model.py", "make_tiny_model.py", "tiny_qwen_vl.py"):
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def default_distort():
    build = os.environ.get("EVOQ_BUILD_DIR", os.path.join(ROOT, "build"))
    return os.environ.get("EVOQ_DISTORT", os.path.join(build, "bin", "distort"))


def split_references():
    names = sorted(f for f in os.listdir(REFS_DIR) if f.endswith(".png"))
    return names[:-HELD_OUT], names[-HELD_OUT:]


def distort(binary, names, out_dir, types, levels, seed):
    """Distorted copies with known level via data_prep/distort; rows of its manifest, in file order."""
    refs = os.path.join(out_dir, "refs")
    os.makedirs(refs)
    for n in names:
        shutil.copy(os.path.join(REFS_DIR, n), refs)
    subprocess.run([binary, "--input", refs, "--out", os.path.join(out_dir, "distorted"), "--preset", "grid",
                    "--types", types, "--levels", levels, "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out_dir, "distorted", "manifest.csv")) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["level"] = int(r["level"])
    return sorted(rows, key=lambda r: r["path"])


def level_to_score(level):
    """True level 1..5 -> target score in [1, 5] (less distortion, higher score): 4.6, 3.8, ..., 1.4."""
    return 4.6 - 0.8 * (level - 1)


def image_tokens(ids):
    """mm_token_type_ids for transformers: without it, Qwen2.5-VL gives the image tokens text positions
    instead of their M-RoPE (t, h, w) positions, and a model trained that way disagrees with evoq (and
    with itself when called with it)."""
    return (ids == IMAGE_PAD).int()


def hidden_states(model, ids, pix, grid, mask=None):
    """The LM's last hidden states [B, L, D] as the warm-up and the probes compute them."""
    return model.model(input_ids=ids, attention_mask=mask, pixel_values=pix, image_grid_thw=grid,
                       mm_token_type_ids=image_tokens(ids)).last_hidden_state


def chat_text(n_images, prompt):
    user = "<|vision_start|><|image_pad|><|vision_end|>" * n_images
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}{prompt}<|im_end|>\n"
            "<|im_start|>assistant\n")


def answer(reason, value):
    return f"<think>{reason}</think>\\boxed{{{value}}}"


class Encoder:
    """Prompt ids (image pads expanded as evoq and transformers do) and cached image tensors."""

    def __init__(self, model_dir):
        import transformers as tf
        self.tok = tf.AutoTokenizer.from_pretrained(model_dir)
        self.proc = tf.AutoImageProcessor.from_pretrained(model_dir, backend="pil")
        self.pad = self.tok.convert_tokens_to_ids("<|image_pad|>")
        self.end = self.tok.convert_tokens_to_ids("<|im_end|>")
        self.images = {}

    def image(self, path):
        if path not in self.images:
            from PIL import Image
            out = self.proc(images=[Image.open(path).convert("RGB")], return_tensors="pt")
            self.images[path] = (out["pixel_values"], out["image_grid_thw"])
        return self.images[path]

    def prompt(self, paths, prompt):
        pix, grids = zip(*(self.image(p) for p in paths))
        ids = []
        counts = iter(int(g.prod()) // 4 for g in grids)
        for t in self.tok(chat_text(len(paths), prompt), add_special_tokens=False)["input_ids"]:
            ids += [t] * next(counts) if t == self.pad else [t]
        return ids, torch.cat(pix), torch.cat(grids)

    def response(self, text):
        return self.tok(text, add_special_tokens=False)["input_ids"] + [self.end]


def training_examples(rows, quality, rng, n_compare, n_score, noise):
    """(kind, image paths, prompt, response) in a fixed order. The targets follow the tower's own quality
    estimate `quality` (path -> q, fit_quality_readout on training references), not the true level: the
    LM then learns a clean function of what it sees (targets following the true level, which the tower
    sees only in part, left the warm-up's compare answers at chance), and the model's perception is the
    tower's - weak and imperfect. Compare: two distortions of one reference at different levels, answer
    = the one with the higher estimate, flipped with probability `noise`; score: the estimate stretched
    to the spread of the true levels' scores (4.6 - 0.8 (level - 1)) plus uniform jitter of
    +-noise*2.5 points. Half the prompts carry the reasoning suffix."""
    by_ref = {}
    for r in rows:
        by_ref.setdefault(r["reference_id"], []).append(r)
    refs = sorted(by_ref)
    qs = torch.tensor([quality[r["path"]] for r in rows])
    levels = torch.tensor([float(r["level"]) for r in rows])
    stretch = float(levels.std() / qs.std())
    q_mean, level_mean = float(qs.mean()), float(levels.mean())
    out = []
    for i in range(n_compare):
        a, b = rng.sample(by_ref[refs[i % len(refs)]], 2)
        while a["level"] == b["level"]:
            a, b = rng.sample(by_ref[refs[i % len(refs)]], 2)
        label = 0 if quality[a["path"]] > quality[b["path"]] else 1
        if rng.random() < noise:
            label = 1 - label
        prompt = COMPARE_PROMPT + (" " + SUFFIX if rng.random() < 0.5 else "")
        out.append(("compare", [a["path"], b["path"]], prompt, answer(COMPARE_REASON, label)))
    for i in range(n_score):
        r = rng.choice(by_ref[refs[i % len(refs)]])
        level_seen = level_mean - (quality[r["path"]] - q_mean) * stretch
        s = min(5.0, max(1.0, level_to_score(level_seen) + rng.uniform(-1, 1) * noise * 2.5))
        prompt = SCORE_PROMPT + (" " + SUFFIX if rng.random() < 0.5 else "")
        # one significant decimal (written with two, as the prompt asks): easier digits to learn
        out.append(("score", [r["path"]], prompt, answer(SCORE_REASON, f"{round(s, 1):.2f}")))
    return out


def batches(examples, enc, batch_size, rng):
    """Shuffled batches that mix both tasks: a batch of one task only would let the model lower its loss
    by drifting to that task's answers without reading the prompt."""
    encoded = []
    for ex in examples:
        ids, pix, grid = enc.prompt(ex[1], ex[2])
        encoded.append((ids, pix, grid, enc.response(ex[3])))
    rng.shuffle(encoded)
    return [encoded[i:i + batch_size] for i in range(0, len(encoded), batch_size)]


def answer_weights(resp, enc, weight):
    """`weight` for the response tokens inside boxed{...} (the decision), 1 for the format tokens."""
    text = [enc.tok.decode([t]) for t in resp]
    open_ = max(j for j, t in enumerate(text) if "{" in t)
    close = max(j for j, t in enumerate(text) if "}" in t)
    return [weight if open_ < j < close else 1.0 for j in range(len(resp))]


def batch_loss(model, batch, negatives, enc, answer_weight):
    """Weighted cross-entropy of the response tokens (the prompt is context only; rows right-padded),
    against the responses' own tokens plus `negatives` sampled vocabulary rows: an exact softmax over
    151936 rows would cost more than the rest of the model."""
    length = max(len(b[0]) + len(b[3]) for b in batch)
    ids = torch.full((len(batch), length), PAD, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    rows, cols, targets, weights = [], [], [], []
    for i, (prompt, _, _, resp) in enumerate(batch):
        n = len(prompt) + len(resp)
        ids[i, :n] = torch.tensor(prompt + resp)
        mask[i, :n] = 1
        rows += [i] * len(resp)
        cols += range(len(prompt) - 1, n - 1)
        targets += resp
        weights += answer_weights(resp, enc, answer_weight)
    pix = torch.cat([b[1] for b in batch])
    grid = torch.cat([b[2] for b in batch])
    hidden = hidden_states(model, ids, pix, grid, mask)
    hidden = hidden[torch.tensor(rows), torch.tensor(cols)]
    targets = torch.tensor(targets)
    w = torch.tensor(weights)
    vocab_rows = torch.unique(torch.cat([targets, negatives]))  # sorted; contains every target
    logits = hidden @ model.lm_head.weight[vocab_rows].t()
    ce = torch.nn.functional.cross_entropy(logits, torch.searchsorted(vocab_rows, targets), reduction="none")
    # the answer tokens (a few rows per batch) get the exact softmax: with sampled negatives only, ~14 %
    # of the answer's probability stayed on unseen tokens and sampled votes came out noisy
    answer = w > 1.0
    ce[answer] = torch.nn.functional.cross_entropy(hidden[answer] @ model.lm_head.weight.t(), targets[answer],
                                                   reduction="none")
    return (ce * w).sum() / w.sum()


def _box_blur(x, k):
    """k x k mean filter of (N, 1, H, W) with replicated borders."""
    pad = (k // 2, (k - 1) // 2, k // 2, (k - 1) // 2)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, pad, mode="replicate"), torch.ones(1, 1, k, k) / (k * k))


# Channels of the 32-wide vision residual stream set up by engineer_vision.
FINE, MID, CONTENT = range(0, 10), range(10, 16), range(16, 27)
FINE_FRACTION, MID_FRACTION, CONSTANT = 28, 29, 30
IMAGE_FINE, IMAGE_MID = 31, 27  # the two shares averaged over the whole image


def engineer_vision(visual, gen, constant=30.0, energy_scale=10.0, gamma=4.0):
    """Structured initialisation of the random vision tower (same architecture): a 4-layer, 32-wide tower
    from a random init does not learn to see blur/noise/JPEG level in a few hundred steps, but the share
    of a patch's energy in its fine and mid spatial-frequency bands does separate the levels (more fine
    energy: noise; less: blur, JPEG). So:
    - patch embedding: random filters restricted to the fine band (x - blur3 x), the mid band
      (blur3 - blur7) and the low band (blur7), each with the norm of the random init (fine and mid x3, x2);
    - block 0's gated MLP squares the fine and mid responses (silu(z) z + silu(-z)(-z) = z^2) of the
      RMS-normalised patch, i.e. their share of the patch energy, and writes the two shares into
      channels FINE_FRACTION and MID_FRACTION, plus a large constant channel so that later RMS norms
      (blocks, merger, the LM's input norm) act almost linearly on them;
    - block 3 (full attention) averages the two shares over the whole image into every token;
    - the merger is set by fit_quality_readout; everything else keeps its small random init."""
    w = visual.patch_embed.proj.weight
    noise = torch.randn(w.shape, generator=gen).view(-1, 1, 14, 14)
    b3, b7 = _box_blur(noise, 3), _box_blur(noise, 7)
    bands = [(FINE, (noise - b3).view(w.shape), 3.0), (MID, (b3 - b7).view(w.shape), 2.0),
             (CONTENT, b7.view(w.shape), 1.0)]
    norm = w.flatten(1).norm(dim=1).mean()
    new = torch.zeros_like(w)
    for channels, filters, gain in bands:
        for c in channels:
            new[c] = filters[c] / filters[c].norm() * norm * gain
    w.copy_(new)
    mlp = visual.blocks[0].mlp
    for lin in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
        lin.weight.mul_(0.1)
    for k in list(FINE) + list(MID):
        target, n = (FINE_FRACTION, len(FINE)) if k in FINE else (MID_FRACTION, len(MID))
        for sign, row in ((1.0, 2 * k), (-1.0, 2 * k + 1)):
            for lin in (mlp.gate_proj, mlp.up_proj):
                lin.weight[row].zero_()
                lin.weight[row, k] = sign * gamma
            mlp.down_proj.weight[:, row] = 0.0
            # z^2 summed over a band = 32 x its energy share; / 32 -> the share itself, x energy_scale
            mlp.down_proj.weight[target, row] = energy_scale / (gamma * gamma * 32.0)
    row = 2 * (len(FINE) + len(MID))  # a constant: silu(gate bias) * up bias
    mlp.gate_proj.weight[row].zero_(); mlp.up_proj.weight[row].zero_(); mlp.down_proj.weight[:, row] = 0.0
    mlp.gate_proj.bias[row], mlp.up_proj.bias[row] = 10.0, 1.0
    mlp.down_proj.weight[CONSTANT, row] = constant / float(torch.nn.functional.silu(torch.tensor(10.0)))
    # last block (full attention over the image): uniform attention (zero queries and keys) whose
    # values copy the two shares, so every token carries the image's mean shares (a per-patch share
    # varies more with content than with the distortion level)
    attn = visual.blocks[3].attn
    dim = attn.proj.weight.shape[0]
    attn.qkv.weight[:2 * dim].zero_(); attn.qkv.bias[:2 * dim].zero_()
    attn.qkv.weight[2 * dim:2 * dim + 2].zero_()
    norm_gain = (constant * constant / dim) ** 0.5  # the block's RMS norm divides by about this
    attn.qkv.weight[2 * dim, FINE_FRACTION] = norm_gain
    attn.qkv.weight[2 * dim + 1, MID_FRACTION] = norm_gain
    attn.proj.weight[:, :2] = 0.0
    attn.proj.weight[IMAGE_FINE, 0] = attn.proj.weight[IMAGE_MID, 1] = 1.0


def tower_activations(visual, enc, rows, module, pick):
    """pick(input, output) of `module` for each image row, with the vision tower run on that image alone."""
    captured = []
    hook = module.register_forward_hook(lambda m, i, o: captured.append(pick(i[0], o).detach()))
    try:
        with torch.no_grad():
            for r in rows:
                visual(*enc.image(r["path"]))
        return captured
    finally:
        hook.remove()


def image_mean_shares(visual, enc, rows):
    """The two image-mean band shares as the merger's first layer sees them (after ln_q), per image."""
    inputs = tower_activations(visual, enc, rows, visual.merger.mlp[0], lambda i, o: i)
    return torch.stack([torch.stack([x[:, IMAGE_FINE].mean(), x[:, IMAGE_MID].mean()]) for x in inputs])


def fit_quality_readout(visual, enc, rows, gen, units=32, spread=0.5, ridge=1e-2, gain=1.0, constant=8.0):
    """Closed-form stage on the engineered tower (training references only). The merger's first `units`
    hidden units become random GELU features of the two standardised image-mean shares,
    GELU(a f + b m + c) (a, b ~ N(0, spread^2), c ~ N(0, 1)): a fixed nonlinear basis, because the
    level moves the fine share down (blur, JPEG) or up (noise), so no linear function of the shares
    orders both; ridge least squares of the target 3 - level on those units (plus a constant) gives
    the estimate q. The merger's output layer writes q along a random direction u next to a constant
    dim: token = q u + 8 e2 + the small random rest, so after the LM's RMS norm the token's direction
    turns smoothly with q (the form of feature the 2-layer LM picks up in a few hundred steps).
    Returns the ridge coefficients and a function giving q for image rows."""
    shares = image_mean_shares(visual, enc, rows)
    mean, std = shares.mean(0), shares.std(0)
    first, second = visual.merger.mlp[0], visual.merger.mlp[2]
    a = torch.randn(units, 2, generator=gen) * spread
    c = torch.randn(units, generator=gen)
    for j in range(units):
        first.weight[j].zero_()
        for k, ch in enumerate((IMAGE_FINE, IMAGE_MID)):
            # the 4 merged patches carry the same image mean: each gets a quarter of the weight
            first.weight[j, [32 * p + ch for p in range(4)]] = a[j, k] / (4 * std[k])
        first.bias[j] = c[j] - float(a[j] @ (mean / std))
    def features(rows_):  # the GELU units of every image token, per image
        return tower_activations(visual, enc, rows_, visual.merger.mlp[1], lambda i, o: o[:, :units])

    xs, ys = [], []
    for r, h in zip(rows, features(rows)):
        xs.append(torch.cat([h, torch.ones(len(h), 1)], 1))
        ys.append(torch.full((len(h),), 3.0 - r["level"]))
    x, y = torch.cat(xs).double(), torch.cat(ys).double()
    coef = torch.linalg.solve(x.T @ x + ridge * len(x) * torch.eye(units + 1, dtype=x.dtype), x.T @ y).float()
    scale = gain / float((x.float() @ coef).std())  # unit-variance estimate
    u = torch.randn(second.out_features, generator=gen)
    u[2] = 0.0
    second.weight[:, :units] = scale * u[:, None] * coef[None, :units]
    second.bias.copy_(scale * coef[units] * u)
    second.bias[2] = constant

    def estimate(rows_):
        """q per image: the mean over its tokens of the readout (3 - level scale)."""
        return [float((h @ coef[:units]).mean() + coef[units]) for h in features(rows_)]
    return coef, estimate


def train(model, batches_, enc, a, log):
    vision = [p for n, p in model.named_parameters() if ".visual." in n or n.startswith("visual.")]
    ids = {id(p) for p in vision}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": rest, "mult": 1.0}]
    if a.vision_lr_mult > 0:
        groups.append({"params": vision, "mult": a.vision_lr_mult})
    else:  # keep the engineered tower as it is (and skip its backward pass)
        for p in vision:
            p.requires_grad_(False)
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.98), weight_decay=0.0)
    gen = torch.Generator().manual_seed(a.seed)
    vocab = model.lm_head.weight.shape[0]
    model.train()
    steps = len(batches_)
    warm = max(1, steps // 10)
    for step, b in enumerate(batches_):
        scale = min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = a.lr * scale * group["mult"]
        loss = batch_loss(model, b, torch.randint(vocab, (a.negatives,), generator=gen), enc, a.answer_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 20 == 0 or step == steps - 1:
            log(f"step {step + 1}/{steps} loss {loss.item():.4f}")
    model.eval()


def probe(model, enc, rows):
    """Teacher-forced decision on held-out data (cheap; no generation): pairwise accuracy of
    P(boxed 0) vs P(boxed 1) for same-type pairs, and SRCC of the expected first score digit vs -level."""
    by_ref = {}
    for r in rows:
        by_ref.setdefault(r["reference_id"], []).append(r)
    prefix = enc.tok(f"<think>{COMPARE_REASON}</think>\\boxed{{", add_special_tokens=False)["input_ids"]
    zero, one = enc.tok.convert_tokens_to_ids("0"), enc.tok.convert_tokens_to_ids("1")
    correct = total = 0
    with torch.no_grad():
        for ref in sorted(by_ref):
            rs = by_ref[ref]
            for i in range(len(rs)):
                for j in range(len(rs)):
                    if i == j or rs[i]["level"] == rs[j]["level"] or rs[i]["type"] != rs[j]["type"]:
                        continue
                    ids, pix, grid = enc.prompt([rs[i]["path"], rs[j]["path"]], COMPARE_PROMPT + " " + SUFFIX)
                    h = hidden_states(model, torch.tensor([ids + prefix]), pix, grid)[0, -1]
                    l = model.lm_head.weight[[zero, one]] @ h
                    total += 1
                    correct += bool(l[0] > l[1]) == (rs[i]["level"] < rs[j]["level"])
        prefix = enc.tok(f"<think>{SCORE_REASON}</think>\\boxed{{", add_special_tokens=False)["input_ids"]
        digits = enc.tok.convert_tokens_to_ids([str(d) for d in range(1, 6)])
        expect, levels = [], []
        for r in rows:
            ids, pix, grid = enc.prompt([r["path"]], SCORE_PROMPT)
            h = hidden_states(model, torch.tensor([ids + prefix]), pix, grid)[0, -1]
            p = torch.softmax(model.lm_head.weight[digits] @ h, 0)
            expect.append(float((p * torch.arange(1, 6)).sum()))
            levels.append(r["level"])
    return {"probe_pair_accuracy": correct / total, "probe_score_srcc": spearman(expect, [-v for v in levels])}


def generate(model, enc, paths, prompt, max_new_tokens=24):
    ids, pix, grid = enc.prompt(paths, prompt)
    with torch.no_grad():
        seq = torch.tensor([ids])
        out = model.generate(input_ids=seq, pixel_values=pix, image_grid_thw=grid, mm_token_type_ids=image_tokens(seq),
                             do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=[enc.end, 151643],
                             pad_token_id=151643)
    return enc.tok.decode(out[0, len(ids):], skip_special_tokens=True)


def boxed(text):
    """Content of the last closed boxed{...} (evoq's parser, simplified: no nested braces)."""
    i = text.rfind("boxed{")
    if i < 0 or text.find("}", i) < 0:
        return None
    return text[i + 6:text.find("}", i)].strip()


def spearman(x, y):
    from scipy.stats import spearmanr
    """Spearman correlation; None when either side is constant (undefined)."""
    return float(spearmanr(x, y).statistic) if len(set(x)) > 1 and len(set(y)) > 1 else None


def same_type_pairs(rows):
    """Held-out pairs: same reference and type, different level; each unordered pair once, the shown
    order alternating so that both answers 0 and 1 are expected equally often."""
    pairs = []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if a["reference_id"] == b["reference_id"] and a["type"] == b["type"] and a["level"] != b["level"]:
                pairs.append((a, b) if len(pairs) % 2 == 0 else (b, a))
    return pairs


def evaluate(model, enc, rows, log):
    """Greedy answers, as evoq sends the prompts by default: compare with the reasoning suffix on the
    held-out pairs, score without it on every held-out image."""
    valid = correct = 0
    pairs = same_type_pairs(rows)
    for a, b in pairs:
        ans = boxed(generate(model, enc, [a["path"], b["path"]], COMPARE_PROMPT + " " + SUFFIX))
        if ans in ("0", "1"):
            valid += 1
            correct += (ans == "0") == (a["level"] < b["level"])
    scores, levels, score_valid = [], [], 0
    for r in rows:
        ans = boxed(generate(model, enc, [r["path"]], SCORE_PROMPT))
        try:
            v = float(ans)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v) and 1 <= v <= 5:
            score_valid += 1
            scores.append(v)
            levels.append(r["level"])
    res = {"compare_pairs": len(pairs), "compare_valid_rate": valid / len(pairs),
           "compare_accuracy_of_valid": correct / valid if valid else None,
           "score_images": len(rows), "score_valid_rate": score_valid / len(rows),
           "distinct_scores": len(set(scores)),
           "score_srcc_vs_level_order": spearman(scores, [-v for v in levels]) if scores else None}
    log(json.dumps(res))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--distort", default=default_distort(), help="data_prep/distort binary")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare-examples", type=int, default=1600)
    ap.add_argument("--score-examples", type=int, default=640)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--negatives", type=int, default=4096, help="sampled vocabulary rows per step")
    ap.add_argument("--answer-weight", type=float, default=5.0, help="loss weight of the boxed answer tokens")
    ap.add_argument("--vision-lr-mult", type=float, default=0.0, help="0 = the engineered vision tower stays frozen")
    ap.add_argument("--label-noise", type=float, default=0.05)
    ap.add_argument("--train-refs", type=int, default=0, help="use only the first N training references (0 = all)")
    ap.add_argument("--no-eval", action="store_true", help="skip the held-out measurement")
    ap.add_argument("--max-pixels", type=int, default=224 * 224)
    a = ap.parse_args()

    t0 = time.time()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    log = lambda msg: print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)
    train_refs, held_out = split_references()
    if a.train_refs:
        train_refs = train_refs[:a.train_refs]
    os.makedirs(a.out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        rows = distort(a.distort, train_refs, os.path.join(work, "train"), TRAIN_TYPES, "1,2,3,4,5", a.seed + 11)
        log(f"{len(rows)} training images from {len(train_refs)} references")
        model = make_tiny_model.make_model("qwen2_5_vl", a.seed)
        make_tiny_model.write_support_files(a.out_dir, a.max_pixels)
        enc = Encoder(a.out_dir)
        with torch.no_grad():
            engineer_vision(model.model.visual, torch.Generator().manual_seed(a.seed + 3))
            coef, estimate = fit_quality_readout(model.model.visual, enc, rows[::2],
                                                 torch.Generator().manual_seed(a.seed + 4))
        quality = dict(zip((r["path"] for r in rows), estimate(rows)))
        log(f"quality readout fitted on {len(rows[::2])} training images ({len(coef) - 1} GELU units); "
            f"SRCC of its estimate vs -level on all {len(rows)}: "
            f"{spearman([quality[r['path']] for r in rows], [-r['level'] for r in rows]):.3f}")
        rng = random.Random(a.seed)
        examples = training_examples(rows, quality, rng, a.compare_examples, a.score_examples, a.label_noise)
        bs = batches(examples, enc, a.batch, rng)
        log(f"{len(examples)} examples in {len(bs)} batches")
        train(model, bs, enc, a, log)
        model.save_pretrained(a.out_dir, safe_serialization=True)
        build_s = time.time() - t0
        log(f"saved {a.out_dir}")
        results = {}
        if not a.no_eval:
            held = distort(a.distort, held_out, os.path.join(work, "held"), EVAL_TYPES, EVAL_LEVELS, EVAL_SEED)
            results = evaluate(model, enc, held, log)
            results.update(probe(model, enc, held))
            q = dict(zip((r["path"] for r in held), estimate(held)))
            pairs = same_type_pairs(held)
            results["readout_pair_accuracy"] = sum((q[x["path"]] > q[y["path"]]) == (x["level"] < y["level"])
                                                   for x, y in pairs) / len(pairs)
            results["readout_srcc"] = spearman([q[r["path"]] for r in held], [-r["level"] for r in held])
            log(json.dumps(results))
    info = {
        "base": "data_prep/make_tiny_model.py qwen2_5_vl, seed %d" % a.seed,
        "builder_sha256": builder_hash(),
        "vision": "engineer_vision (band-energy shares, image mean) + fit_quality_readout (ridge on 32 random "
                  "GELU features of the shares, every 2nd training image), then frozen during the warm-up",
        "torch_threads": THREADS, "torch": torch.__version__,
        "train_references": train_refs, "held_out_references": held_out,
        "train_distortions": {"types": TRAIN_TYPES.split(","), "levels": [1, 2, 3, 4, 5], "seed": a.seed + 11},
        "targets": {"compare": answer(COMPARE_REASON, "0|1") + " (the image with the higher readout estimate q "
                               "is better; flipped with probability label_noise)",
                    "score": answer(SCORE_REASON, "4.6-0.8*(level_seen-1) + U(-1,1)*label_noise*2.5, clipped to "
                                    "[1,5], rounded to 0.1; level_seen = q stretched to the spread of the true levels")},
        "settings": {k: v for k, v in vars(a).items() if k not in ("out_dir", "distort")},
        "build_seconds_without_eval": round(build_s, 1),
        "held_out_eval": {"distortions": {"types": EVAL_TYPES.split(","), "levels": EVAL_LEVELS, "seed": EVAL_SEED},
                          "pairs": "same reference, same type, different level; greedy answers; compare "
                                   "with the reasoning suffix, score without (evoq's defaults); probe_*: "
                                   "teacher-forced answer-token logits on the same data (both orders)",
                          "results": results},
    }
    with open(os.path.join(a.out_dir, "warmup.json"), "w") as f:
        json.dump(info, f, indent=2)
    log("done")


if __name__ == "__main__":
    main()
