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


def run_preprocess(images, out, *extra, model=MODEL):
    """One `evoq preprocess` run over several images; returns [(pixel_values, grid_thw)] per image."""
    args = [EVOQ, "preprocess", "--model", str(model), "--out", str(out), *map(str, extra)]
    for image in images:
        args += ["--image", str(image)]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    grids = [[int(x) for x in line.split()[1:]] for line in lines if line.startswith("grid_thw ")]
    assert len(grids) == len(images)
    pv = np.load(out)
    assert pv.dtype == np.float32 and pv.shape == (sum(t * h * w for t, h, w in grids), 3 * TEMPORAL * PATCH * PATCH)
    assert f"image_tokens {sum(t * h * w for t, h, w in grids) // (MERGE * MERGE)}" in lines
    results, row = [], 0
    for t, h, w in grids:
        results.append((pv[row: row + t * h * w], [t, h, w]))
        row += t * h * w
    return results


def preprocess(image, tmp_path, *extra, model=MODEL):
    return run_preprocess([image], tmp_path / "pv.npy", *extra, model=model)[0]


class Batches:
    """Runs `evoq preprocess` once per group of test images sharing the same options (each run loads
    libtorch, which costs about a second), then hands each test its own slice."""

    def __init__(self):
        self.cases = {}  # name -> (writer(path), options)
        self.results = {}

    def add(self, name, writer, options=()):
        self.cases[name] = (writer, tuple(options))

    def get(self, name, workdir):
        if name not in self.results:
            options = self.cases[name][1]
            group = [n for n, (_, o) in self.cases.items() if o == options and n not in self.results]
            paths = []
            for n in group:
                path = workdir / n
                self.cases[n][0](path)
                paths.append(path)
            outs = run_preprocess(paths, workdir / f"batch{len(self.results)}.npy", *options)
            for n, path, res in zip(group, paths, outs):
                self.results[n] = (path, *res)
        return self.results[name]


BATCHES = Batches()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("images")


def assert_same_as_oracle(path, pv, grid, proc=ORACLE):
    ref = proc(images=Image.open(path), return_tensors="np")
    assert grid == ref["image_grid_thw"][0].tolist()
    assert pv.shape == ref["pixel_values"].shape
    assert np.abs(pv - ref["pixel_values"]).max() == 0.0


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


def pixel_options(min_pixels, max_pixels):
    return (["--min-pixels", str(min_pixels)] if min_pixels else []) + (["--max-pixels", str(max_pixels)] if max_pixels else [])


for _w, _h, _lo, _hi in RESIZE_CASES:
    BATCHES.add(f"rand_{_w}x{_h}.png",
                lambda path, w=_w, h=_h: Image.fromarray(random_rgb(w, h, seed=w * 7919 + h)).save(path),
                pixel_options(_lo, _hi))


