#!/usr/bin/env python3
"""Writes the inputs of a demo or study run from the distort manifests DIR/distorted-{train,test}/manifest.csv:
DIR/{split}-pool.txt, evoq's manifest (path,group; no level: nothing in training sees a label), and
DIR/{split}-levels.csv, the eval CSV (score = -level, higher = better). Held-out (test) images are grouped
by reference and distortion type, so same-group pairs have a true order (levels of two types do not).

usage: write_pools.py DIR
"""
import csv
import sys


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
        print(f"{split}: {len(rows)} distorted images of {len({r['reference_id'] for r in rows})} references")


if __name__ == "__main__":
    main(sys.argv[1])
