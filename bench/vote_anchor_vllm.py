#!/usr/bin/env python3
"""The voting job written the way a researcher would with vLLM (offline `LLM.generate`): every pair is one
request per shown image order with n = that order's share of the K samples, all requests handed to vLLM
in one call (it schedules them continuously), then the answers parsed and Eq. 1 applied. No early stop.
The vLLM anchor of bench/bench_vote_job.py (issue 19, item 2); runs in the venv of bench/setup_vllm.sh.

Prints one JSON line like bench/vote_anchor_transformers.py.

usage: vote_anchor_vllm.py --model DIR --pairs pairs.json [-K 32] [--max-new-tokens 64] [--dtype bf16|fp32]
         [--threads 2] [--reasoning 1] [--seed 3] [--eager 1] [--kv-cache-gib 2]
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vote_common as vc  # noqa: E402


def main():
    ap = vc.anchor_arguments(default_dtype="bf16")
    ap.add_argument("--eager", type=int, default=1)
    ap.add_argument("--kv-cache-gib", type=int, default=2)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    a = ap.parse_args()
    # The protocol's JSON on the real stdout; vLLM's logs (stdout by default) go to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(a.kv_cache_gib))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0" if a.threads == 1 else f"0-{a.threads - 1}")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import torch
    import vllm
    from PIL import Image
    gen = json.load(open(os.path.join(a.model, "generation_config.json")))
    stop = gen.get("eos_token_id", [])
    stop = stop if isinstance(stop, list) else [stop]
    t0 = time.perf_counter()
    llm = vllm.LLM(model=a.model, dtype={"bf16": "bfloat16", "fp32": "float32"}[a.dtype], max_model_len=2048,
                   max_num_seqs=a.max_num_seqs, limit_mm_per_prompt={"image": 2}, enforce_eager=bool(a.eager),
                   seed=a.seed, disable_log_stats=True)
    load_seconds = time.perf_counter() - t0
    text = vc.chat_text(vc.prompt_text(bool(a.reasoning)), [1, 1])  # vLLM expands each pad by the image size
    t0 = time.perf_counter()
    pairs = vc.load_pairs(a.pairs)
    prompts, params, owner = [], [], []
    for p, (path_i, path_j) in enumerate(pairs):
        for swapped, n in enumerate(vc.swap_split(a.seed, p, a.K)):
            if n == 0:
                continue
            order = (path_j, path_i) if swapped else (path_i, path_j)
            prompts.append({"prompt": text, "multi_modal_data": {"image": [Image.open(x).convert("RGB") for x in order]}})
            # No per-request seed (vLLM 0.32 on CPU crashes when a chunked prefill discards a seeded sample:
            # "CPU Generator does not use offset"); the engine's seed (LLM(seed=...)) applies.
            params.append(vllm.SamplingParams(n=n, max_tokens=a.max_new_tokens, temperature=vc.TEMPERATURE,
                                              top_p=vc.TOP_P, top_k=vc.TOP_K, stop_token_ids=stop))
            owner.append((p, swapped))
    results = llm.generate(prompts, params, use_tqdm=False)
    texts = [[[], []] for _ in pairs]
    samples = 0
    for (p, swapped), r in zip(owner, results):
        texts[p][swapped] = [c.text for c in r.outputs]
        samples += len(r.outputs)
    rows = []
    for orig, swap in texts:
        first, second, invalid = vc.tally(orig, swap)
        rows.append({"votes_i": first, "votes_j": second, "invalid": invalid, "p_star": vc.majority_vote(first, second)})
    seconds = time.perf_counter() - t0
    print(json.dumps({"engine": "vllm", "versions": {"vllm": vllm.__version__, "torch": torch.__version__},
                      "seconds": seconds, "load_seconds": load_seconds, "samples": samples, "pairs": rows}), file=out,
          flush=True)


if __name__ == "__main__":
    main()
