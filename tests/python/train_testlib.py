"""Shared pieces of the GRPO training tests: tiny random Qwen2.5-VL checkpoints built by transformers
(data_prep/tiny_qwen_vl.py; real Qwen2-VL tokenizer, fixed seeds, nothing downloaded), small images,
hand-made labels.h5 files (docs/FORMATS.md "labels.h5") and helpers to run `evoq train`."""
import math
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from parity_precision import pin_fp32  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data_prep"))
import tiny_qwen_vl as tq  # noqa: E402

EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")
TESTTOOL = os.environ.get("EVOQ_TESTTOOL", os.path.join(os.path.dirname(EVOQ), "evoq-testtool"))  # test drivers
DATA = os.environ.get("EVOQ_TEST_DATA", "tests/data")
QWEN = os.path.join(DATA, "qwen2-vl-2b")
VOCAB = tq.VOCAB
IM_END, ENDOFTEXT = 151645, 151643
SPECIAL = tq.SPECIAL
CHECKPOINT_FILES = tq.TOKENIZER_FILES + ("chat_template.json",)
PIXELS = dict(min_pixels=56 * 56, max_pixels=112 * 112)  # the test images' sides are multiples of 28 inside
SAMPLING = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "eos_token_id": [IM_END, ENDOFTEXT]}
INSTRUCT_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_model(seed=0, std=0.1, arch="qwen2_5_vl", tied=False):
    """The tests' tiny model (real vocabulary, 4096 positions, 2 vision blocks), init widened with `std`."""
    return tq.make_model(arch, seed=seed, tied=tied, max_position_embeddings=4096, widen_std=std)


def save_checkpoint(model, d, generation=None, defaults=SAMPLING):
    """The checkpoint directory: weights, tokenizer and chat template, the image processor with PIXELS and a
    generation_config.json of `defaults` updated with `generation`."""
    gen = dict(defaults)
    gen.update(generation or {})
    return tq.save_checkpoint(model, d, tokenizer_dir=QWEN, files=CHECKPOINT_FILES, preprocessor=PIXELS,
                              generation=gen)


