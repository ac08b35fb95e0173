"""`evoq preprocess` (OpenCV decode + our Pillow-exact bicubic resize + Qwen2-VL patching) against
transformers' SLOW image processor, Qwen2VLImageProcessorPil (the PIL backend, loaded with
backend="pil" from tests/data/qwen2-vl-2b/preprocessor_config.json) - not the fast torchvision one,
which differs by about one uint8 level. The oracle receives PIL.Image.open(file), as a user passing a
PIL image would. Resize exactness is checked against Pillow's Image.resize(BICUBIC) directly by
recovering our resized uint8 image from pixel_values (the normalisation is one-to-one per channel).
"""
import json
import os
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image

import torch

torch.set_num_threads(1)
from transformers import AutoImageProcessor  # noqa: E402
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (  # noqa: E402
    Qwen2VLImageProcessorPil,
    smart_resize,
)

EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")
DATA = os.environ.get("EVOQ_TEST_DATA", "tests/data")
MODEL = os.path.join(DATA, "qwen2-vl-2b")
PHOTOS = os.path.join(DATA, "images")
PATCH, MERGE, TEMPORAL = 14, 2, 2


def load_oracle(model_dir=MODEL, **overrides):
    proc = AutoImageProcessor.from_pretrained(model_dir, backend="pil", **overrides)
    assert isinstance(proc, Qwen2VLImageProcessorPil)  # the slow (PIL) processor is the oracle
    return proc


ORACLE = load_oracle()


def preprocess(image, tmp_path, *extra, model=MODEL):
    out = tmp_path / "pv.npy"
    r = subprocess.run([EVOQ, "preprocess", "--model", str(model), "--image", str(image), "--out", str(out), *extra],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    grid = [int(x) for x in lines["grid_thw"].split()]
    pv = np.load(out)
    assert pv.dtype == np.float32 and pv.shape == (grid[0] * grid[1] * grid[2], 3 * TEMPORAL * PATCH * PATCH)
    assert int(lines["image_tokens"]) == grid[0] * grid[1] * grid[2] // (MERGE * MERGE)
    return pv, grid


def assert_matches_oracle(path, tmp_path, proc=ORACLE, extra=()):
    pv, grid = preprocess(path, tmp_path, *extra)
    ref = proc(images=Image.open(path), return_tensors="np")
    assert grid == ref["image_grid_thw"][0].tolist()
    assert pv.shape == ref["pixel_values"].shape
    assert np.abs(pv - ref["pixel_values"]).max() == 0.0
    return pv, grid


def normalisation_table(proc):
    """Value of each uint8 level per channel after the oracle's own rescale + normalize."""
    ramp = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (3, 256, 1)).copy()
    x = proc.normalize(proc.rescale(ramp, proc.rescale_factor), proc.image_mean, proc.image_std)
    return x[:, :, 0]  # [3, 256]


