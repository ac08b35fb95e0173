#!/usr/bin/env python3
"""The voting workload on three engines side by side in one run: evoq, vLLM (CPU build) and transformers.

Issue 19, item 1. Same model directory, same prompt token ids, same two images per call (a new noise
pair for every call, the same for all engines: no engine may serve a repeated prompt from a cache; all
pairs have one size, so the prompt ids do not change), n = K samples of exactly
--new-tokens tokens (stop ids ignored), full-vocabulary sampling at temperature 1, same dtype and same
thread count on every side. One table per run: for each (dtype, K) the engines' calls are interleaved
repeat by repeat (evoq, vLLM, transformers, evoq, ...), so that a change of load on the shared machine
hits all three alike; figures are medians of --repeats calls after one warm-up call per held engine.

  tok/s       new tokens / seconds of the engine's own generate call (model load and process start
              excluded; evoq's timer also excludes its image preprocessing, vLLM's and transformers'
              include theirs: a few ms per 448px image);
  TTFT        seconds of the same call with 1 new token (prefill + the first sampled token of K);
  peak RSS    of the whole process (its memory high-water mark): evoq one process per call (load
              included); vLLM and transformers one process per (dtype, K) row (load, warm-up and every
              call of the row);
  start-up    evoq: process wall minus its generate call; others: construction of the engine.

Engines: evoq (one `evoq generate` process per call: load, then a cold first call), evoq-unpacked (the
same with EVOQ_PACKED_WEIGHTS=0), evoq-nokernels (the same with EVOQ_CPU_KERNELS=0: torch's ops where evoq's
CPU kernels run), evoq-held (`evoq generate --requests -` held like the Python workers:
one warm-up call, then the timed calls; what a vote job's process does), vllm, transformers.

vLLM runs in its own venv (bench/setup_vllm.sh) through bench/engine_worker.py, with the engine core in
the worker process (VLLM_ENABLE_V1_MULTIPROCESSING=0), its OpenMP threads bound to cores 0..T-1 and
VLLM_CPU_KVCACHE_SPACE = --vllm-kv-gib. An engine that cannot run a dtype is reported, not hidden.

usage: bench/bench_engines.py [--engines evoq evoq-held vllm transformers evoq-unpacked evoq-nokernels] [--dtypes bf16 fp32] [--k 8 32]
         [--threads 2] [--new-tokens 64] [--repeats 3] [--config small|tiny | --model DIR]
         [--json-out FILE]
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_generate  # noqa: E402  (the small config builder, prompt and images of the generation benchmark)

CACHE = os.environ.get("EVOQ_CACHE", os.path.expanduser("~/.cache/evoq"))
IMAGE_TOKEN = 151655


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def machine():
    model, flags = "?", set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name") and model == "?":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    isa = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    mem = int(open("/proc/meminfo").readline().split()[1]) / 2**20
    return f"{model}, {os.cpu_count()} vCPU, {mem:.0f} GiB, {'+'.join(isa) or 'no avx512'}"


def git_rev():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def image_set(work, seed):
    """Two 448x448 noise images drawn with `seed`: every call votes on a pair no engine has seen, as in a
    real vote (vLLM would otherwise serve the repeated prompt's KV and vision encoding from its caches).
    Same size as bench_generate.images, so the prompt's token ids are the same for every set."""
    import numpy as np
    from PIL import Image
    d = os.path.join(work, "images", str(seed))
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(1000 + seed)
    paths = [os.path.join(d, f"{i}.png") for i in range(2)]
    for p in paths:
        if not os.path.exists(p):
            Image.fromarray(rng.integers(0, 256, (448, 448, 3), dtype=np.uint8)).save(p)
    return paths


def prompt_ids(model_dir, images):
    """The prompt's token ids as transformers' tokenizer and image processor make them (Instruct template):
    (expanded: one <|image_pad|> per image token, compact: one per image; vLLM expands the compact form
    itself and reports the expanded length)."""
    from PIL import Image
    from transformers import AutoTokenizer, Qwen2VLImageProcessor
    tok = AutoTokenizer.from_pretrained(model_dir)
    proc = Qwen2VLImageProcessor.from_pretrained(model_dir)
    grid = proc(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt")["image_grid_thw"]
    text = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    for g in grid:
        text += "<|vision_start|>" + "<|image_pad|>" * int(g.prod() // 4) + "<|vision_end|>"
    text += bench_generate.PROMPT + "<|im_end|>\n<|im_start|>assistant\n"
    compact = text
    for g in grid:
        compact = compact.replace("<|image_pad|>" * int(g.prod() // 4), "<|image_pad|>", 1)
    return tok(text)["input_ids"], tok(compact)["input_ids"]


def child_env(a):
    """Every engine's environment: --omp-wait-policy, when given, for all of them alike."""
    env = dict(os.environ)
    if a.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = a.omp_wait_policy
    return env


# Peak RSS of a child: a process started by exec keeps the memory high-water mark of the process it was
# forked from (here the driver, which built the model), so evoq runs under this small launcher, whose own
# children start from its small image; it writes the child's exit status and peak RSS (KiB) to argv[1].
LAUNCHER = ("import json,os,resource,subprocess,sys;r=subprocess.run(sys.argv[2:]);"
            "json.dump({'rc':r.returncode,'peak_kib':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss},"
            "open(sys.argv[1],'w'))")


# The one-process evoq engines: the environment each adds (A/B runs of evoq's own levers in the same run).
EVOQ_VARIANTS = {"evoq": {}, "evoq-unpacked": {"EVOQ_PACKED_WEIGHTS": "0"}, "evoq-nokernels": {"EVOQ_CPU_KERNELS": "0"}}


def run_evoq(a, model_dir, images, dtype, k, n, seed, engine="evoq"):
    """One `evoq generate` process: its JSON, its peak RSS (MiB) and its whole wall time, with the environment
    of EVOQ_VARIANTS[engine] (evoq-unpacked: bf16 products without packed weights; evoq-nokernels: without
    evoq's CPU kernels)."""
    cmd = [a.evoq, "generate", "--model", model_dir, "--prompt", bench_generate.PROMPT, "--samples", str(k),
           "--seed", str(seed), "--max-new-tokens", str(n), "--threads", str(a.threads), "--dtype", dtype,
           "--json", "--ignore-stop", "--log-level", "warn"]
    for p in images:
        cmd += ["--image", p]
    with tempfile.TemporaryDirectory() as tmp:
        status = os.path.join(tmp, "status.json")
        t0 = time.perf_counter()
        env = dict(child_env(a), **EVOQ_VARIANTS[engine])
        r = subprocess.run([sys.executable, "-c", LAUNCHER, status] + cmd, capture_output=True, text=True,
                           env=env)
        wall = time.perf_counter() - t0
        st = json.load(open(status)) if os.path.exists(status) else {"rc": r.returncode, "peak_kib": 0}
    if st["rc"] != 0:
        return {"error": r.stderr.strip().splitlines()[-1:] or [f"exit {st['rc']}"]}
    j = json.loads(r.stdout.strip().splitlines()[-1])
    tokens = sum(len(s["tokens"]) for s in j["samples"])
    return {"seconds": j["seconds"], "new_tokens": tokens, "prompt_tokens": j["prompt_tokens"],
            "prefill_seconds": j["prefill_seconds"], "decode_seconds": j["decode_seconds"],
            "peak_mib": st["peak_kib"] / 1024.0, "startup_seconds": wall - j["seconds"]}


class EvoqWorker:
    """`evoq generate --requests -` held in its own process (engine "evoq-held"): the model loaded once and
    calls answered warm, as vLLM's and transformers' workers do; what a vote job's process does."""

    def __init__(self, a, model_dir, dtype, log):
        cmd = [a.evoq, "generate", "--model", model_dir, "--prompt", bench_generate.PROMPT, "--requests", "-",
               "--max-new-tokens", str(a.new_tokens), "--threads", str(a.threads), "--dtype", dtype,
               "--ignore-stop", "--log-level", "warn"]
        self.engine, self.log = "evoq-held", open(log, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=child_env(a))
        self.started = time.perf_counter()

    def generate(self, k, n, seed, images):
        t0 = time.perf_counter()
        self.proc.stdin.write(json.dumps({"images": images, "samples": k, "seed": seed, "max_new_tokens": n}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"evoq-held died during a call (see {self.log.name})")
        j = json.loads(line)
        wall = time.perf_counter() - (self.started if self.started else t0)
        self.started = None
        return {"seconds": j["seconds"], "new_tokens": sum(len(s["tokens"]) for s in j["samples"]),
                "prompt_tokens": j["prompt_tokens"], "prefill_seconds": j["prefill_seconds"],
                "decode_seconds": j["decode_seconds"], "wall_seconds": wall}

    def peak_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmHWM")) / 1024.0

    def close(self):
        peak = self.peak_mib()
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.proc.wait()
        self.log.close()
        return peak


class Worker:
    """bench/engine_worker.py held in its own process (vLLM or transformers)."""

    def __init__(self, a, engine, model_dir, images, ids_file, dtype, k, log):
        python = a.vllm_python if engine == "vllm" else sys.executable
        cmd = [python, os.path.join(HERE, "engine_worker.py"), "--engine", engine, "--model", model_dir, "--dtype",
               dtype, "--threads", str(a.threads), "--max-k", str(k),
               "--prompt-ids", ids_file.replace(".json", "_compact.json") if engine == "vllm" else ids_file,
               "--max-model-len", str(a.prompt_tokens + a.new_tokens + 16), "--kv-cache-gib", str(a.vllm_kv_gib)]
        if engine == "vllm" and a.vllm_eager:
            cmd.append("--eager")
        for p in images:
            cmd += ["--image", p]
        self.engine, self.log = engine, open(log, "w")
        env = dict(child_env(a), OMP_NUM_THREADS=str(a.threads))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env)
        self.ready = self._read()
        if self.ready is None or "ready" not in self.ready:
            self.proc.kill()
            self.proc.wait()
            tail = open(log).read().strip().splitlines()[-3:]
            raise RuntimeError(f"{engine} did not start: {' | '.join(tail)}")

    def _read(self):
        line = self.proc.stdout.readline()
        return json.loads(line) if line.strip() else None

    def generate(self, k, n, seed, images):
        self.proc.stdin.write(json.dumps({"k": k, "new_tokens": n, "seed": seed, "images": images}) + "\n")
        self.proc.stdin.flush()
        r = self._read()
        if r is None:
            raise RuntimeError(f"{self.engine} died during a call (see {self.log.name})")
        return r

    def close(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        r = self._read() or {}
        self.proc.wait()
        self.log.close()
        return r.get("peak_mib")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evoq", default=os.path.join(ROOT, "build", "bin", "evoq"))
    ap.add_argument("--vllm-python", default=os.path.join(CACHE, "vllm-venv", "bin", "python"))
    ap.add_argument("--engines", nargs="+", default=["evoq", "vllm", "transformers"])
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--k", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--config", default="small", help="small (bench/configs/small) or tiny, built with random weights")
    ap.add_argument("--model", help="an existing checkpoint directory instead of --config")
    ap.add_argument("--vllm-eager", type=int, default=1, help="vLLM enforce_eager (1: no torch.compile)")
    ap.add_argument("--vllm-kv-gib", type=int, default=2, help="vLLM: VLLM_CPU_KVCACHE_SPACE (GiB)")
    ap.add_argument("--work", default=os.path.join(os.environ.get("EVOQ_BENCH_DIR", "/tmp/evoq-bench")))
    ap.add_argument("--omp-wait-policy", choices=["active", "passive"],
                    help="OMP_WAIT_POLICY for every engine (default: inherited). passive keeps 2-thread runs usable "
                         "on a loaded machine, where spinning OpenMP threads wait on descheduled ones")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    unknown = set(a.engines) - set(EVOQ_VARIANTS) - {"evoq-held", "vllm", "transformers"}
    if unknown:
        raise SystemExit(f"unknown engine(s): {', '.join(sorted(unknown))}")
    if any(e.startswith("evoq") for e in a.engines) and not os.access(a.evoq, os.X_OK):
        raise SystemExit(f"evoq binary not found: {a.evoq} (build first, or --evoq PATH)")
    if "vllm" in a.engines and not os.access(a.vllm_python, os.X_OK):
        raise SystemExit(f"vLLM venv not found: {a.vllm_python} (run bench/setup_vllm.sh, or drop vllm from --engines)")
    os.makedirs(a.work, exist_ok=True)
    model_dir = a.model
    if not model_dir:
        model_dir = os.path.join(a.work, a.config)
        if not os.path.exists(os.path.join(model_dir, "model.safetensors")):
            bench_generate.build(a.config, model_dir)
    images = bench_generate.images(a.work)
    ids, compact = prompt_ids(model_dir, images)
    ids_file = os.path.join(a.work, "prompt_ids.json")
    json.dump(ids, open(ids_file, "w"))
    json.dump(compact, open(os.path.join(a.work, "prompt_ids_compact.json"), "w"))
    a.prompt_tokens = len(ids)

    header = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine(), "evoq": git_rev(), "python": platform.python_version(),
              "model": model_dir, "prompt_tokens": len(ids), "threads": a.threads, "new_tokens": a.new_tokens,
              "repeats": a.repeats, "vllm_eager": bool(a.vllm_eager),
              "omp_wait_policy": child_env(a).get("OMP_WAIT_POLICY", "unset"), "load_before": loadavg()}
    print(json.dumps(header), flush=True)
    rows, versions = [], {}
    for dtype in a.dtypes:
        for k in a.k:
            load0 = loadavg()
            workers, res = {}, {e: {"full": [], "ttft": [], "peak": [], "startup": [], "prefill": [], "decode": [],
                                    "prompt_tokens": set(), "error": None} for e in a.engines}
            for e in a.engines:
                if e in EVOQ_VARIANTS:
                    continue
                try:
                    log = os.path.join(a.work, f"{e}-{dtype}-k{k}.log")
                    if e == "evoq-held":
                        w = EvoqWorker(a, model_dir, dtype, log)
                        warm = w.generate(k, a.new_tokens, 999, image_set(a.work, 999))  # warm-up
                        res[e]["startup"].append(warm["wall_seconds"] - warm["seconds"])
                        workers[e] = w
                        continue
                    w = Worker(a, e, model_dir, images, ids_file, dtype, k, log)
                    versions.update({f"{e}: {lib}": v for lib, v in w.ready["versions"].items()})
                    res[e]["startup"].append(w.ready["load_seconds"])
                    w.generate(k, a.new_tokens, 999, image_set(a.work, 999))  # warm-up
                    workers[e] = w
                except RuntimeError as err:
                    res[e]["error"] = str(err)[:300]
            for kind, n in (("full", a.new_tokens), ("ttft", 1)):
                for rep in range(a.repeats):
                    call_images = image_set(a.work, 2 * rep + (kind == "ttft"))  # a new pair per call
                    for e in a.engines:
                        if res[e]["error"]:
                            continue
                        if e in EVOQ_VARIANTS:
                            r = run_evoq(a, model_dir, call_images, dtype, k, n, rep + 1, engine=e)
                            if "error" in r:
                                res[e]["error"] = r["error"][0][:300]
                                continue
                            res[e]["peak"].append(r["peak_mib"])
                            if kind == "full":
                                res[e]["startup"].append(r["startup_seconds"])
                                res[e]["prefill"].append(r["prefill_seconds"])
                                res[e]["decode"].append(r["decode_seconds"])
                        else:
                            try:
                                r = workers[e].generate(k, n, rep + 1, call_images)
                            except RuntimeError as err:
                                res[e]["error"] = str(err)[:300]
                                continue
                            if kind == "full" and "prefill_seconds" in r:
                                res[e]["prefill"].append(r["prefill_seconds"])
                                res[e]["decode"].append(r["decode_seconds"])
                        res[e]["prompt_tokens"].add(r["prompt_tokens"])
                        if r["prompt_tokens"] != len(ids):  # not the same workload
                            res[e]["error"] = f"prompt of {r['prompt_tokens']} tokens instead of {len(ids)}"
                        if r["new_tokens"] != k * n:
                            res[e]["error"] = f"{r['new_tokens']} tokens instead of {k * n}"
                        res[e][kind].append(r["seconds"] if kind == "ttft" else (r["seconds"], r["new_tokens"]))
            for e, w in workers.items():
                if w.proc.poll() is None:
                    res[e]["peak"].append(w.close() or float("nan"))
            load1 = loadavg()
            for e in a.engines:
                r = res[e]
                sec = median([s for s, _ in r["full"]])
                row = {"engine": e, "dtype": dtype, "k": k, "error": r["error"], "seconds": sec,
                       "tok_s": (k * a.new_tokens) / sec if r["full"] else float("nan"),
                       "ttft_s": median(r["ttft"]), "peak_mib": max(r["peak"]) if r["peak"] else float("nan"),
                       "startup_s": median(r["startup"]), "prefill_s": median(r["prefill"]),
                       "decode_s": median(r["decode"]), "prompt_tokens": sorted(r["prompt_tokens"]),
                       "runs": [s for s, _ in r["full"]], "load": [load0, load1]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    footer = {"versions": versions, "load_after": loadavg()}
    print(json.dumps(footer), flush=True)

    print(f"\n{header['date']}; {header['machine']}; evoq {header['evoq']}; "
          + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
          + f"; OMP_WAIT_POLICY {header['omp_wait_policy']}; {a.threads} threads, {len(ids)} prompt tokens, {a.new_tokens} new tokens, median of {a.repeats}; "
          f"load {' '.join(header['load_before'])} before, {' '.join(footer['load_after'])} after")
    held = "evoq-held" in a.engines
    print("\n| dtype | K | engine | tok/s | evoq / engine |" + (" evoq-held / engine |" if held else "")
          + " TTFT s | prefill / decode s | peak RSS MiB | start-up s | runs s | load (1-min) before/after |")
    print("|---|---|---|---|---|" + ("---|" if held else "") + "---|---|---|---|---|---|")

    def ratio(name, r):
        ours = next((x for x in rows if x["engine"] == name and x["dtype"] == r["dtype"] and x["k"] == r["k"]), None)
        return ours["tok_s"] / r["tok_s"] if ours and not ours["error"] else float("nan")

    for r in rows:
        if r["error"]:
            print(f"| {r['dtype']} | {r['k']} | {r['engine']} | failed: {r['error']} |" + " |" * (8 + held))
            continue
        split = f"{r['prefill_s']:.2f} / {r['decode_s']:.2f}" if r["decode_s"] == r["decode_s"] else "-"
        print(f"| {r['dtype']} | {r['k']} | {r['engine']} | {r['tok_s']:.1f} | {ratio('evoq', r):.2f}x |"
              + (f" {ratio('evoq-held', r):.2f}x |" if held else "")
              + f" {r['ttft_s']:.2f} | {split} | {r['peak_mib']:.0f} | {r['startup_s']:.1f} | "
              f"{' '.join(f'{s:.2f}' for s in r['runs'])} | {r['load'][0][0]} / {r['load'][1][0]} |")
    if a.json_out:
        json.dump({"header": header, "rows": rows, "footer": footer}, open(a.json_out, "w"), indent=1)


if __name__ == "__main__":
    main()
