#!/usr/bin/env python3
"""GPU acceptance driver: evoq (the `evoq_accept` tool of tests/gpu) against transformers on one random
Qwen2.5-VL with the 7B's widths and a cut depth, and ONE JSON of results. scripts/gpu_acceptance.sh
builds the tool and runs this; docs/BENCHMARKS.md "GPU acceptance" says what each field means.

Stages (all on one device, nothing downloaded):
  parity   logits of the full forward and of prefill + cached decode (teacher-forced continuation)
           against transformers' forward over prompt + continuation: fp32 with TF32 off, then bf16
           (bf16 passes when evoq's distance to transformers' fp32 logits is within 1.5x of
           transformers' own bf16 distance to them);
  prefill  latency of one prompt (two 448x448 images) against transformers' forward with a cache;
  decode   K samples of N new tokens (no stop) against transformers generate, K = 8/32/64;
  grpo     one GRPO micro-step with activation checkpointing off and on: gradients must agree; then one
           AdamW step through the device communicator;
  nccl     the 1-rank NCCL collectives, their stream ordering and a clean finalize/destroy.

--dry-run: a tiny model on the CPU with small K and N (the CTest test gpu.acceptance_dry_run); the
nccl stage reports "skipped". Exit status 0 when every stage that ran passed, 1 otherwise.
"""
import argparse
import datetime
import gc
import inspect
import json
import os
import platform
import socket
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data_prep"))
import tiny_qwen_vl as tq  # noqa: E402

QWEN_SPECIAL = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                    vision_end_token_id=151653)
TINY_SPECIAL = dict(image_token_id=995, video_token_id=996, vision_start_token_id=993, vision_end_token_id=994)

# Qwen2.5-VL-7B-Instruct's widths (its config.json); depth is cut by --layers / --vision-layers.
SIZES = {
    "7b": dict(text=dict(hidden_size=3584, intermediate_size=18944, num_attention_heads=28, num_key_value_heads=4,
                         vocab_size=152064, max_position_embeddings=128000, mrope=[16, 24, 24]),
               vision=dict(hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584),
               special=QWEN_SPECIAL, grids=[(1, 32, 32), (1, 32, 32)],  # two 448x448 images
               init_std=None, text_tokens=(40, 60), layers=4, vision_layers=4, fp32_tol=1e-3),
    "tiny": dict(text=dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                           vocab_size=1000, max_position_embeddings=4096, mrope=[2, 3, 3]),
                 vision=dict(hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64),
                 special=TINY_SPECIAL, grids=[(1, 6, 8), (1, 10, 14)],  # partial and full windows
                 init_std=0.1, text_tokens=(5, 7), layers=2, vision_layers=3, fp32_tol=1e-4),
}
# Calibrated by the first H200 run (docs/BENCHMARKS.md "GPU acceptance"), about 5x above what it measured:
# fp32 max |logit diff| 5.1e-5 (4 layers) and 1.9e-4 (28 layers); evoq's bf16 error 0.81-1.00x
# transformers' own; checkpointing gradient gap 9.5e-4 under bf16 autocast.
BF16_FACTOR = 1.5      # evoq bf16 error vs fp32 oracle <= this x transformers bf16 error (+ a floor)
GRPO_TOL = {"off": 1e-4, "bf16": 5e-3}  # relative L2 gap of the gradients, checkpointing on vs off


