"""Our LibTorch Qwen2-VL / Qwen2.5-VL vs transformers 5.23 on tiny random models (fp32, 1e-4 max-abs).

Oracle: the transformers model itself (built from a config with a fixed seed, saved with
save_pretrained); inputs are random pixel_values with explicit grids, so this tests the model, not the
image processor. Grids cover window padding (merged sides not multiples of the 4-token window), a merged
side that is an exact multiple (empty padding windows), and two images of different sizes."""
import os

import numpy as np
import pytest
import torch

import qwen_tiny as qt

torch.set_num_threads(2)
TOL = 1e-4
CASES = {
    "one_image": [(1, 10, 14)],            # merged 5x7: partial windows
    "two_images": [(1, 6, 8), (1, 16, 16)],  # 3x4 and 8x8 (exact windows, empty padding windows)
    "text_only": [],
}


# Tied/untied heads share one code path in both archs; the untied Qwen2.5-VL is covered by
# test_model_checkpoints.py (round trip, bf16).
@pytest.fixture(scope="module", params=[("qwen2_vl", False), ("qwen2_5_vl", True)],
                ids=["qwen2_vl-untied", "qwen2_5_vl-tied"])
def tiny(request, tmp_path_factory):
    arch, tied = request.param
    model = qt.make_model(arch, tied)
    root = tmp_path_factory.mktemp(f"{arch}_{tied}")
    saved, new_dir, hub_dir = str(root / "saved"), str(root / "new"), str(root / "hub")
    model.save_pretrained(saved)                        # nested config (transformers 5)
    qt.relayout(saved, new_dir, keys="new")               # model.visual.* / model.language_model.*
    qt.relayout(saved, hub_dir, keys="hub", flat_config=True)  # visual.* / model.*, flat hub config
    return model, new_dir, hub_dir


@pytest.mark.parametrize("case", list(CASES))
def test_last_and_all_positions(tiny, case, tmp_path):
    model, new_dir, hub_dir = tiny
    inputs = qt.make_inputs(CASES[case])
    want = qt.hf_logits(model, inputs)[0]
    for layout, d in (("new", new_dir), ("hub", hub_dir)):
        last = qt.evoq_logits(d, inputs, tmp_path, name=f"{layout}_last")
        assert last.shape == (qt.VOCAB,)
        err = np.abs(last - want[-1]).max()
        print(f"{case} {layout} last max-abs {err:.2e}")
        assert err < TOL, (layout, err)
    full = qt.evoq_logits(new_dir, inputs, tmp_path, extra=["--all-positions"], name="all")
    assert full.shape == want.shape
    err = np.abs(full - want).max()
    print(f"{case} all-positions max-abs {err:.2e}")
    assert err < TOL, err


def test_cached_decode_matches_full_recomputation(tiny, tmp_path):
    """Prefill + decode steps (3 copies sharing the prompt KV, one dropped midway) give the logits of a
    transformers forward over prompt + continuation: checks positions cache_len + rope_delta after images."""
    model, new_dir, _ = tiny
    cont = [17, 400, 3, 999, 42]
    inputs = qt.make_inputs(CASES["two_images"])
    prompt_len = inputs["input_ids"].shape[1]
    full = dict(inputs, input_ids=torch.cat([inputs["input_ids"], torch.tensor([cont])], 1))
    want = qt.hf_logits(model, full)[0][prompt_len - 1:]
    got = qt.evoq_logits(new_dir, inputs, tmp_path,
                         extra=["--continue", ",".join(map(str, cont)), "--copies", "3"], name="dec")
    assert got.shape == want.shape
    err = np.abs(got - want).max()
    print(f"decode max-abs {err:.2e}")
    assert err < TOL, err


def test_padded_batch(tiny, tmp_path):
    """A left-padded and a right-padded row with different images equal their unpadded runs."""
    model, new_dir, _ = tiny
    a = qt.make_inputs([(1, 6, 8)], seed=3)
    b = qt.make_inputs([(1, 10, 14)], seed=4, ids=qt.prompt_ids([(1, 10, 14)], text=(1, 2)))
    la, lb = a["input_ids"].shape[1], b["input_ids"].shape[1]
    n = max(la, lb)
    ids = torch.zeros(2, n, dtype=torch.int64)
    mask = torch.zeros(2, n, dtype=torch.int64)
    ids[0, n - la:] = a["input_ids"][0]
    mask[0, n - la:] = 1          # left padding
    ids[1, :lb] = b["input_ids"][0]
    mask[1, :lb] = 1              # right padding
    batch = {"input_ids": ids, "attention_mask": mask,
             "pixel_values": torch.cat([a["pixel_values"], b["pixel_values"]]),
             "image_grid_thw": torch.cat([a["image_grid_thw"], b["image_grid_thw"]])}
    got = qt.evoq_logits(new_dir, batch, tmp_path, name="pad")
    assert got.shape == (2, qt.VOCAB)
    want_a = qt.hf_logits(model, a)[0, -1]
    want_b = qt.hf_logits(model, b)[0, -1]
    err = max(np.abs(got[0] - want_a).max(), np.abs(got[1] - want_b).max())
    print(f"padded batch max-abs {err:.2e}")
    assert err < TOL, err
