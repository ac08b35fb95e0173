"""data_prep/distort: same seed -> identical bytes; manifest rows match the files; round2 preset shape."""
import csv
import filecmp
import os
import subprocess

import numpy as np
from PIL import Image

BUILD = os.environ.get("EVOQ_BUILD_DIR", "build")
SRC = os.environ.get("EVOQ_SOURCE_DIR", ".")
DISTORT = os.path.join(BUILD, "bin", "distort")
REF = os.path.join(SRC, "tests", "data", "distort", "carrots_crop256.png")


def run(out, *args):
    subprocess.run([DISTORT, "--input", REF, "--out", str(out), *args], check=True, capture_output=True, text=True)
    with open(os.path.join(out, "manifest.csv")) as f:
        return list(csv.DictReader(f))


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_grid_is_deterministic_and_ordered(tmp_path):
    args = ("--types", "gaussian_blur,jpeg,white_noise,pixelate", "--seed", "5")
    a = run(tmp_path / "a", *args)
    b = run(tmp_path / "b", *args)
    assert len(a) == 20
    ref = np.asarray(Image.open(REF).convert("RGB"))
    for ra, rb in zip(a, b):
        assert os.path.basename(ra["path"]) == os.path.basename(rb["path"])
        assert filecmp.cmp(ra["path"], rb["path"], shallow=False)
        assert ra["reference_id"] == "carrots_crop256"
    for t in ("gaussian_blur", "jpeg", "white_noise", "pixelate"):
        rows = sorted((r for r in a if r["type"] == t), key=lambda r: int(r["level"]))
        values = [psnr(ref, np.asarray(Image.open(r["path"]).convert("RGB"))) for r in rows]
        assert all(x > y for x, y in zip(values, values[1:])), (t, values)
    c = run(tmp_path / "c", "--types", "white_noise", "--levels", "3", "--seed", "6")
    w5 = next(r for r in a if r["type"] == "white_noise" and r["level"] == "3")
    assert not filecmp.cmp(c[0]["path"], w5["path"], shallow=False)


def test_round2_preset(tmp_path):
    rows = run(tmp_path / "r", "--preset", "round2", "--seed", "1")
    assert len(rows) == 10
    assert len({r["type"] for r in rows}) == 10
    assert all(1 <= int(r["level"]) <= 5 for r in rows)
    assert all(os.path.exists(r["path"]) for r in rows)