def unpatchify_to_uint8(pv, grid, proc=ORACLE):
    """The resized RGB uint8 image that pixel_values encode (independent of our code)."""
    _, gh, gw = grid
    a = pv.reshape(gh // MERGE, gw // MERGE, MERGE, MERGE, 3, TEMPORAL, PATCH, PATCH)
    assert np.array_equal(a[:, :, :, :, :, 0], a[:, :, :, :, :, 1])  # the frame is repeated
    chw = a[:, :, :, :, :, 0].transpose(4, 0, 2, 5, 1, 3, 6).reshape(3, gh * PATCH, gw * PATCH)
    table = normalisation_table(proc)
    out = np.empty(chw.shape, np.uint8)
    for c in range(3):
        order = np.argsort(table[c])
        idx = np.searchsorted(table[c][order], chw[c])
        idx = np.clip(idx, 0, 255)
        levels = order[idx]
        assert np.array_equal(table[c][levels], chw[c]), "value outside the normalisation table"
        out[c] = levels
    return out.transpose(1, 2, 0)


def random_rgb(w, h, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# (width, height, min_pixels, max_pixels): odd sizes, up- and downscaling, mixed directions (one of
# which makes Pillow 13 run its vertical pass first), near-minimum and over-max_pixels images.
RESIZE_CASES = [
    (61, 83, None, None),      # 56x84: width shrinks, height grows
    (83, 61, None, None),      # 84x56: width grows, height shrinks (vertical pass first)
    (500, 333, None, None),    # 504x336: both grow slightly
    (333, 500, 3136, 20000),   # both shrink a lot
    (1, 3, None, None),        # tiny: grown to the minimum area
    (1200, 900, 3136, 200000),  # over max_pixels
    (4000, 30, None, None),    # very wide (aspect 133): 4004x28
    (97, 1000, 3136, 50000),
]


@pytest.mark.parametrize("w,h,min_pixels,max_pixels", RESIZE_CASES)
def test_resize_bit_identical_to_pillow(tmp_path, w, h, min_pixels, max_pixels):
    path = tmp_path / f"rand_{w}x{h}.png"
    Image.fromarray(random_rgb(w, h, seed=w * 7919 + h)).save(path)
    extra = []
    if min_pixels:
        extra += ["--min-pixels", str(min_pixels)]
    if max_pixels:
        extra += ["--max-pixels", str(max_pixels)]
    pv, grid = preprocess(path, tmp_path, *extra)
    eh, ew = smart_resize(h, w, factor=PATCH * MERGE, min_pixels=min_pixels or 3136,
                          max_pixels=max_pixels or 12845056)
    assert grid == [1, eh // PATCH, ew // PATCH]
    ours = unpatchify_to_uint8(pv, grid)
    ref = np.array(Image.open(path).convert("RGB").resize((ew, eh), Image.BICUBIC))
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() == 0, f"{(diff > 0).sum()} pixels differ, max {diff.max()}"


@pytest.mark.parametrize("name,extra", [
    ("astronaut_256x384.jpg", ()),
    ("adirondack_chairs_246x164.png", ()),
    ("astronaut_256x384.jpg", ("--max-pixels", "30000")),
    ("adirondack_chairs_246x164.png", ("--min-pixels", "200000", "--max-pixels", "400000")),
])
def test_real_photos_match_transformers(tmp_path, name, extra):
    proc = ORACLE
    if extra:
        kw = dict(zip([e.lstrip("-").replace("-", "_") for e in extra[::2]], map(int, extra[1::2])))
        proc = load_oracle(**kw)
    pv, grid = assert_matches_oracle(os.path.join(PHOTOS, name), tmp_path, proc, extra)
    # And the resize alone, against Pillow.
    h, w = grid[1] * PATCH, grid[2] * PATCH
    ref = np.array(Image.open(os.path.join(PHOTOS, name)).convert("RGB").resize((w, h), Image.BICUBIC))
    assert np.array_equal(unpatchify_to_uint8(pv, grid, proc), ref)


def make_image(mode, w, h, seed):
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    if mode == "RGB":
        return rgb
    if mode in ("L", "P"):
        return rgb.convert(mode)
    rgba = Image.fromarray(rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8), "RGBA")
    return rgba if mode == "RGBA" else rgba.convert(mode)


# Pillow-written files of every format in the modes each can hold; the oracle sees Image.open(file).
FORMAT_CASES = [
    ("RGB", "png"), ("L", "png"), ("RGBA", "png"), ("LA", "png"), ("P", "png"),
    ("RGB", "jpg"), ("L", "jpg"),
    ("RGB", "bmp"), ("L", "bmp"), ("P", "bmp"),
    ("RGB", "tiff"), ("L", "tiff"), ("RGBA", "tiff"),
    ("RGB", "webp"), ("RGBA", "webp"),
]


@pytest.mark.parametrize("mode,ext", FORMAT_CASES)
def test_formats_and_modes_match_transformers(tmp_path, mode, ext):
    path = tmp_path / f"img_{mode}.{ext}"
    make_image(mode, 61, 83, seed=len(mode) * 31 + len(ext)).save(path, **({"lossless": True} if ext == "webp" else {}))
    assert_matches_oracle(path, tmp_path)


def write_png16(path, array, color_type):
    """A 16-bit PNG (Pillow cannot write 16-bit colour PNGs): grey 0, RGB 2, grey+alpha 4, RGBA 6."""
    h, w = array.shape[:2]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("color_type,channels,high", [(0, 1, 300), (2, 3, 65536), (6, 4, 65536), (4, 2, 65536)])
def test_16bit_png_matches_transformers(tmp_path, color_type, channels, high):
    """16-bit samples reach 8 bits as PIL converts them (colour: high byte; lone grey "I;16": clipped)."""
    rng = np.random.default_rng(color_type * 10 + channels)
    shape = (47, 53) if channels == 1 else (47, 53, channels)
    path = tmp_path / "img16.png"
    write_png16(path, rng.integers(0, high, size=shape, dtype=np.uint16), color_type)
    assert_matches_oracle(path, tmp_path)


def test_palette_transparency_matches_transformers(tmp_path):
    path = tmp_path / "pal_trns.png"
    make_image("P", 61, 83, seed=5).save(path, transparency=bytes(range(256)))
    assert_matches_oracle(path, tmp_path)


@pytest.mark.parametrize("layout", ["size_edges", "size_pixels", "top_level_wins"])
def test_config_layouts_match_transformers(tmp_path, layout):
    cfg = json.load(open(os.path.join(MODEL, "preprocessor_config.json")))
    cfg.pop("min_pixels")
    cfg.pop("max_pixels")
    if layout == "size_edges":
        cfg["size"] = {"shortest_edge": 20000, "longest_edge": 40000}
    elif layout == "size_pixels":
        cfg["size"] = {"min_pixels": 20000, "max_pixels": 40000}
    else:
        cfg["size"] = {"shortest_edge": 3136, "longest_edge": 12845056}
        cfg["min_pixels"], cfg["max_pixels"] = 20000, 40000
    model = tmp_path / "model"
    model.mkdir()
    (model / "preprocessor_config.json").write_text(json.dumps(cfg))
    image = os.path.join(PHOTOS, "astronaut_256x384.jpg")
    pv, grid = preprocess(image, tmp_path, model=model)
    eh, ew = smart_resize(384, 256, factor=28, min_pixels=20000, max_pixels=40000)
    assert grid == [1, eh // PATCH, ew // PATCH]
    # transformers 5 rejects the older {"min_pixels", "max_pixels"} size keys that 4.x wrote; we still
    # read them, checked above against smart_resize.
    if layout != "size_pixels":
        ref = load_oracle(model)(images=Image.open(image), return_tensors="np")
        assert np.abs(pv - ref["pixel_values"]).max() == 0.0


def run_failing(tmp_path, image, *extra):
    r = subprocess.run([EVOQ, "preprocess", "--model", MODEL, "--image", str(image), "--out", str(tmp_path / "x.npy"),
                        *extra], capture_output=True, text=True)
    assert r.returncode != 0
    assert not (tmp_path / "x.npy").exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_missing_file(tmp_path):
    line = run_failing(tmp_path, tmp_path / "nope.png")
    assert "nope.png" in line and "does not exist" in line


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    line = run_failing(tmp_path, tmp_path / "empty.jpg")
    assert "empty.jpg" in line and "empty" in line


@pytest.mark.parametrize("kind", ["garbage", "truncated_png", "truncated_jpeg", "truncated_webp"])
def test_corrupt_file(tmp_path, kind):
    if kind == "garbage":
        data = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
        name = "garbage.jpg"
    else:
        fmt = {"truncated_png": "png", "truncated_jpeg": "jpeg", "truncated_webp": "webp"}[kind]
        full = tmp_path / f"full.{fmt}"
        make_image("RGB", 120, 90, seed=3).save(full)
        data = full.read_bytes()[: full.stat().st_size // 2]
        name = f"cut.{fmt}"
        with pytest.raises(OSError):  # PIL refuses it too
            Image.open(__import__("io").BytesIO(data)).load()
    (tmp_path / name).write_bytes(data)
    line = run_failing(tmp_path, tmp_path / name)
    assert name in line and "cannot decode" in line


def test_aspect_ratio_over_200(tmp_path):
    path = tmp_path / "thin.png"
    Image.fromarray(random_rgb(402, 2, seed=9)).save(path)
    with pytest.raises(ValueError):  # the oracle refuses it as well
        ORACLE(images=Image.open(path))
    line = run_failing(tmp_path, path)
    assert "aspect ratio" in line and "thin.png" in line
    # 200 exactly is still accepted, as in transformers.
    Image.fromarray(random_rgb(400, 2, seed=9)).save(path)
    assert_matches_oracle(path, tmp_path)


def test_bad_pixel_override(tmp_path):
    line = run_failing(tmp_path, os.path.join(PHOTOS, "astronaut_256x384.jpg"), "--min-pixels", "5000", "--max-pixels", "4000")
    assert "min pixels" in line
