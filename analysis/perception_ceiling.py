#!/usr/bin/env python3
"""What the model's vision tower lets ANY language-model training reach: the held-out SRCC of the best
ridge readout of the image features the LM receives (the merger's output tokens, mean-pooled per image),
fitted on the training pool against the truth. Trainable scopes `lm` and `lm+merger` leave the vision
blocks as they are, so a GRPO round with these scopes cannot order the held-out images better than this
readout (up to what a nonlinear readout adds; the ridge on random GELU features below estimates that).

usage: perception_ceiling.py MODEL_DIR DATA_DIR     (DATA_DIR of analysis/oracle_study.sh: *-truth.csv, manifests)
"""
import csv
import json
import os
import sys

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data_prep"))
from make_default_model import Encoder  # noqa: E402


def rows_of(data, split):
    truth = {r["path"]: float(r["score"]) for r in csv.DictReader(open(f"{data}/{split}-truth.csv"))}
    rows = list(csv.DictReader(open(f"{data}/distorted-{split}/manifest.csv")))
    for r in rows:
        r["truth"] = truth[r["path"]]
        r["path"] = os.path.join(data, f"distorted-{split}", os.path.basename(r["path"]))
    return rows


def image_tokens(output):
    """The merged image tokens the LM receives: transformers returns them as pooler_output (recent versions)
    or as the tensor itself (older ones)."""
    if torch.is_tensor(output):
        return output
    return output.pooler_output if getattr(output, "pooler_output", None) is not None else output[0]


def features(visual, enc, rows):
    with torch.no_grad():
        return np.stack([image_tokens(visual(*enc.image(r["path"]))).mean(0).double().numpy() for r in rows])


def ridge_fit(x, y, alpha):
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return lambda q: ((q - mu) / sd) @ w + y.mean()


def best_ridge(x, y, groups):
    """alpha by leave-one-reference-out on the training pool."""
    best = None
    for alpha in (1e-3, 1e-2, 1e-1, 1, 10, 100):
        pred = np.zeros_like(y)
        for g in set(groups):
            held = np.array([k == g for k in groups])
            pred[held] = ridge_fit(x[~held], y[~held], alpha)(x[held])
        score = spearmanr(pred, y)[0]
        if best is None or score > best[0]:
            best = (score, alpha)
    return best[1]


def within_type(pred, rows):
    out = []
    for t in sorted({r["type"] for r in rows}):
        idx = [k for k, r in enumerate(rows) if r["type"] == t]
        out.append(spearmanr([pred[k] for k in idx], [-int(rows[k]["level"]) for k in idx])[0])
    return float(np.mean(out))


def main(model_dir, data):
    import transformers as tf
    model = tf.Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    visual = model.model.visual if hasattr(model, "model") and hasattr(model.model, "visual") else model.visual
    enc = Encoder(model_dir)
    train, test = rows_of(data, "train"), rows_of(data, "test")
    xtr, xte = features(visual, enc, train), features(visual, enc, test)
    ytr, yte = np.array([r["truth"] for r in train]), np.array([r["truth"] for r in test])
    out = {"feature_dims": int(xtr.shape[1]), "train_images": len(train), "test_images": len(test)}
    rng = np.random.default_rng(0)
    proj = rng.normal(size=(xtr.shape[1], 256)) / np.sqrt(xtr.shape[1])
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-9
    gelu = lambda x: 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))  # noqa: E731
    lifted = lambda x: gelu(((x - mu) / sd) @ proj)  # noqa: E731
    groups = [r["reference_id"] for r in train]
    for name, ftr, fte in (("linear", xtr, xte), ("gelu256", lifted(xtr), lifted(xte))):
        alpha = best_ridge(ftr, ytr, groups)
        pred = ridge_fit(ftr, ytr, alpha)(fte)
        out[name] = {"alpha": alpha, "heldout_srcc_vs_truth": float(spearmanr(pred, yte)[0]),
                     "heldout_within_type_srcc": within_type(pred, test),
                     "train_srcc_vs_truth": float(spearmanr(ridge_fit(ftr, ytr, alpha)(ftr), ytr)[0])}
    out["truth_vs_level_heldout_srcc"] = float(spearmanr(yte, [-int(r["level"]) for r in test])[0])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
