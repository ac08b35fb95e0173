#!/usr/bin/env python3
"""The GRPO step of `evoq train`, written plainly with PyTorch + transformers: the reference side of
issue 6's benchmark (bench/bench_grpo_step.sh). Same checkpoint, labels and settings as the evoq run:

  rollout   : each image of the step's pairs answers c_score + reasoning suffix K times
              (model.generate, do_sample, temperature/top-p/top-k of generation_config.json,
              max_new_tokens), the boxed score is parsed, rewards (paper Eq. 2-3) and group
              advantages (Eq. 4) are computed;
  reference : per-token log-probs of every response under a frozen copy of the model (beta > 0);
  update    : micro-batches of policy forward + backward of the clipped loss with the k3 KL (Eq. 5-6,
              token-mean, one PPO epoch so pi_old = pi.detach()), global grad-norm clip, AdamW step
              with a linear schedule.

Written as a plain trainer would (TRL's GRPOTrainer style): every sequence carries its own image
through the vision tower, logits only for the response positions (logits_to_keep). Each phase is
timed; N steps after one warm-up step, medians printed as one JSON line.

usage: grpo_step_reference.py --model DIR --labels labels.h5 [--pairs-per-step 2] [--samples 8]
         [--max-new-tokens 64] [--micro-batch 8] [--steps 3] [--threads 1]
"""
import argparse
import contextlib
import json
import math
import re
import statistics
import time

import h5py
import numpy as np
import torch
from PIL import Image
from scipy.stats import norm

SCORE_PROMPT = ("You are doing the image quality assessment task. Here is the question: What is your overall rating "
                "on the quality of this picture? The rating should be a float between 1 and 5, rounded to two decimal "
                "places, with 1 representing very poor quality and 5 representing excellent quality.")
REASONING = ("You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
             "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in "
             "boxed{}.")
IMAGE_TOKEN, PAD = 151655, 151643
STOP = (151645, 151643)


def parse_score(text):
    """Score of the last boxed{...} (or the bare text), valid when a number in [1, 5]."""
    boxes = re.findall(r"boxed\s*\{([^{}]*)\}", text)
    ans = boxes[-1] if boxes else text
    try:
        v = float(ans.strip())
    except ValueError:
        return 0.0, False
    return (v, True) if 1.0 <= v <= 5.0 else (0.0, False)


def stats(scores, valid):
    q = [s for s, ok in zip(scores, valid) if ok]
    var = float(np.var(q, ddof=1)) if len(q) > 1 else 0.0
    return len(q), (float(np.mean(q)) if q else 0.0), var


def rewards_eq2_eq3(scores, valid, partners, gamma, min_valid=2):
    """Eq. 2: p_k = Phi((q_k - mean_j) / sqrt(var_i + var_j + gamma)); Eq. 3: mean over partners of
    sqrt(p* p_k) + sqrt((1 - p*)(1 - p_k)). Invalid answers: 0."""
    _, _, var_i = stats(scores, valid)
    used = [(st, p) for st, p in partners if st[0] >= min_valid]
    out = []
    for q, ok in zip(scores, valid):
        if not ok or not used:
            out.append(0.0)
            continue
        r = 0.0
        for (_, mean_j, var_j), p_star in used:
            pk = norm.cdf((q - mean_j) / math.sqrt(var_i + var_j + gamma))
            r += math.sqrt(p_star * pk) + math.sqrt((1 - p_star) * (1 - pk))
        out.append(r / len(used))
    return out


def advantages_eq4(r, eps=1e-6):
    r = np.asarray(r, dtype=np.float64)
    return ((r - r.mean()) / (r.std(ddof=1) + eps)).tolist()


