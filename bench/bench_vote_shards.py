#!/usr/bin/env python3
"""Cost of the vote stage's crash-safe shard flushes at the paper's size (issue 15).

Runs the real vote loop and label store (`evoq-testtool debug-evo vote-fake`: a hash-based fake model, so the
model costs nothing but a fixed sleep per sample) on N pairs x K samples with every response kept and
padded to --response-bytes, 1 rank, and reports from the run's own per-flush timings:
  - flush time per flush over the run (first and last tenth, median, max): constant when a flush
    writes only the new pairs, growing with the shard when it rewrites everything;
  - total flush time as a share of the wall time;
  - bytes written to the shard folder vs the bytes of the data kept (responses + per-sample and
    per-pair columns), and labels.h5 (written once at the end).

usage: bench/bench_vote_shards.py [--evoq build/bin/evoq] [--pairs 20000] [--k 32] [--response-bytes 1024]
                                  [--sleep-us 250] [--flush-every 16] [--work DIR]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evoq", default=os.path.join(ROOT, "build", "bin", "evoq"))
    ap.add_argument("--pairs", type=int, default=20000)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--response-bytes", type=int, default=1024)
    ap.add_argument("--sleep-us", type=int, default=250, help="fake model time per sample")
    ap.add_argument("--flush-every", type=int, default=16)
    ap.add_argument("--work", default=None, help="folder for the run (default: a temporary folder)")
    args = ap.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="evoq-bench-shards-")
    os.makedirs(work, exist_ok=True)
    images = os.path.join(work, "imgs")
    os.makedirs(images, exist_ok=True)
    n_images = 1
    while n_images * (n_images - 1) // 2 < args.pairs:
        n_images += 1
    for i in range(n_images):
        open(os.path.join(images, f"im{i:05d}.png"), "wb").write(b"png")
    pairs = os.path.join(work, "pairs.h5")
    subprocess.run([args.evoq, "pairs", "--manifest", images, "-n", str(args.pairs), "--seed", "1", "-o", pairs],
                   check=True, capture_output=True)
    out = os.path.join(work, "labels.h5")
    shards = out + ".shards"
    shutil.rmtree(shards, ignore_errors=True)
    stats_path = os.path.join(work, "stats.json")
    load_before = open("/proc/loadavg").read().split()[:3]
    t0 = time.monotonic()
    subprocess.run([os.path.join(os.path.dirname(args.evoq), "evoq-testtool"), "debug-evo", "vote-fake", "--pairs", pairs, "--out", out, "--K", str(args.k),
                    "--seed", "4", "--keep-responses", "--no-early-stop", "--invalid-rate", "0.1",
                    "--response-bytes", str(args.response_bytes), "--sleep-us", str(args.sleep_us),
                    "--flush-every", str(args.flush_every), "--flush-seconds", "1e9", "--progress-every", "60",
                    "--stats", stats_path], check=True)
    wall = time.monotonic() - t0
    load_after = open("/proc/loadavg").read().split()[:3]
    rank = json.load(open(stats_path))["ranks"][0]
    flushes = rank["flush_seconds"]
    tenth = max(1, len(flushes) // 10)
    shard_bytes = sum(os.path.getsize(os.path.join(shards, n)) for n in os.listdir(shards))
    samples = args.pairs * args.k
    # The data kept: each response, its answer and swap bytes; per pair 4 int32 + p* + 2 flags + offset.
    data_bytes = samples * (args.response_bytes + 2) + args.pairs * (4 * 4 + 8 + 2 + 8)
    result = {
        "pairs": args.pairs, "K": args.k, "response_bytes": args.response_bytes, "sleep_us": args.sleep_us,
        "flush_every": args.flush_every, "wall_seconds": round(wall, 2), "vote_seconds": round(rank["seconds"], 2),
        "flushes": len(flushes),
        "flush_ms_first_tenth_mean": round(1e3 * statistics.mean(flushes[:tenth]), 3),
        "flush_ms_last_tenth_mean": round(1e3 * statistics.mean(flushes[-tenth:]), 3),
        "flush_ms_median": round(1e3 * statistics.median(flushes), 3),
        "flush_ms_max": round(1e3 * max(flushes), 3),
        "flush_seconds_total": round(sum(flushes), 2),
        "flush_share_of_vote_time": round(sum(flushes) / rank["seconds"], 4),
        "shard_bytes": shard_bytes, "data_bytes": data_bytes,
        "shard_bytes_over_data": round(shard_bytes / data_bytes, 3),
        "labels_h5_bytes": os.path.getsize(out),
        "load_before": load_before, "load_after": load_after,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(result, indent=2))
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
