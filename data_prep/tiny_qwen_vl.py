"""Tiny random Qwen2-VL / Qwen2.5-VL models built by transformers (fixed seed, nothing downloaded) and their
checkpoint directories: the one builder behind data_prep/make_tiny_model.py, the Python tests
(tests/python/qwen_tiny.py, train_testlib.py, ...), the GPU acceptance driver and the benchmarks (bench/).
Each caller picks its variant by parameters. The random draws always come in one order (torch.manual_seed,
the construction, then the optional widening), so equal parameters give bit-identical weights.

Importers put this directory on sys.path (tests: <repo>/data_prep relative to their own file)."""
import json
import os
import shutil

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
QWEN_DIR = os.path.join(HERE, "..", "tests", "data", "qwen2-vl-2b")  # the real Qwen2-VL tokenizer and processor
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")
VOCAB = 151936  # the real Qwen2-VL vocabulary size: the real tokenizer applies
SPECIAL = dict(image_token_id=151655, vision_start_token_id=151652, vision_end_token_id=151653,
               video_token_id=151656)  # the real ids (also transformers' defaults)
TEXT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
            rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
VISION = {
    "qwen2_vl": dict(depth=2, embed_dim=32, num_heads=2, hidden_size=64, mlp_ratio=2),
    "qwen2_5_vl": dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=48, out_hidden_size=64,
                       fullatt_block_indexes=[1]),
}


def make_config(arch="qwen2_5_vl", *, tied=True, vocab_size=VOCAB, rms_norm_eps=1e-6, max_position_embeddings=None,
                special=SPECIAL, text=None, vision=None):
    """The transformers config: TEXT with `vocab_size`, `rms_norm_eps` and `max_position_embeddings` (None:
    transformers' default), then the entries of `text`; VISION[arch] updated with `vision`; the `special`
    token ids (None: transformers' defaults)."""
    import transformers as tf
    t = dict(TEXT, vocab_size=vocab_size)
    if rms_norm_eps is not None:
        t["rms_norm_eps"] = rms_norm_eps
    if max_position_embeddings is not None:
        t["max_position_embeddings"] = max_position_embeddings
    t.update(text or {})
    cls = {"qwen2_vl": tf.Qwen2VLConfig, "qwen2_5_vl": tf.Qwen2_5_VLConfig}[arch]
    return cls(text_config=t, vision_config=dict(VISION[arch], **(vision or {})), tie_word_embeddings=tied,
               **(special or {}))


def widen(model, std):
    """Redraws every parameter from normal(0, std), norm weights +1: the tiny default init barely moves the
    logits; widened, the images and the text both do."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, std)
            if p.dim() == 1 and ("norm" in name or "ln_q" in name) and name.endswith("weight"):
                p.add_(1.0)


def make_model(arch="qwen2_5_vl", *, seed=0, widen_std=None, config=None, device=None, **config_kw):
    """The random model in eval mode: torch.manual_seed(seed), then built from `config` (a ready config, e.g.
    bench/configs/small; its model_type picks the class) or make_config(arch, **config_kw), on `device`
    (None: the default one), then widen(model, widen_std) unless widen_std is None."""
    import transformers as tf
    if config is None:
        config = make_config(arch, **config_kw)
    elif config_kw:
        raise TypeError(f"make_model: config given together with {sorted(config_kw)}")
    cls = {"qwen2_vl": tf.Qwen2VLForConditionalGeneration,
           "qwen2_5_vl": tf.Qwen2_5_VLForConditionalGeneration}[config.model_type]
    torch.manual_seed(seed)
    if device is None:
        model = cls(config)
    else:
        with torch.device(device):
            model = cls(config)
    if widen_std is not None:
        widen(model, widen_std)
    return model.eval()


def write_support_files(out_dir, *, files=TOKENIZER_FILES, preprocessor=None, generation=None, indent=None,
                        tokenizer_dir=QWEN_DIR):
    """Next to the weights: `files` copied from `tokenizer_dir`; preprocessor_config.json = tokenizer_dir's
    updated with `preprocessor` (None: not written); generation_config.json = `generation` (None: not
    written). JSON with `indent`."""
    os.makedirs(out_dir, exist_ok=True)
    for name in files:
        shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(out_dir, name))
    if preprocessor is not None:
        with open(os.path.join(tokenizer_dir, "preprocessor_config.json")) as f:
            pre = json.load(f)
        pre.update(preprocessor)
        with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
            json.dump(pre, f, indent=indent)
    if generation is not None:
        with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
            json.dump(generation, f, indent=indent)


def save_checkpoint(model, out_dir, **support):
    """`model` as a checkpoint directory that transformers and evoq load: save_pretrained, then
    write_support_files(out_dir, **support). Returns out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    write_support_files(out_dir, **support)
    return out_dir
