"""End to end: the 10 CSIQ images with DMOS through `evoq eval` with BRISQUE and NIQE.

Oracles: scipy for the correlations of the per-image scores evoq wrote, a numpy/scipy NIQE written here from
the published algorithm (Mittal et al. 2013, as defined by BasicSR / pyiqa), h5py for the score file.
"""
import csv
import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, special, stats

EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")
SRC = os.environ.get("EVOQ_SOURCE_DIR", ".")
SAMPLE = os.path.join(SRC, "tests", "data", "csiq-sample")
MANIFEST = os.path.join(SAMPLE, "dmos.csv")


def run_eval(out, model, *extra, check=True):
    cmd = [EVOQ, "eval", "--model", model, "--dataset", "csv:" + MANIFEST, "--out", str(out), "--flush-every", "3", *extra]
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def per_image(out):
    with open(os.path.join(out, "scores.csv")) as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- numpy NIQE oracle
def cubic(x):
    a = np.abs(x)
    return np.where(a <= 1, 1.5 * a**3 - 2.5 * a**2 + 1, np.where(a <= 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0.0))


def resize_matrix(n, scale):
    """MATLAB imresize (bicubic, antialiasing) as an (out x in) matrix, symmetric border."""
    out_n = int(np.ceil(n * scale))
    width = 4.0 / scale
    taps = int(np.ceil(width)) + 2
    m = np.zeros((out_n, n))
    for i in range(1, out_n + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = int(np.floor(u - width / 2))
        j = left + np.arange(taps)
        w = scale * cubic(scale * (u - j))
        w = w / w.sum()
        idx = np.concatenate([np.arange(n), np.arange(n)[::-1]])[(j - 1) % (2 * n)]
        np.add.at(m[i - 1], idx, w)
    return m


GAM = np.arange(0.2, 10.001, 0.001)
R_GAM = special.gamma(2 / GAM) ** 2 / (special.gamma(1 / GAM) * special.gamma(3 / GAM))


def aggd(block):
    b = block.ravel()
    with np.errstate(all="ignore"):
        left = np.sqrt(np.mean(b[b < 0] ** 2))
        right = np.sqrt(np.mean(b[b > 0] ** 2))
        g = left / right
        rhat = np.mean(np.abs(b)) ** 2 / np.mean(b**2)
        rnorm = rhat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    alpha = GAM[np.argmin((R_GAM - rnorm) ** 2)]
    s = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    return alpha, left * s, right * s


def features(block):
    a, bl, br = aggd(block)
    f = [a, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a, bl, br = aggd(block * np.roll(block, shift, axis=(0, 1)))
        f += [a, (br - bl) * special.gamma(2 / a) / special.gamma(1 / a), bl, br]
    return f


def niqe_reference(path, params):
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.float64) / 255.0
    img = np.round(16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2])
    bh, bw = img.shape[0] // 96, img.shape[1] // 96
    img = img[: bh * 96, : bw * 96]
    win = params["gaussian_window"]
    feats = []
    for scale in (1, 2):
        mu = ndimage.convolve(img, win, mode="nearest")
        sigma = np.sqrt(np.abs(ndimage.convolve(img * img, win, mode="nearest") - mu * mu))
        mscn = (img - mu) / (sigma + 1)
        size = 96 // scale
        feats.append([features(mscn[y * size:(y + 1) * size, x * size:(x + 1) * size])
                      for x in range(bw) for y in range(bh)])
        if scale == 1:
            img = resize_matrix(img.shape[0], 0.5) @ (img / 255.0) @ resize_matrix(img.shape[1], 0.5).T * 255.0
    d = np.concatenate([np.array(f) for f in feats], axis=1)
    mu_d = np.nanmean(d, axis=0)
    cov_d = np.cov(d[~np.isnan(d).any(axis=1)], rowvar=False)
    diff = params["mu_pris_param"].ravel() - mu_d
    return float(np.sqrt(diff @ np.linalg.pinv((params["cov_pris_param"] + cov_d) / 2) @ diff))


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("model", ["brisque", "niqe"])
def test_csiq_sample_correlations(tmp_path, model):
    out = tmp_path / model
    run_eval(out, model)
    res = json.load(open(out / "results.json"))
    (d,) = res["datasets"]
    assert d["name"] == "dmos" and d["images"] == 10 and d["invalid"] == 0 and d["n"] == 10
    rows = per_image(out)
    score = np.array([float(r["model_score"]) for r in rows])
    dmos = np.array([float(r["human_score"]) for r in rows])
    # Lower-is-better scorer vs lower-is-better DMOS: raw correlation positive; evoq reports oriented values.
    assert d["srcc"] == pytest.approx(stats.spearmanr(score, dmos)[0], abs=1e-9)
    assert d["krcc"] == pytest.approx(stats.kendalltau(score, dmos)[0], abs=1e-9)
    assert d["plcc"] == pytest.approx(stats.pearsonr(score, dmos)[0], abs=1e-9)
    assert d["srcc"] > 0 and d["plcc"] > 0 and d["krcc"] > 0
    print(f"{model}: SRCC {d['srcc']:.4f} KRCC {d['krcc']:.4f} PLCC {d['plcc']:.4f} PLCC-fit {d['plcc_fitted']}")
    # Score file: readable by h5py, same values as the CSV.
    with h5py.File(out / "scores.h5", "r") as f:
        assert f.attrs["schema_version"] == 1
        assert f.attrs["model"] in (model, model.encode())
        images = [s.decode() if isinstance(s, bytes) else s for s in f["image"][:]]
        by_id = dict(zip(images, f["score"][:]))
    for r in rows:
        assert by_id[r["image"]] == pytest.approx(float(r["model_score"]), rel=1e-9)
    assert "WAVG." in open(out / "results.csv").read() or "WAVG" in open(out / "results.csv").read()


