#!/usr/bin/env python3
"""One engine (vLLM or transformers) held in a process and driven over stdin/stdout by
bench/bench_engines.py, so that its timed calls can be interleaved with evoq's runs under the same load.

Runs under the engine's own python (vLLM: its venv from bench/setup_vllm.sh; transformers: evoq's venv).
Protocol: after loading it prints one JSON line {"ready": ..., "load_seconds": ..., "versions": ...};
then each input line is a JSON request {"k": K, "new_tokens": N, "seed": S, "images": [A, B]} (a new
pair per call, its image processing inside the timed call) answered by one JSON line
{"seconds": wall of the generate call, "new_tokens": tokens produced, "prompt_tokens": ...}; an empty
line or EOF ends it with {"peak_mib": the process's peak RSS}.

The prompt is given as token ids (the same ids for every engine; images of one size); sampling is the
full vocabulary at temperature 1 with every sample run to exactly N tokens (stop ids ignored).

usage: engine_worker.py --engine vllm|transformers --model DIR --dtype bf16|fp32 --threads T
         --prompt-ids ids.json --image A --image B [--kv-cache-gib 2] [--eager]
(--image: the images that size the model's limits, e.g. vLLM's images per prompt)
"""
import argparse
import json
import os
import sys
import time

DTYPES = {"bf16": "bfloat16", "fp32": "float32"}
IMAGE_TOKEN, PAD = 151655, 151643


def peak_mib():
    """This process's memory high-water mark. VmHWM, not ru_maxrss: the latter keeps the peak of the
    process this one was forked from (the benchmark driver)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class Vllm:
    def __init__(self, a, ids, images):
        # Before importing vllm: its CPU backend reads these at import/start.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(a.kv_cache_gib))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0" if a.threads == 1 else f"0-{a.threads - 1}")
        # The engine core in this process: one process to measure (RSS) and no IPC in the timed path.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        import torch
        import vllm
        from PIL import Image
        self.vllm = vllm
        # ids are the compact form (one <|image_pad|> per image): vLLM expands them by the image's size.
        self.llm = vllm.LLM(model=a.model, dtype=DTYPES[a.dtype], max_model_len=a.max_model_len,
                            max_num_seqs=max(a.max_k, 1), limit_mm_per_prompt={"image": len(images)},
                            enforce_eager=a.eager, seed=0, disable_log_stats=True)
        self.ids, self.image = ids, Image
        self.versions = {"vllm": vllm.__version__, "torch": torch.__version__}

    def generate(self, k, n, seed, images):
        # No per-request seed: vLLM 0.32 on CPU then crashes when a chunked prefill discards a sampled token
        # ("CPU Generator does not use offset"); the engine's global seed (LLM(seed=0)) is used instead.
        params = self.vllm.SamplingParams(n=k, max_tokens=n, min_tokens=n, ignore_eos=True, temperature=1.0,
                                          top_p=1.0, top_k=0, detokenize=False)
        t0 = time.perf_counter()
        prompt = {"prompt_token_ids": self.ids,
                  "multi_modal_data": {"image": [self.image.open(p).convert("RGB") for p in images]}}
        out = self.llm.generate([prompt], params, use_tqdm=False)[0]
        dt = time.perf_counter() - t0
        return {"seconds": dt, "new_tokens": sum(len(c.token_ids) for c in out.outputs),
                "prompt_tokens": len(out.prompt_token_ids)}


class Transformers:
    def __init__(self, a, ids, images):
        import torch
        import transformers as tf
        from PIL import Image
        torch.set_num_threads(a.threads)
        self.torch = torch
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
        self.model = tf.AutoModelForImageTextToText.from_pretrained(a.model, dtype=dtype).eval()
        self.proc, self.image, self.dtype = tf.Qwen2VLImageProcessor.from_pretrained(a.model), Image, dtype
        self.ids = torch.tensor([ids])
        self.versions = {"transformers": tf.__version__, "torch": torch.__version__}

    def generate(self, k, n, seed, images):
        torch = self.torch
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        px = self.proc(images=[self.image.open(p).convert("RGB") for p in images], return_tensors="pt")
        with torch.no_grad():
            seq = self.model.generate(input_ids=self.ids, attention_mask=torch.ones_like(self.ids),
                                      pixel_values=px["pixel_values"].to(self.dtype),
                                      image_grid_thw=px["image_grid_thw"],
                                      mm_token_type_ids=(self.ids == IMAGE_TOKEN).int(), do_sample=True,
                                      num_return_sequences=k, max_new_tokens=n, min_new_tokens=n, temperature=1.0,
                                      top_k=0, top_p=1.0, eos_token_id=None, pad_token_id=PAD)
        dt = time.perf_counter() - t0
        return {"seconds": dt, "new_tokens": int((seq.shape[1] - self.ids.shape[1]) * seq.shape[0]),
                "prompt_tokens": int(self.ids.shape[1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", choices=["vllm", "transformers"], required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dtype", choices=sorted(DTYPES), required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--prompt-ids", required=True, help="JSON list of the prompt's token ids")
    ap.add_argument("--image", action="append", default=[])
    ap.add_argument("--max-k", type=int, default=32, help="largest n that will be asked (vLLM's max_num_seqs)")
    ap.add_argument("--max-new-tokens", type=int, default=128, help="longest request (vLLM's max_model_len)")
    ap.add_argument("--max-model-len", type=int, default=2048, help="vLLM: longest prompt + new tokens")
    ap.add_argument("--kv-cache-gib", type=int, default=2, help="vLLM: VLLM_CPU_KVCACHE_SPACE")
    ap.add_argument("--eager", action="store_true", help="vLLM: enforce_eager (no torch.compile)")
    a = ap.parse_args()
    # The protocol keeps the real stdout; everything the libraries print (vLLM logs to stdout) goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    ids = json.load(open(a.prompt_ids))
    t0 = time.perf_counter()
    engine = (Vllm if a.engine == "vllm" else Transformers)(a, ids, a.image)
    print(json.dumps({"ready": a.engine, "load_seconds": time.perf_counter() - t0, "versions": engine.versions,
                      "pid": os.getpid()}), file=out, flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        req = json.loads(line)
        print(json.dumps(engine.generate(req["k"], req["new_tokens"], req.get("seed", 0), req["images"])), file=out,
              flush=True)
    print(json.dumps({"peak_mib": peak_mib()}), file=out, flush=True)


if __name__ == "__main__":
    main()
