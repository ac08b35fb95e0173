#!/usr/bin/env python3
"""Writes the inputs of a demo or study run from the distort manifests DIR/distorted-{train,test}/manifest.csv:
DIR/{split}-pool.txt, evoq's manifest (path,group; no level: nothing in training sees a label), and
DIR/{split}-levels.csv, the eval CSV (score = -level, higher = better), and DIR/{split}-truth.csv, the truth
that orders across distortion types (score = mean KADID-10k human score of the image's type and level,
data_prep/kadid_truth.py; higher = better). Held-out (test) images are grouped by reference and distortion
type, so same-group pairs have a true order by level alone.

usage: write_pools.py DIR
"""
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kadid_truth  # noqa: E402


def main(root):
    for split in ("train", "test"):
        rows = list(csv.DictReader(open(f"{root}/distorted-{split}/manifest.csv")))
        with open(f"{root}/{split}-pool.txt", "w") as f:
            for r in rows:
                group = r["reference_id"] + (":" + r["type"] if split == "test" else "")
                f.write(f"{r['path']},{group}\n")
        with open(f"{root}/{split}-levels.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "score"])
            for r in rows:
                w.writerow([r["path"], -int(r["level"])])
        kadid_truth.write_truth(f"{root}/distorted-{split}/manifest.csv", f"{root}/{split}-truth.csv")
        print(f"{split}: {len(rows)} distorted images of {len({r['reference_id'] for r in rows})} references")


if __name__ == "__main__":
    main(sys.argv[1])