@pytest.mark.parametrize("w,h,min_pixels,max_pixels", RESIZE_CASES)
def test_resize_bit_identical_to_pillow(workdir, w, h, min_pixels, max_pixels):
    path, pv, grid = BATCHES.get(f"rand_{w}x{h}.png", workdir)
    eh, ew = smart_resize(h, w, factor=PATCH * MERGE, min_pixels=min_pixels or 3136,
                          max_pixels=max_pixels or 12845056)
    assert grid == [1, eh // PATCH, ew // PATCH]
    ours = unpatchify_to_uint8(pv, grid)
    ref = np.array(Image.open(path).convert("RGB").resize((ew, eh), Image.BICUBIC))
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() == 0, f"{(diff > 0).sum()} pixels differ, max {diff.max()}"
    # The whole pipeline agrees with transformers as well.
    proc = ORACLE if not (min_pixels or max_pixels) else load_oracle(min_pixels=min_pixels or 3136,
                                                                      max_pixels=max_pixels or 12845056)
    assert_same_as_oracle(path, pv, grid, proc)


PHOTO_CASES = [
    ("astronaut_256x384.jpg", ()),
    ("adirondack_chairs_246x164.png", ()),
    ("astronaut_256x384.jpg", ("--max-pixels", "30000")),
    ("adirondack_chairs_246x164.png", ("--min-pixels", "200000", "--max-pixels", "400000")),
]
for _i, (_name, _extra) in enumerate(PHOTO_CASES):
    BATCHES.add(f"photo{_i}_{_name}", lambda path, n=_name: shutil.copy(os.path.join(PHOTOS, n), path), _extra)


@pytest.mark.parametrize("index", range(len(PHOTO_CASES)))
def test_real_photos_match_transformers(workdir, index):
    name, extra = PHOTO_CASES[index]
    path, pv, grid = BATCHES.get(f"photo{index}_{name}", workdir)
    proc = ORACLE
    if extra:
        kw = dict(zip([e.lstrip("-").replace("-", "_") for e in extra[::2]], map(int, extra[1::2])))
        proc = load_oracle(**kw)
    assert_same_as_oracle(path, pv, grid, proc)
    # And the resize alone, against Pillow.
    h, w = grid[1] * PATCH, grid[2] * PATCH
    ref = np.array(Image.open(path).convert("RGB").resize((w, h), Image.BICUBIC))
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


for _mode, _ext in FORMAT_CASES:
    BATCHES.add(f"img_{_mode}.{_ext}",
                lambda path, mode=_mode, ext=_ext: make_image(mode, 61, 83, seed=len(mode) * 31 + len(ext)).save(
                    path, **({"lossless": True} if ext == "webp" else {})))


@pytest.mark.parametrize("mode,ext", FORMAT_CASES)
def test_formats_and_modes_match_transformers(workdir, mode, ext):
    path, pv, grid = BATCHES.get(f"img_{mode}.{ext}", workdir)
    assert_same_as_oracle(path, pv, grid)


def write_png16(path, array, color_type):
    """A 16-bit PNG (Pillow cannot write 16-bit colour PNGs): grey 0, RGB 2, grey+alpha 4, RGBA 6."""
    h, w = array.shape[:2]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


PNG16_CASES = [(0, 1, 300), (2, 3, 65536), (6, 4, 65536), (4, 2, 65536)]


def _write_random_png16(path, color_type, channels, high):
    rng = np.random.default_rng(color_type * 10 + channels)
    shape = (47, 53) if channels == 1 else (47, 53, channels)
    write_png16(path, rng.integers(0, high, size=shape, dtype=np.uint16), color_type)


for _case in PNG16_CASES:
    BATCHES.add(f"png16_{_case[0]}.png", lambda path, c=_case: _write_random_png16(path, *c))
BATCHES.add("pal_trns.png", lambda path: make_image("P", 61, 83, seed=5).save(path, transparency=bytes(range(256))))


@pytest.mark.parametrize("color_type,channels,high", PNG16_CASES)
def test_16bit_png_matches_transformers(workdir, color_type, channels, high):
    """16-bit samples reach 8 bits as PIL converts them (colour: high byte; lone grey "I;16": clipped)."""
    path, pv, grid = BATCHES.get(f"png16_{color_type}.png", workdir)
    assert_same_as_oracle(path, pv, grid)


def test_palette_transparency_matches_transformers(workdir):
    path, pv, grid = BATCHES.get("pal_trns.png", workdir)
    assert_same_as_oracle(path, pv, grid)


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



BATCHES.add("aspect_200.png", lambda path: Image.fromarray(random_rgb(400, 2, seed=9)).save(path))


def test_aspect_ratio_200_accepted(workdir):
    path, pv, grid = BATCHES.get("aspect_200.png", workdir)  # exactly 200 passes, as in transformers
    assert_same_as_oracle(path, pv, grid)


def test_bad_pixel_override(tmp_path):
    line = run_failing(tmp_path, os.path.join(PHOTOS, "astronaut_256x384.jpg"), "--min-pixels", "5000", "--max-pixels", "4000")
    assert "min pixels" in line
