"""`evoq eval` with a VLM checkpoint as the scorer (paper prompt c_score), and `evoq score`.

Oracle: a tiny Qwen2.5-VL built by transformers whose weights are set by hand so that its greedy answer
is known in advance: with every attention output and MLP output projection zeroed, the last position's
hidden state is the embedding of the last prompt token, and the untied lm_head maps each token of the
chain "\\n" -> "\\" -> "boxed" -> "{" -> "3" -> "." -> "5" -> "}" -> <|im_end|> to its successor with a
large margin. transformers' own generate() confirms the construction; evoq must then score every image
3.5 (greedy and as the mean of sampled answers) in both commands.
"""
import csv
import json
import sys
import os
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from parity_precision import pin_fp32  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data_prep"))
import tiny_qwen_vl as tq  # noqa: E402

EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")
DATA = os.environ.get("EVOQ_TEST_DATA", "tests/data")
QWEN = os.path.join(DATA, "qwen2-vl-2b")
CHAIN = [198, 59, 79075, 90, 18, 13, 20, 92, 151645]  # "\n" "\\" "boxed" "{" "3" "." "5" "}" <|im_end|>
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def answering_model(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("vlm35"))
    model = tq.make_model(seed=0, tied=False)
    with torch.no_grad():
        lm = model.model.language_model
        for layer in lm.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = lm.embed_tokens.weight
        head = model.lm_head.weight
        emb.normal_(0, 0.02)
        head.normal_(0, 0.02)
        for k, tok in enumerate(CHAIN[:-1]):
            emb[tok].zero_()
            emb[tok, k] = 1.0
            head[CHAIN[k + 1]].zero_()
            head[CHAIN[k + 1], k] = 10.0
    tq.save_checkpoint(model, d, tokenizer_dir=QWEN, preprocessor=dict(max_pixels=112 * 112),
                       generation={"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                                   "eos_token_id": [151645, 151643]})
    images = []
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(56, 84), (90, 61), (64, 64)]):
        p = os.path.join(d, f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        images.append(p)
    # The construction, checked with transformers itself on a text-only prompt ending in "assistant\n".
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(d)
    ids = tok("<|im_start|>user\nrate it<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt")["input_ids"]
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                         eos_token_id=[151645], pad_token_id=151643)
    assert out[0, ids.shape[1]:].tolist() == CHAIN[1:]
    return d, images


def run(*args):
    res = subprocess.run(pin_fp32([EVOQ, *args]), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return res


@pytest.mark.parametrize("samples", ["1", "3"])
def test_eval_scores_images_with_the_vlm(answering_model, tmp_path, samples):
    d, images = answering_model
    labels = tmp_path / "labels.csv"
    with open(labels, "w") as f:
        f.write("path,score\n")
        for i, p in enumerate(images):
            f.write(f"{p},{i + 1}\n")  # absolute paths: no --root needed
    out = tmp_path / "out"
    run("eval", "--model", d, "--dataset", f"csv:{labels}", "--out", str(out),
        "--samples", samples, "--max-new-tokens", "16", "--log-level", "warn")
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 3
    for r in rows:
        assert float(r["model_score"]) == 3.5, r
    result = json.load(open(out / "results.json"))
    assert "vlm" in json.dumps(result)


def test_score_command_agrees(answering_model, tmp_path):
    d, images = answering_model
    out = tmp_path / "s.json"
    run("score", "--model", d, *images, "--samples", "2", "--max-new-tokens", "16", "--out", str(out))
    j = json.load(open(out))
    assert [e["mean"] for e in j["images"]] == [3.5, 3.5, 3.5]
    assert all(e["valid"] == 2 for e in j["images"])
    assert all(r.strip() == "\\boxed{3.5}" for e in j["images"] for r in e["responses"])


def test_sampled_answers_of_an_image_do_not_depend_on_the_batch(answering_model, tmp_path):
    """An image's sample stream is keyed by the image, not by its position in the call: scoring it alone
    or after two other images gives the same sampled answers (so `evoq eval` gives the same scores with
    any rank count, batch size or resume)."""
    _, images = answering_model
    d = tmp_path / "random-model"  # random weights: varied answers
    src = os.environ.get("EVOQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
    subprocess.run([sys.executable, os.path.join(src, "data_prep", "make_tiny_model.py"), str(d)], check=True,
                   capture_output=True)
    together, alone = tmp_path / "together.json", tmp_path / "alone.json"
    common = ["--samples", "3", "--max-new-tokens", "16", "--temperature", "1.5", "--top-k", "0", "--seed", "9"]
    run("score", "--model", d, *images, *common, "--out", str(together))
    run("score", "--model", d, images[2], *common, "--out", str(alone))
    a = json.load(open(together))["images"][2]
    b = json.load(open(alone))["images"][0]
    assert a["responses"] == b["responses"]
    # ... and the stream really is random at this temperature: the images' answers are not all alike.
    every = [r for e in json.load(open(together))["images"] for r in e["responses"]]
    assert len(set(every)) > 1, every
