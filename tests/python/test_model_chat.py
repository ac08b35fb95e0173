"""`evoq forward --image A --image B --prompt TEXT` (our tokenizer, chat template and image processor
feeding the model) vs transformers: the prompt built by hand from the documented chat template and
tokenized by transformers' Qwen2 tokenizer (real Qwen2-VL-2B files), pixels from the slow (PIL)
Qwen2VLImageProcessorPil, logits from a tiny random Qwen2.5-VL with the real 151936-token vocabulary."""
import os
import sys

import numpy as np
import torch
from PIL import Image

import qwen_tiny as qt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data_prep"))
import tiny_qwen_vl as tq  # noqa: E402

torch.set_num_threads(2)
DATA = os.environ.get("EVOQ_TEST_DATA", "tests/data")


def test_chat_prompt_with_two_images(tmp_path):
    from transformers import AutoImageProcessor, AutoTokenizer

    model = tq.make_model(seed=0, widen_std=0.1)
    model_dir = tq.save_checkpoint(model, str(tmp_path / "m"), tokenizer_dir=os.path.join(DATA, "qwen2-vl-2b"),
                                   files=tq.TOKENIZER_FILES + ("chat_template.json", "preprocessor_config.json"))

    src = Image.open(os.path.join(DATA, "csiq-sample", "1600.BLUR.2.png")).convert("RGB")
    paths = []
    for i, size in enumerate([(150, 101), (61, 83)]):  # sizes not multiples of 28
        p = str(tmp_path / f"img{i}.png")
        src.resize(size, Image.BICUBIC).save(p)
        paths.append(p)
    prompt = "Which image has better quality? Answer with 0 or 1."

    proc = AutoImageProcessor.from_pretrained(model_dir, backend="pil")
    feats = proc(images=[Image.open(p) for p in paths], return_tensors="pt")
    grid = feats["image_grid_thw"]
    tok = AutoTokenizer.from_pretrained(model_dir)
    user = "".join("<|vision_start|>" + "<|image_pad|>" * int(g.prod() // 4) + "<|vision_end|>" for g in grid)
    chat = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + user + prompt +
            "<|im_end|>\n<|im_start|>assistant\n")
    ids = torch.tensor([tok(chat, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        want = model(input_ids=ids, pixel_values=feats["pixel_values"], image_grid_thw=grid,
                     mm_token_type_ids=(ids == 151655).int()).logits[0, -1].numpy()

    out = str(tmp_path / "chat.npy")
    qt.run_evoq(["forward", "--model", model_dir, "--image", paths[0], "--image", paths[1], "--prompt", prompt,
                 "--out", out, "--threads", "2"])
    got = np.load(out)
    err = np.abs(got - want).max()
    print(f"chat forward max-abs {err:.2e}")
    assert got.shape == want.shape and err < 1e-4, err
