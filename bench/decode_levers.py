#!/usr/bin/env python3
"""Micro-benchmarks behind issue 19 section 6 (docs/BENCHMARKS.md): the GEMM floor of one bf16 decode step of
the small config at K rows, and the levers tried on the rest. torch's own ops on this CPU (the LibTorch evoq
links is the same torch), no evoq code: what the kernels can do, not what evoq does.

  python bench/decode_levers.py [--threads 2] [--rows 32]

Prints milliseconds (median-free mean over many calls after a warm-up) per item:
  gemm floor   packed bf16 products (mkldnn _reorder_linear_weight + _linear_pointwise) of the small config's
               qkv, o, gate/up, down (x 16 layers) and the tied lm_head: one step's matrix products;
  lm_head      whole against 2-19 packed chunks;
  scores       one layer's prompt-score product [2, 7K, 64] x [64, 630], fp32 through MKL (baddbmm) against
               fp32 through oneDNN (_linear_pointwise with the keys as the weight), 1 thread;
  rms_norm     torch.rms_norm against layer_norm on [K, 896] bf16;
  sampling     sub + exp over [K, 151936] fp32 logits against softmax.
"""
import argparse
import time

import torch

HIDDEN, INTER, VOCAB, LAYERS, Q_ROWS, KV_ROWS = 896, 4864, 151936, 16, 896, 128


def ms(f, calls):
    for _ in range(max(3, calls // 10)):
        f()
    start = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - start) / calls * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=32)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    lp, pack = torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight
    m = a.rows
    print(f"torch {torch.__version__}, {a.threads} threads, {m} rows")

    shapes = {"qkv": (Q_ROWS + 2 * KV_ROWS, HIDDEN), "o": (HIDDEN, Q_ROWS), "gate_up": (2 * INTER, HIDDEN),
              "down": (HIDDEN, INTER), "lm_head": (VOCAB, HIDDEN)}
    step = 0.0
    weights = {}
    for name, (n, k) in shapes.items():
        w = torch.randn(n, k).bfloat16()
        weights[name] = w
        packed, x = pack(w, m), torch.randn(m, k).bfloat16()
        t = ms(lambda: lp(x, packed, None, "none", [], ""), 20 if name == "lm_head" else 200)
        step += t * (1 if name == "lm_head" else LAYERS)
        print(f"gemm floor  {name:8s} {t:8.3f} ms  {2 * m * n * k / t / 1e6:6.0f} GFLOP/s")
    print(f"gemm floor  step     {step:8.2f} ms (16 layers + lm_head)")

    x = torch.randn(m, HIDDEN).bfloat16()
    for parts in (1, 2, 4, 8, 19):
        n = VOCAB // parts
        chunks = [pack(weights["lm_head"][i * n:(i + 1) * n].contiguous(), m) for i in range(parts)]
        out = torch.empty(m, n * parts, dtype=torch.bfloat16)

        def chunked():
            for i, c in enumerate(chunks):
                out[:, i * n:(i + 1) * n] = lp(x, c, None, "none", [], "")
        print(f"lm_head     {parts:2d} chunk(s) {ms(chunked, 10):8.2f} ms")

    torch.set_num_threads(1)
    q, keys, bias = torch.randn(2, 7 * m, 64), torch.randn(2, 630, 64), torch.zeros(2, 1, 630)
    print(f"scores      MKL fp32 baddbmm      {ms(lambda: torch.baddbmm(bias, q, keys.transpose(1, 2)), 200) * 1e3:8.0f} us (1 thread)")
    print(f"scores      oneDNN fp32 linear x2 "
          f"{ms(lambda: [lp(q[i], keys[i], bias[i, 0], 'none', [], '') for i in range(2)], 200) * 1e3:8.0f} us (1 thread)")
    torch.set_num_threads(a.threads)

    h, g = torch.randn(m, HIDDEN).bfloat16(), torch.randn(HIDDEN).bfloat16()
    print(f"rms_norm    torch.rms_norm {ms(lambda: torch.rms_norm(h, (HIDDEN,), g, 1e-6), 2000) * 1e3:6.1f} us; "
          f"layer_norm {ms(lambda: torch.layer_norm(h, (HIDDEN,), g, None, 1e-6), 2000) * 1e3:6.1f} us")

    logits = torch.randn(m, VOCAB)
    top, work = logits.amax(-1, keepdim=True), torch.empty_like(logits)
    print(f"sampling    sub + exp {ms(lambda: torch.sub(logits, top, out=work).exp_(), 50):6.2f} ms; "
          f"softmax {ms(lambda: torch.softmax(logits, -1), 50):6.2f} ms")


if __name__ == "__main__":
    main()
