"""evoq's safetensors reader and writer against the reference implementation (python `safetensors`)
and transformers: files written by them read in C++ with identical dtype, shape and bytes (sha256),
sharded directories included; checkpoints written by our writer load in safetensors and in
transformers unchanged."""
import hashlib
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

torch.set_num_threads(1)
TOOL = os.path.join(os.environ.get("EVOQ_BUILD_DIR", "build"), "bin", "evoq_io_tool")
ST_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64",
            torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL", torch.float64: "F64",
            torch.int16: "I16", torch.int8: "I8"}


def tool(*args, check=True):
    return subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True, check=check)


def raw_bytes(t):
    t = t.contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def expected_listing(tensors):
    return sorted(f"{name}\t{ST_DTYPE[t.dtype]}\t[{','.join(map(str, t.shape))}]\t{hashlib.sha256(raw_bytes(t)).hexdigest()}"
                  for name, t in tensors.items())


def cpp_listing(path):
    return tool("inspect", path).stdout.splitlines()


def varied_tensors():
    g = torch.Generator().manual_seed(3)
    return {
        "w.f32": torch.randn(3, 5, generator=g),
        "w.bf16": torch.randn(7, 3, generator=g).to(torch.bfloat16),
        "w.f16": torch.randn(5, generator=g).to(torch.float16),
        "ids.i64": torch.randint(-2**40, 2**40, (4, 2), generator=g),
        "ids.i32": torch.randint(-1000, 1000, (3,), dtype=torch.int32, generator=g),
        "mask.u8": torch.randint(0, 256, (2, 3, 1), dtype=torch.uint8, generator=g),
        "flag.bool": torch.tensor([True, False, True]),
        "scalar.f64": torch.tensor(3.25, dtype=torch.float64),
        "empty.f32": torch.zeros(0, 4),
    }


def test_reference_written_file_reads_identically(tmp_path):
    tensors = varied_tensors()
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    assert cpp_listing(path) == expected_listing(tensors)
    assert cpp_listing(tmp_path) == expected_listing(tensors)  # directory form


@pytest.fixture(scope="module")
def sharded_model(tmp_path_factory):
    """A tiny Qwen2 causal LM saved by transformers into many shards with an index."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(cfg).eval()
    d = tmp_path_factory.mktemp("sharded")
    model.save_pretrained(d, max_shard_size="4KB")
    return d, model


def read_reference_dir(d):
    index = json.loads((d / "model.safetensors.index.json").read_text())
    out = {}
    for name, shard in index["weight_map"].items():
        with safe_open(str(d / shard), "pt") as f:
            out[name] = f.get_tensor(name)
    return out


def test_transformers_sharded_dir_reads_identically(sharded_model):
    d, _ = sharded_model
    assert len(list(d.glob("model-*-of-*.safetensors"))) > 2
    assert cpp_listing(d) == expected_listing(read_reference_dir(d))


def test_our_writer_loads_in_safetensors_single_and_sharded(tmp_path):
    tensors = varied_tensors()
    save_file(tensors, str(tmp_path / "src.safetensors"))
    single = tmp_path / "single"
    tool("copy-checkpoint", tmp_path / "src.safetensors", single, 1 << 30)
    assert sorted(os.listdir(single)) == ["model.safetensors"]
    with safe_open(str(single / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}
        assert sorted(f.keys()) == sorted(tensors)
        for k, t in tensors.items():
            got = f.get_tensor(k)
            assert got.dtype == t.dtype and got.shape == t.shape
            assert raw_bytes(got) == raw_bytes(t)
    sharded = tmp_path / "sharded"
    tool("copy-checkpoint", tmp_path / "src.safetensors", sharded, 64)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(len(raw_bytes(t)) for t in tensors.values())
    shards = {v for v in index["weight_map"].values()}
    assert len(shards) > 1
    assert sorted(p.name for p in sharded.glob("*.safetensors")) == sorted(shards)
    got = read_reference_dir(sharded)
    assert sorted(got) == sorted(tensors)
    for k, t in tensors.items():
        assert got[k].dtype == t.dtype and raw_bytes(got[k]) == raw_bytes(t)


def test_our_sharded_writer_loads_in_transformers(sharded_model, tmp_path):
    from transformers import Qwen2ForCausalLM
    src, ref = sharded_model
    out = tmp_path / "ours"
    tool("copy-checkpoint", src, out, 3000)
    assert (out / "model.safetensors.index.json").exists()
    shutil.copy(src / "config.json", out / "config.json")
    loaded = Qwen2ForCausalLM.from_pretrained(out).eval()
    ref_sd, got_sd = ref.state_dict(), loaded.state_dict()
    assert sorted(ref_sd) == sorted(got_sd)
    for k in ref_sd:
        assert torch.equal(ref_sd[k], got_sd[k]), k
    ids = torch.tensor([[1, 5, 9, 2]])
    with torch.no_grad():
        assert torch.equal(ref(ids).logits, loaded(ids).logits)


def test_bad_files_give_one_line_errors_naming_file_and_tensor(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"a": torch.ones(4), "b": torch.ones(8)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:-4])  # truncated: the last tensor runs past the end
    r = tool("inspect", path, check=False)
    assert r.returncode == 1
    assert str(path) in r.stderr and "run past the data section" in r.stderr
    assert ("'a'" in r.stderr) or ("'b'" in r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1
    # Header length field pointing beyond the file.
    n = int.from_bytes(data[:8], "little")
    path.write_bytes((n + 10**6).to_bytes(8, "little") + data[8:])
    r = tool("inspect", path, check=False)
    assert r.returncode == 1 and "runs past the end of the file" in r.stderr


def test_missing_shard_is_named(sharded_model, tmp_path):
    src, _ = sharded_model
    d = tmp_path / "broken"
    shutil.copytree(src, d)
    victim = sorted(d.glob("model-*-of-*.safetensors"))[1]
    victim.unlink()
    r = tool("inspect", d, check=False)
    assert r.returncode == 1 and victim.name in r.stderr and "missing" in r.stderr
