#!/usr/bin/env python3
"""A quality truth for evoq's synthetic distortions that orders ACROSS types: the mean KADID-10k score of
each (distortion type, level) over KADID's 81 references (data/iqa-labels/KADID-10k.txt; KADID's "DMOS"
column is 1..5 with higher = better quality).

evoq's 25 types follow KADID's numbering and levels (docs/DISTORTIONS.md), but every implementation deviates
numerically from KADID's generator, so this truth is an approximation: it says how bad "blur level 3" is on
average for human observers, not how bad evoq's blur level 3 of this image is.

  kadid_truth.py MANIFEST.csv OUT.csv [--kadid FILE]   # OUT: path,score (from a `distort` manifest)
  kadid_truth.py --table                                 # prints the 25 x 5 table
"""
import argparse
import csv
import os
import re
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_KADID = os.path.join(HERE, "..", "data", "iqa-labels", "KADID-10k.txt")
NAME = re.compile(r"I(\d+)_(\d+)_(\d+)\.png$")


def type_level_means(kadid_path=DEFAULT_KADID):
    """{(type_id 1..25, level 1..5): mean score over references}, from the file names I<ref>_<type>_<level>."""
    sums = defaultdict(lambda: [0.0, 0])
    with open(kadid_path) as f:
        for row in csv.DictReader(f):
            m = NAME.search(row["dis_img_path"])
            if not m:
                raise SystemExit(f"{kadid_path}: unexpected image name {row['dis_img_path']}")
            key = (int(m.group(2)), int(m.group(3)))
            sums[key][0] += float(row["score"])
            sums[key][1] += 1
    return {k: s / n for k, (s, n) in sums.items()}


def write_truth(manifest, out, kadid_path=DEFAULT_KADID):
    means = type_level_means(kadid_path)
    rows = list(csv.DictReader(open(manifest)))
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "score"])
        for r in rows:
            w.writerow([r["path"], f"{means[(int(r['type_id']), int(r['level']))]:.4f}"])
    return len(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--kadid", default=DEFAULT_KADID)
    ap.add_argument("--table", action="store_true")
    a = ap.parse_args()
    if a.table:
        means = type_level_means(a.kadid)
        for t in range(1, 26):
            print(t, " ".join(f"{means[(t, l)]:.2f}" for l in range(1, 6)))
        return
    if not (a.manifest and a.out):
        ap.error("MANIFEST and OUT are required (or --table)")
    print(f"{write_truth(a.manifest, a.out, a.kadid)} images scored", file=sys.stderr)


if __name__ == "__main__":
    main()