def test_niqe_matches_numpy_reference(tmp_path):
    out = tmp_path / "niqe"
    run_eval(out, "niqe")
    params = dict(np.load(os.path.join(SRC, "data", "niqe", "niqe_pris_params.npz")))
    for r in per_image(out):
        ref = niqe_reference(os.path.join(SAMPLE, r["image"]), params)
        # rel 1e-3, not 1e-9: in flat regions I - mu is exactly 0 or +-1e-12 depending on the order of the
        # convolution sums (scipy vs OpenCV), which moves those pixels between the AGGD's left/right sets.
        # Measured worst case on this sample: 2.4e-4 (1600.BLUR.5).
        assert float(r["model_score"]) == pytest.approx(ref, rel=1e-3), r["image"]


def test_resume_and_baseline_table(tmp_path):
    out = tmp_path / "b"
    first = run_eval(out, "brisque")
    again = run_eval(out, "brisque")
    assert "10 of 10 images already scored" in again.stderr
    assert json.load(open(out / "results.json")) == json.load(open(out / "results.json"))
    run_eval(tmp_path / "n", "niqe")
    table = run_eval(tmp_path / "b2", "brisque", "--baseline", str(tmp_path / "n" / "results.json")).stdout
    assert "PLCC (Δ%)" in table and "WAVG." in table and "niqe" in table
    assert first.stdout.splitlines()[0].startswith("Dataset")
    # Another model cannot reuse this score file.
    clash = run_eval(out, "niqe", check=False)
    assert clash.returncode != 0 and "scores.h5" in clash.stderr


def test_missing_images_listed_before_scoring(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,dmos\n" + "".join(
        f"{os.path.join(SAMPLE, n)},{v}\n" for n, v in [("1600.AWGN.1.png", 0.06), ("1600.BLUR.5.png", 0.75),
                                                          ("1600.BLUR.3.png", 0.34), ("1600.AWGN.4.png", 0.37)])
        + "nothere.png,0.5\n")
    cmd = [EVOQ, "eval", "--model", "niqe", "--dataset", "csv:" + str(manifest), "--out", str(tmp_path / "o")]
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "nothere.png" in bad.stderr and "--skip-missing" in bad.stderr
    assert not (tmp_path / "o" / "scores.h5").exists()  # nothing was scored
    good = subprocess.run(cmd + ["--skip-missing"], capture_output=True, text=True, check=True)
    res = json.load(open(tmp_path / "o" / "results.json"))
    assert res["datasets"][0]["images"] == 4 and res["datasets"][0]["missing"] == 1
    assert "--root" not in good.stderr