def log(*args):
    print("[acceptance]", *args, file=sys.stderr, flush=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_tf32(on):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def build_model(size, layers, vision_layers, device, out_dir):
    s = SIZES[size]
    text = dict(s["text"])
    mrope = text.pop("mrope")
    fullatt = sorted({vision_layers - 1, max(0, vision_layers // 2 - 1)})
    # tiny widths: the init widened (init_std) so that every part of the model moves the logits
    model = tq.make_model("qwen2_5_vl", seed=0, device=device, widen_std=s["init_std"], tied=False,
                          special=s["special"], text=dict(text, num_hidden_layers=layers,
                                                          rope_scaling={"type": "mrope", "mrope_section": mrope}),
                          vision=dict(s["vision"], depth=vision_layers, fullatt_block_indexes=fullatt, window_size=112,
                                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2, hidden_act="silu"))
    model.save_pretrained(out_dir)
    return model


def make_inputs(size, path, continuation_len):
    """Random text ids around the image runs (below the special ids), random pixels; saved for the tool."""
    from safetensors.torch import save_file
    s = SIZES[size]
    sp = s["special"]
    g = torch.Generator().manual_seed(1)
    high = min(s["text"]["vocab_size"] - 16, 150000)
    before, after = s["text_tokens"]
    ids = torch.randint(1, high, (before,), generator=g).tolist()
    for t, h, w in s["grids"]:
        ids += [sp["vision_start_token_id"]] + [sp["image_token_id"]] * (t * h * w // 4) + [sp["vision_end_token_id"]]
    ids += torch.randint(1, high, (after,), generator=g).tolist()
    patches = sum(t * h * w for t, h, w in s["grids"])
    inputs = {"input_ids": torch.tensor([ids], dtype=torch.int64),
              "pixel_values": torch.randn(patches, 3 * 2 * 14 * 14, generator=g),
              "image_grid_thw": torch.tensor(s["grids"], dtype=torch.int64),
              "continuation": torch.randint(1, high, (continuation_len,), generator=g)}
    save_file({k: v.contiguous() for k, v in inputs.items()}, path)
    return inputs


def hf_kwargs(model, input_ids, inputs, device):
    kw = dict(input_ids=input_ids.to(device), pixel_values=inputs["pixel_values"].to(device),
              image_grid_thw=inputs["image_grid_thw"].to(device))
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        kw["mm_token_type_ids"] = (input_ids == model.config.image_token_id).int().to(device)
    return kw


def hf_references(model, inputs, args, device):
    """transformers' logits over prompt + continuation (fp32 TF32 off, then bf16), prefill time and
    generate throughput (bf16). The model is left in bf16."""
    ref = {}
    full = torch.cat([inputs["input_ids"], inputs["continuation"].view(1, -1)], 1)
    set_tf32(False)
    with torch.no_grad():
        ref["fp32"] = model(**hf_kwargs(model, full, inputs, device)).logits[0].float().cpu().numpy()
        model.to(torch.bfloat16)
        ref["bf16"] = model(**hf_kwargs(model, full, inputs, device)).logits[0].float().cpu().numpy()
    try:
        hf_timings(model, inputs, args, device, ref)
    except Exception as e:  # noqa: BLE001 -- the parity references above are still worth reporting
        ref["timing_error"] = f"{type(e).__name__}: {e}"
        log("transformers timings failed:", ref["timing_error"])
    return ref


def hf_timings(model, inputs, args, device, ref):
    """transformers' prefill latency and generate throughput (bf16), into ref."""
    if "prefill" in args.stages:
        kw = hf_kwargs(model, inputs["input_ids"], inputs, device)
        if "logits_to_keep" in inspect.signature(model.forward).parameters:
            kw["logits_to_keep"] = 1
        times = []
        with torch.no_grad():
            for i in range(args.repeat + 1):  # the first is a warm-up
                sync(device)
                t0 = time.perf_counter()
                model(**kw, use_cache=True)
                sync(device)
                if i:
                    times.append(1e3 * (time.perf_counter() - t0))
        ref["prefill_ms"] = sorted(times)[len(times) // 2]
    if "decode" in args.stages:
        ref["decode"] = {}
        kw = hf_kwargs(model, inputs["input_ids"], inputs, device)
        kw["attention_mask"] = torch.ones_like(kw["input_ids"])

        def generate(k, n):
            with torch.no_grad():
                return model.generate(**kw, do_sample=True, num_return_sequences=k, max_new_tokens=n, min_new_tokens=n,
                                      temperature=1.0, top_k=0, top_p=1.0, eos_token_id=None, pad_token_id=0)

        generate(2, min(4, args.new_tokens))  # warm-up
        for k in args.k:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t0 = time.perf_counter()
            seq = generate(k, args.new_tokens)
            sync(device)
            seconds = time.perf_counter() - t0
            tokens = int((seq.shape[1] - kw["input_ids"].shape[1]) * seq.shape[0])
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
            ref["decode"][k] = dict(seconds=seconds, tokens=tokens, tokens_per_second=tokens / seconds, peak_gib=peak)


def run_tool(args, model_dir, inputs_path, out_dir, dtype, stages, extra=()):
    cmd = [args.tool, "--model", model_dir, "--inputs", inputs_path, "--out", out_dir, "--device", args.device,
           "--dtype", dtype, "--tf32", "0", "--stages", ",".join(stages), "--k", ",".join(map(str, args.k)),
           "--new-tokens", str(args.new_tokens), "--repeat", str(args.repeat), "--threads", str(args.threads),
           *extra]
    log(" ".join(cmd))
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=args.tool_timeout)
    except subprocess.TimeoutExpired as e:  # a hang (a collective, say) must not cost the whole report
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        res = subprocess.CompletedProcess(cmd, -9, "", err + f"\nkilled after --tool-timeout {args.tool_timeout} s")
    sys.stderr.write(res.stderr)
    # The tool rewrites result.json after each stage: a failed stage (or a crash) keeps the others.
    path = os.path.join(out_dir, "result.json")
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            out = json.load(f)
    if res.returncode != 0:
        last = res.stderr.strip().splitlines()[-1:] or [""]
        out["error"] = f"evoq_accept exited with {res.returncode}: {last[0]}"
        log(out["error"])
    out["process_seconds"] = time.perf_counter() - t0
    return out


def stage_result(results, dtype, stage):
    """The tool's result of one stage, or an exception that says why there is none."""
    run = results.get(dtype, {})
    if stage not in run:
        raise RuntimeError(run.get("error", f"evoq_accept ({dtype}) did not run stage {stage}"))
    if "error" in run[stage]:
        raise RuntimeError(f"evoq_accept ({dtype}) {stage}: {run[stage]['error']}")
    return run[stage]


def distance(ours, ref):
    d = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    return dict(max_abs=float(d.max()), mean_abs=float(d.mean()), ref_std=float(ref.std()),
                top1_agreement=float((ours.argmax(-1) == ref.argmax(-1)).mean()))


def parity_report(parity, ref, L, dtype, fp32_tol):
    from safetensors.numpy import load_file
    got = load_file(parity["logits_file"])
    C = got["decode"].shape[0] - 1
    parts = {"forward": (got["forward"], slice(0, L)), "decode": (got["decode"], slice(L - 1, L + C))}
    rep = {"copies_max_diff": parity["copies_max_diff"], "decode_steps": C}
    ok = True
    for name, (ours, rows) in parts.items():
        r = distance(ours, ref["fp32"][rows])
        if dtype == "fp32":
            r["tolerance_max_abs"] = fp32_tol
            r["pass"] = r["max_abs"] <= fp32_tol
        else:
            hf = distance(ref["bf16"][rows], ref["fp32"][rows])
            r["transformers_bf16_mean_abs"] = hf["mean_abs"]
            r["transformers_bf16_top1_agreement"] = hf["top1_agreement"]
            bound = BF16_FACTOR * hf["mean_abs"] + 1e-6
            r["tolerance_mean_abs"] = bound
            r["pass"] = r["mean_abs"] <= bound
        ok = ok and r["pass"]
        rep[name] = r
    copies_tol = fp32_tol if dtype == "fp32" else 1e-2 * max(1.0, rep["forward"]["ref_std"])
    rep["copies_pass"] = rep["copies_max_diff"] <= copies_tol
    rep["pass"] = ok and rep["copies_pass"]
    return rep


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="the evoq_accept binary")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", default="7b", choices=sorted(SIZES))
    ap.add_argument("--layers", type=int, help="decoder layers (default: 4 for 7b, 2 for tiny)")
    ap.add_argument("--vision-layers", type=int, help="vision blocks (default: 4 for 7b, 3 for tiny)")
    ap.add_argument("--k", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--continuation", type=int, default=6, help="teacher-forced decode steps of the parity stage")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0 = default)")
    ap.add_argument("--stages", default="parity,prefill,decode,grpo,nccl")
    ap.add_argument("--tool-timeout", type=float, default=900, help="seconds each evoq_accept process may run")
    ap.add_argument("--workdir", default="gpu_acceptance_work")
    ap.add_argument("--out", default="gpu_acceptance.json")
    ap.add_argument("--build-json", help="the build stage's record (scripts/gpu_acceptance.sh writes it)")
    ap.add_argument("--dry-run", action="store_true", help="tiny model on the CPU, K = 2 4, 8 new tokens")
    args = ap.parse_args()
    if args.dry_run:
        args.device, args.size, args.k, args.new_tokens, args.repeat = "cpu", "tiny", [2, 4], 8, 2
        args.continuation, args.threads = 4, args.threads or 2
    args.stages = [s for s in args.stages.split(",") if s]
    size = SIZES[args.size]
    layers = args.layers or size["layers"]
    vision_layers = args.vision_layers or size["vision_layers"]
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.workdir, exist_ok=True)
    t_start = time.perf_counter()
    import transformers

    report = {"schema": "evoq-gpu-acceptance/1", "when": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "host": socket.gethostname(), "dry_run": args.dry_run,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "cuda": torch.version.cuda, "python": platform.python_version()},
              "stages": args.stages, "timings": {}}
    if args.build_json and os.path.exists(args.build_json):
        with open(args.build_json) as f:
            report["build"] = json.load(f)

    model_dir = os.path.join(args.workdir, "model")
    inputs_path = os.path.join(args.workdir, "inputs.safetensors")
    t0 = time.perf_counter()
    model = build_model(args.size, layers, vision_layers, device, model_dir)
    inputs = make_inputs(args.size, inputs_path, args.continuation)
    L = inputs["input_ids"].shape[1]
    report["model"] = {"size": args.size, "text_layers": layers, "vision_layers": vision_layers,
                       "parameters": sum(p.numel() for p in model.parameters()), "prompt_tokens": L,
                       "image_grids": SIZES[args.size]["grids"], "continuation_tokens": args.continuation,
                       "k": args.k, "new_tokens": args.new_tokens}
    report["timings"]["model_build_s"] = time.perf_counter() - t0
    log(f"model: {report['model']['parameters'] / 1e9:.2f}B parameters, prompt {L} tokens")

    t0 = time.perf_counter()
    ref = hf_references(model, inputs, args, device)
    report["timings"]["transformers_s"] = time.perf_counter() - t0
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    passes = []
    grpo_autocast = "bf16" if device.type == "cuda" else "off"
    fp32_stages = [s for s in ("parity", "grpo") if s in args.stages]
    bf16_stages = [s for s in ("parity", "prefill", "decode", "nccl") if s in args.stages]
    results = {}
    if fp32_stages:
        results["fp32"] = run_tool(args, model_dir, inputs_path, os.path.join(args.workdir, "fp32"), "fp32",
                                   fp32_stages, ["--autocast", grpo_autocast])
        report["timings"]["evoq_fp32_s"] = results["fp32"]["process_seconds"]
    if bf16_stages:
        results["bf16"] = run_tool(args, model_dir, inputs_path, os.path.join(args.workdir, "bf16"), "bf16",
                                   bf16_stages)
        report["timings"]["evoq_bf16_s"] = results["bf16"]["process_seconds"]

    def section(name, build):
        """One report section; an exception becomes {"error", "pass": false} and the others still run."""
        try:
            report[name] = build()
        except Exception as e:  # noqa: BLE001
            report[name] = {"error": f"{type(e).__name__}: {e}", "pass": False}
            log(f"{name}: {report[name]['error']}")
        if "pass" in report[name]:
            passes.append(bool(report[name]["pass"]))

    def parity():
        rep = {}
        for dt in ("fp32", "bf16"):
            try:
                rep[dt] = parity_report(stage_result(results, dt, "parity"), ref, L, dt, size["fp32_tol"])
            except Exception as e:  # noqa: BLE001
                rep[dt] = {"error": f"{type(e).__name__}: {e}", "pass": False}
        rep["pass"] = all(rep[dt]["pass"] for dt in ("fp32", "bf16"))
        return rep

    def prefill():
        ours = stage_result(results, "bf16", "prefill")
        if "prefill_ms" not in ref:
            raise RuntimeError(ref.get("timing_error", "no transformers prefill time"))
        return {"dtype": "bf16", "tokens": ours["tokens"], "evoq_ms": ours["median_ms"],
                "transformers_ms": ref["prefill_ms"], "speedup": ref["prefill_ms"] / ours["median_ms"],
                "evoq_peak_gib": ours["peak_gib"]}

    def decode():
        rows = []
        for run in stage_result(results, "bf16", "decode")["runs"]:
            hf = ref.get("decode", {}).get(run["k"])
            row = {"k": run["k"], "new_tokens": run["new_tokens"], "evoq_tok_s": run["tokens_per_second"],
                   "evoq_seconds": run["seconds"], "evoq_prefill_s": run["prefill_seconds"],
                   "evoq_decode_s": run["decode_seconds"], "evoq_peak_gib": run["peak_gib"]}
            if hf:
                row.update({"transformers_tok_s": hf["tokens_per_second"],
                            "speedup": run["tokens_per_second"] / hf["tokens_per_second"],
                            "transformers_seconds": hf["seconds"], "transformers_peak_gib": hf["peak_gib"]})
            rows.append(row)
        rep = {"dtype": "bf16", "runs": rows}
        if "timing_error" in ref:
            rep["transformers_error"] = ref["timing_error"]
        return rep

    def grpo():
        g = dict(stage_result(results, "fp32", "grpo"))
        g["tolerance_rel"] = GRPO_TOL[g["autocast"]]
        opt = g["optimizer"]
        g["optimizer"]["grad_norm_rel_diff"] = abs(opt["grad_norm"] - opt["grad_norm_expected"]) / max(
            opt["grad_norm_expected"], 1e-30)
        g["pass"] = bool(g["grad_rel_diff"] <= g["tolerance_rel"] and g["grad_norm"] > 0 and opt["applied"]
                         and opt["grad_norm_rel_diff"] <= 1e-4 and opt["max_param_change"] > 0)
        return g

    def nccl():
        rep = dict(stage_result(results, "bf16", "nccl"))
        if "skipped" in rep:
            rep.pop("pass", None)  # a skipped stage neither passes nor fails
        else:
            rep["pass"] = bool(rep["pass"])
        return rep

    for name, build in (("parity", parity), ("prefill", prefill), ("decode", decode), ("grpo", grpo),
                        ("nccl", nccl)):
        if name in args.stages:
            section(name, build)
    report["evoq"] = {dt: {k: v for k, v in r.items() if k in ("load_seconds", "parameters", "torch_threads", "error")}
                      for dt, r in results.items()}
    report["timings"]["total_s"] = time.perf_counter() - t_start
    report["pass"] = bool(passes) and all(passes)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    log(f"wrote {args.out}: {'PASS' if report['pass'] else 'FAIL'} in {report['timings']['total_s']:.0f} s")
    print(json.dumps({k: report[k] for k in ("pass", "timings")}))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
