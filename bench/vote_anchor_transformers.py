#!/usr/bin/env python3
"""The voting job written the way a researcher would with transformers: a Python loop over the pairs,
each pair's K samples drawn with `generate(num_return_sequences=...)` (one call per shown image order),
the answers parsed, Eq. 1 applied. No early stop, no batching across pairs. The anchor of
bench/bench_vote_job.py (issue 19, item 2).

Prints one JSON line: seconds of the loop, model load seconds, samples drawn, and per pair the votes
for the first / second image, the invalid answers and p*.

usage: vote_anchor_transformers.py --model DIR --pairs pairs.json [-K 32] [--max-new-tokens 64]
         [--dtype bf16|fp32] [--threads 2] [--reasoning 1] [--seed 3]
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vote_common as vc  # noqa: E402


def main():
    ap = vc.anchor_arguments(default_dtype="fp32")
    a = ap.parse_args()
    import torch
    import transformers as tf
    from PIL import Image
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
    model = tf.AutoModelForImageTextToText.from_pretrained(a.model, dtype=dtype).eval()
    tok = tf.AutoTokenizer.from_pretrained(a.model)
    proc = tf.Qwen2VLImageProcessor.from_pretrained(a.model)
    load_seconds = time.perf_counter() - t0
    text = vc.prompt_text(bool(a.reasoning))
    torch.manual_seed(a.seed)
    out, samples = [], 0
    t0 = time.perf_counter()
    for p, (path_i, path_j) in enumerate(vc.load_pairs(a.pairs)):
        n_orig, n_swap = vc.swap_split(a.seed, p, a.K)
        texts = []
        for order, n in (((path_i, path_j), n_orig), ((path_j, path_i), n_swap)):
            if n == 0:
                texts.append([])
                continue
            px = proc(images=[Image.open(x).convert("RGB") for x in order], return_tensors="pt")
            pads = [int(g.prod()) // 4 for g in px["image_grid_thw"]]
            ids = tok(vc.chat_text(text, pads), return_tensors="pt")["input_ids"]
            with torch.no_grad():
                seq = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     pixel_values=px["pixel_values"].to(dtype), image_grid_thw=px["image_grid_thw"],
                                     mm_token_type_ids=(ids == 151655).int(), do_sample=True,
                                     num_return_sequences=n, max_new_tokens=a.max_new_tokens,
                                     temperature=vc.TEMPERATURE, top_p=vc.TOP_P, top_k=vc.TOP_K)
            texts.append(tok.batch_decode(seq[:, ids.shape[1]:], skip_special_tokens=True))
            samples += n
        first, second, invalid = vc.tally(texts[0], texts[1])
        out.append({"votes_i": first, "votes_j": second, "invalid": invalid, "p_star": vc.majority_vote(first, second)})
    seconds = time.perf_counter() - t0
    print(json.dumps({"engine": "transformers", "versions": {"transformers": tf.__version__, "torch": torch.__version__},
                      "seconds": seconds, "load_seconds": load_seconds, "samples": samples, "pairs": out}))


if __name__ == "__main__":
    main()