def test_official_csiq_labels_with_a_root(tmp_path):
    """The standard CSIQ label file + --root: the 10 sample files laid out as in the database."""
    root = tmp_path / "CSIQ"
    for kind in ("AWGN", "BLUR"):
        d = root / "dst_imgs" / kind
        d.mkdir(parents=True)
        for level in range(1, 6):
            name = f"1600.{kind}.{level}.png"
            os.symlink(os.path.join(SAMPLE, name), d / name)
    labels = {}
    with open(os.path.join(SRC, "data", "iqa-labels", "CSIQ.txt")) as f:
        for r in csv.DictReader(f):
            labels[r["dis_img_path"]] = float(r["score"])
    out = tmp_path / "o"
    cmd = [EVOQ, "eval", "--model", "brisque", "--dataset", "csiq", "--root", f"CSIQ={root}", "--out", str(out)]
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode != 0 and "856 of 866 image files missing" in bad.stderr
    subprocess.run(cmd + ["--skip-missing"], check=True, capture_output=True, text=True)
    res = json.load(open(out / "results.json"))
    (d,) = res["datasets"]
    assert d["name"] == "CSIQ" and d["images"] == 10 and d["missing"] == 856 and d["n"] == 10
    rows = per_image(out)
    assert {r["image"] for r in rows} <= set(labels)
    score = [float(r["model_score"]) for r in rows]
    dmos = [labels[r["image"]] for r in rows]
    assert d["srcc"] == pytest.approx(stats.spearmanr(score, dmos)[0], abs=1e-9) and d["srcc"] > 0


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun")
def test_sharded_over_two_ranks_matches_one_rank(tmp_path):
    single = tmp_path / "one"
    run_eval(single, "niqe")
    # Resume a sharded run from a partial single-rank score file: 4 images done, 6 left for 2 ranks.
    sharded = tmp_path / "two"
    manifest = tmp_path / "first4.csv"
    with open(MANIFEST) as f:
        lines = f.read().splitlines()
    manifest.write_text("\n".join([lines[0]] + [os.path.join(SAMPLE, l) for l in lines[1:5]]) + "\n")
    subprocess.run([EVOQ, "eval", "--model", "niqe", "--dataset", "csv:" + str(manifest), "--out", str(sharded)],
                   check=True, capture_output=True, text=True)
    os.rename(sharded / "scores.h5", sharded / "keep.h5")
    # Same dataset name as the full manifest ("dmos"): rewrite the partial file's dataset name.
    with h5py.File(sharded / "keep.h5", "r") as src, h5py.File(sharded / "scores.h5", "w") as dst:
        for k, v in src.attrs.items():
            if k != "evoq_sha256":  # a hand-edited file carries no evoq checksum
                dst.attrs[k] = v
        names = [os.path.basename(n.decode() if isinstance(n, bytes) else n) for n in src["image"][:]]
        dst.create_dataset("image", data=names, dtype=h5py.string_dtype())
        for k in ("score", "invalid_reason"):
            dst.create_dataset(k, data=src[k][:], dtype=src[k].dtype)
        dst.create_dataset("dataset", data=["dmos"] * len(src["image"]), dtype=h5py.string_dtype())
    os.remove(sharded / "keep.h5")
    out = subprocess.run(["mpirun", "-np", "2", "--oversubscribe", EVOQ, "eval", "--model", "niqe", "--dataset",
                          "csv:" + MANIFEST, "--out", str(sharded), "--flush-every", "1"],
                         check=True, capture_output=True, text=True)
    assert "4 of 10 images already scored, 6 to go (3 on this rank)" in out.stderr
    assert sorted(os.listdir(sharded)) == ["results.csv", "results.json", "scores.csv", "scores.h5"]
    a = {r["image"]: float(r["model_score"]) for r in per_image(single)}
    b = {r["image"]: float(r["model_score"]) for r in per_image(sharded)}
    assert a == pytest.approx(b, rel=1e-12)
    with h5py.File(sharded / "scores.h5", "r") as f:
        assert len(f["image"]) == 10
    ra, rb = json.load(open(single / "results.json")), json.load(open(sharded / "results.json"))
    assert ra["datasets"][0]["srcc"] == pytest.approx(rb["datasets"][0]["srcc"], abs=1e-12)