def make_images(d, n, seed=3, sizes=((56, 56), (56, 84), (84, 56))):
    """n random images whose sides are multiples of 28 inside the pixel budget (no resize)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        p = os.path.join(d, f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def write_labels(path, image_paths, pairs, p_star, failed=None, root=""):
    """labels.h5 as docs/FORMATS.md describes it (only what the trainer reads plus the required counts)."""
    import h5py
    n = len(pairs)
    failed = failed or [0] * n
    with h5py.File(path, "w") as f:
        f.attrs["schema_version"] = np.int64(1)
        f.attrs["format"] = "evoq-labels"
        f.attrs["root"] = root
        f.attrs["num_pairs"] = np.int64(n)
        str_t = h5py.string_dtype("utf-8")
        f.create_dataset("image_path", data=np.array(image_paths, dtype=object), dtype=str_t)
        f.create_dataset("pair_index", data=np.arange(n, dtype=np.int64))
        f.create_dataset("pair_i", data=np.array([a for a, _ in pairs], dtype=np.int64))
        f.create_dataset("pair_j", data=np.array([b for _, b in pairs], dtype=np.int64))
        f.create_dataset("path_i", data=np.array([image_paths[a] for a, _ in pairs], dtype=object), dtype=str_t)
        f.create_dataset("path_j", data=np.array([image_paths[b] for _, b in pairs], dtype=object), dtype=str_t)
        ps = np.array(p_star, dtype=np.float64)
        f.create_dataset("votes_i", data=np.where(ps > 0.5, 3, np.where(ps < 0.5, 1, 2)).astype(np.int32))
        f.create_dataset("votes_j", data=np.where(ps < 0.5, 3, np.where(ps > 0.5, 1, 2)).astype(np.int32))
        f.create_dataset("invalid", data=np.zeros(n, np.int32))
        f.create_dataset("samples_used", data=np.full(n, 4, np.int32))
        f.create_dataset("p_star", data=ps)
        f.create_dataset("labelled", data=(~np.isnan(ps)).astype(np.uint8))
        f.create_dataset("failed", data=np.array(failed, dtype=np.uint8))
        f.create_dataset("fail_reason", data=np.array(["" for _ in range(n)], dtype=object), dtype=str_t)
        # 4 samples per pair: 3 votes for the winner, 1 for the other (a tie: 2 and 2)
        answers = []
        for v in ps:
            answers += [0, 0, 0, 1] if v > 0.5 else [1, 1, 1, 0] if v < 0.5 else [0, 0, 1, 1]
        f.create_dataset("sample_offset", data=np.arange(0, 4 * n + 1, 4, dtype=np.int64))
        f.create_dataset("sample_answer", data=np.array(answers, np.int8))
        f.create_dataset("sample_swapped", data=np.zeros(4 * n, np.uint8))


def hf_prompt(d, image, prompt):
    """input_ids, pixel_values, image_grid_thw of the chat prompt with one image, built by transformers."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = AutoTokenizer.from_pretrained(d)
    proc = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    content = [{"type": "image"}, {"type": "text", "text": prompt}]
    text = tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True,
                                   chat_template=INSTRUCT_CHAT_TEMPLATE)
    out = proc(images=[Image.open(image).convert("RGB")], return_tensors="pt")
    pix, grid = out["pixel_values"], out["image_grid_thw"]
    before, after = text.split("<|image_pad|>")
    text = before + "<|image_pad|>" * int(grid[0].prod() // 4) + after
    return tok(text, return_tensors="pt")["input_ids"][0], pix, grid


def response_logprobs(model, prompt_ids, pix, grid, response, temperature=1.0):
    """log pi(response token t | prompt, earlier tokens) by one full forward of transformers (with grad),
    under softmax(logits / temperature): the distribution samples at that temperature come from."""
    seq = torch.cat([prompt_ids, torch.tensor(response, dtype=torch.long)]).unsqueeze(0)
    logits = model(input_ids=seq, attention_mask=torch.ones_like(seq), pixel_values=pix, image_grid_thw=grid,
                   mm_token_type_ids=(seq == SPECIAL["image_token_id"]).int()).logits[0].float()
    P = prompt_ids.shape[0]
    lp = torch.log_softmax(logits[P - 1:P - 1 + len(response)] / temperature, -1)
    return lp.gather(1, torch.tensor(response).unsqueeze(1)).squeeze(1)


def run(args, check=True, timeout=1000, **kw):
    """Runs a command to its end; a hang (> timeout s) fails with the native stacks of the stuck process."""
    args = pin_fp32(args)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        import faultlib
        stacks = faultlib.backtraces(proc.pid)
        os.killpg(proc.pid, 9)
        proc.communicate()
        raise AssertionError(f"{args} hung (> {timeout} s); stacks:\n{stacks}")
    res = subprocess.CompletedProcess(args, proc.returncode, out, err)
    if check:
        assert res.returncode == 0, f"{args}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    return res


DIGITS = [16, 17, 18, 19, 20]  # "1" .. "5" in the Qwen2 vocabulary
JUNK = 87                      # "x"


def build_scoring_model(seed=0, digits=DIGITS, end_bias=0.7, digit_bias=None, context_scale=1.0):
    """A tiny random model whose answers are short strings over {"1".."5", "x", <|im_end|>}, so that
    c_score rollouts are sometimes valid ("3") and often not ("33", "x3", ""): the rewards are not
    degenerate and a policy can learn. How: in the last decoder layer one value channel is a constant
    (zero weights, bias 1) that o_proj writes as +100 into residual dimension 0 at every position;
    after the final norm that dimension is a large positive constant, and lm_head's column 0 gives
    every other token a very negative logit. The remaining lm_head dimensions keep the logits
    context-dependent (the image and the earlier tokens still matter). With "0" (id 15) among `digits`
    the same model also gives valid compare votes ("0" / "1") besides invalid ones."""
    model = build_model(seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        attn = model.model.language_model.layers[-1].self_attn
        attn.v_proj.weight[0].zero_()
        attn.v_proj.bias[0] = 1.0
        head_dim = attn.head_dim
        for c in (0, head_dim):  # query heads 0 and 1 read kv head 0
            attn.o_proj.weight[:, c] = 0.0
            attn.o_proj.weight[0, c] = 50.0
        w = model.lm_head.weight
        w[:, 0] = -3.0
        digit_bias = digit_bias or {}
        for t, bias in [(d, digit_bias.get(d, 0.5)) for d in digits] + [(JUNK, 0.2), (IM_END, end_bias)]:
            w[t, 1:] = context_scale * torch.randn(w.shape[1] - 1, generator=g)
            w[t, 0] = bias
    return model


def brightness_images(d, n, seed=3):
    """n noisy images of increasing mean brightness (image k is better than image j < k), sides
    multiples of 28 inside the test pixel budget."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        base = 40 + 180 * i / max(1, n - 1)
        a = np.clip(base + rng.normal(0, 30, (56, 56, 3)), 0, 255).astype(np.uint8)
        p = os.path.join(d, f"img{i}.png")
        Image.fromarray(a).save(p)
        paths.append(p)
    return paths


def consistent_pairs(n, count, seed=0):
    """`count` distinct pairs of n images with p* = 1 when the first is brighter (higher index)."""
    rng = np.random.default_rng(seed)
    all_pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    pick = rng.permutation(len(all_pairs))[:count]
    pairs, p_star = [], []
    for k in pick:
        a, b = all_pairs[k]
        if rng.random() < 0.5:
            a, b = b, a
        pairs.append((int(a), int(b)))
        p_star.append(1.0 if a > b else 0.0)
    return pairs, p_star


def eq2_eq3_rewards(scores, valid, partners, gamma=1e-6, min_valid=2):
    """Eq. 2-3 for one image: partners = [(mean_j, var_j, valid_j, p_star)]; invalid samples get 0."""
    v = [s for s, ok in zip(scores, valid) if ok]
    var_i = np.var(v, ddof=1) if len(v) >= 2 else 0.0
    used = [(m, var, p) for m, var, n, p in partners if n >= min_valid]
    out = []
    for s, ok in zip(scores, valid):
        if not ok or not used:
            out.append(0.0)
            continue
        r = 0.0
        for m, var, p in used:
            pk = 0.5 * (1 + math.erf((s - m) / math.sqrt(var_i + var + gamma) / math.sqrt(2)))
            r += math.sqrt(p * pk) + math.sqrt((1 - p) * (1 - pk))
        out.append(r / len(used))
    return out