def response_logprobs(model, prompt_ids, pix, grid, responses, P):
    """[S, T] log-probs of right-padded responses after identical-length prompts (one image each)."""
    S, T = len(responses), max(len(r) for r in responses)
    ids = torch.full((S, P + T), PAD, dtype=torch.long)
    attn = torch.zeros_like(ids)
    mask = torch.zeros(S, T)
    for s, r in enumerate(responses):
        ids[s, :P] = prompt_ids[s]
        ids[s, P:P + len(r)] = torch.tensor(r)
        attn[s, :P + len(r)] = 1
        mask[s, :len(r)] = 1
    out = model(input_ids=ids, attention_mask=attn, pixel_values=torch.cat(pix), image_grid_thw=torch.cat(grid),
                mm_token_type_ids=(ids == IMAGE_TOKEN).int(), logits_to_keep=T + 1)
    logits = out.logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(2, ids[:, P:].unsqueeze(2)).squeeze(2)
    return lp * mask, mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--pairs-per-step", type=int, default=2)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--beta", type=float, default=0.05)
    ap.add_argument("--lr", type=float, default=3e-7)
    ap.add_argument("--gamma", type=float, default=1e-6)
    ap.add_argument("--autocast", choices=["off", "bf16"], default="off",
                    help="bf16: reference and policy forwards under CPU bf16 autocast (fp32 weights), as evoq train --autocast")
    a = ap.parse_args()
    forward_scope = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.autocast == "bf16"
                     else contextlib.nullcontext)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessor

    policy = AutoModelForImageTextToText.from_pretrained(a.model, dtype=torch.float32)
    ref = AutoModelForImageTextToText.from_pretrained(a.model, dtype=torch.float32).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(a.model)
    proc = Qwen2VLImageProcessor.from_pretrained(a.model)
    gen_cfg = json.load(open(f"{a.model}/generation_config.json"))
    total = a.steps + 1
    opt = torch.optim.AdamW(policy.parameters(), lr=a.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (total - s) / total))

    with h5py.File(a.labels) as f:
        paths = [p.decode() if isinstance(p, bytes) else p for p in f["image_path"][:]]
        pi, pj, pstar = f["pair_i"][:], f["pair_j"][:], f["p_star"][:]
    prompt = SCORE_PROMPT + " " + REASONING

    def encode(path):
        out = proc(images=[Image.open(path).convert("RGB")], return_tensors="pt")
        n = int(out["image_grid_thw"][0].prod() // 4)
        text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
                + "<|image_pad|>" * n + "<|vision_end|>" + prompt + "<|im_end|>\n<|im_start|>assistant\n")
        return tok(text, return_tensors="pt")["input_ids"][0], out["pixel_values"], out["image_grid_thw"]

    times = []
    for step in range(total):
        first = (step * a.pairs_per_step) % len(pi)
        pairs = [(int(pi[k]), int(pj[k]), float(pstar[k])) for k in range(first, first + a.pairs_per_step)]
        images = sorted({x for i, j, _ in pairs for x in (i, j)})
        K = a.samples
        t0 = time.perf_counter()
        # ---- rollout: one generate over all images (prompts of equal length), K samples each
        enc = {x: encode(paths[x]) for x in images}
        P = enc[images[0]][0].shape[0]
        assert all(enc[x][0].shape[0] == P for x in images), "bench images must give equal prompt lengths"
        ids = torch.stack([enc[x][0] for x in images])
        with torch.no_grad():
            seq = policy.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                  pixel_values=torch.cat([enc[x][1] for x in images]),
                                  image_grid_thw=torch.cat([enc[x][2] for x in images]),
                                  mm_token_type_ids=(ids == IMAGE_TOKEN).int(), do_sample=True,
                                  num_return_sequences=K, max_new_tokens=a.max_new_tokens,
                                  temperature=gen_cfg.get("temperature", 1.0), top_p=gen_cfg.get("top_p", 1.0),
                                  top_k=gen_cfg.get("top_k", 0), eos_token_id=list(gen_cfg.get("eos_token_id") or []) or None,
                                  pad_token_id=PAD)
        responses, scores, valid = [], [], []
        for row in seq[:, P:].tolist():
            r = []
            for t in row:
                r.append(t)
                if t in STOP and gen_cfg.get("eos_token_id"):
                    break
            responses.append(r)
            s, ok = parse_score(tok.decode(r, skip_special_tokens=True))
            scores.append(s)
            valid.append(ok)
        st = {x: stats(scores[n * K:(n + 1) * K], valid[n * K:(n + 1) * K]) for n, x in enumerate(images)}
        adv = []
        for n, x in enumerate(images):
            partners = [(st[j], p) for i, j, p in pairs if i == x] + [(st[i], 1 - p) for i, j, p in pairs if j == x]
            r = rewards_eq2_eq3(scores[n * K:(n + 1) * K], valid[n * K:(n + 1) * K], partners, a.gamma)
            adv += advantages_eq4(r)
        t_rollout = time.perf_counter() - t0
        owner = [x for x in images for _ in range(K)]
        tokens = sum(len(r) for r in responses)  # global token-mean normaliser

        def micro_batches():
            for b in range(0, len(responses), a.micro_batch):
                sl = slice(b, b + a.micro_batch)
                yield (b, [enc[x][0] for x in owner[sl]], [enc[x][1] for x in owner[sl]],
                       [enc[x][2] for x in owner[sl]], responses[sl])

        # ---- reference log-probs
        t0 = time.perf_counter()
        ref_lp = []
        if a.beta:
            with torch.no_grad():
                for _, pids, pix, grid, resp in micro_batches():
                    with forward_scope():
                        ref_lp.append(response_logprobs(ref, pids, pix, grid, resp, P)[0].float())
        t_ref = time.perf_counter() - t0
        # ---- update: Eq. 5-6 (ratio 1 by construction with one PPO epoch), backward, clip, AdamW
        t0 = time.perf_counter()
        policy.train()
        for n, (b, pids, pix, grid, resp) in enumerate(micro_batches()):
            with forward_scope():
                lp, mask = response_logprobs(policy, pids, pix, grid, resp, P)
            lp = lp.float()
            A = torch.tensor(adv[b:b + len(resp)], dtype=torch.float32).unsqueeze(1)
            ratio = torch.exp(torch.clamp(lp - lp.detach(), -20, 20))
            pg = torch.maximum(-A * ratio, -A * torch.clamp(ratio, 0.8, 1.2))
            if a.beta:
                rl = ref_lp[n][:, :lp.shape[1]]
                d = torch.clamp(rl - lp, -20, 20)
                pg = pg + a.beta * (torch.exp(d) - d - 1)
            ((pg * mask).sum() / tokens).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        policy.eval()
        t_update = time.perf_counter() - t0
        times.append((t_rollout, t_ref, t_update, tokens))
    timed = times[1:]
    med = lambda i: statistics.median(t[i] for t in timed)
    print(json.dumps({"rollout_s": med(0), "ref_s": med(1), "update_s": med(2),
                      "step_s": statistics.median(t[0] + t[1] + t[2] for t in timed),
                      "response_tokens": med(3), "prompt_tokens": P, "steps": len(timed)}))


if __name__ == "__main__":
    main()
