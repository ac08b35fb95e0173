"""evoq's .npy reader/writer against numpy (the oracle): arrays written by C++ load in numpy with the
expected dtype, shape and values; arrays saved by numpy (versions 1.0 and 2.0) read back in C++."""
import os
import subprocess

import numpy as np
import pytest

TOOL = os.path.join(os.environ.get("EVOQ_BUILD_DIR", "build"), "bin", "evoq_io_tool")

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def tool(*args, check=True):
    return subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True, check=check)


def pattern(dtype, shape):
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    if dtype in (np.float32, np.float64):
        v = i.astype(dtype) * dtype(0.375) - dtype(5)
    elif dtype == np.uint8:
        v = (i * 7) % 256
    else:
        v = i * 7 - 11
    return v.astype(dtype).reshape(shape)


@pytest.mark.parametrize("name", list(DTYPES))
@pytest.mark.parametrize("shape", [(2, 3), (5,), (), (0, 4), (3, 1, 2, 2)])
def test_cpp_written_loads_in_numpy(tmp_path, name, shape):
    out = tmp_path / "a.npy"
    tool("npy-write", name, ",".join(map(str, shape)) or "scalar", out)
    arr = np.load(out)
    assert arr.dtype == DTYPES[name]
    assert arr.shape == shape
    assert arr.flags.c_contiguous
    np.testing.assert_array_equal(arr, pattern(DTYPES[name], shape))
    # Same bytes as numpy's own writer (format 1.0, same padding).
    ref = tmp_path / "ref.npy"
    np.save(ref, pattern(DTYPES[name], shape))
    assert out.read_bytes() == ref.read_bytes()


@pytest.mark.parametrize("name", list(DTYPES))
@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_numpy_written_reads_in_cpp(tmp_path, name, version):
    rng = np.random.default_rng(7)
    arr = (rng.standard_normal((4, 7, 3)) * 100).astype(DTYPES[name])
    src = tmp_path / "src.npy"
    with open(src, "wb") as f:
        np.lib.format.write_array(f, arr, version=version)
    info = tool("npy-info", src).stdout.split()
    assert info == [name, "4,7,3"]
    dst = tmp_path / "dst.npy"
    tool("npy-copy", src, dst)
    back = np.load(dst)
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)


def test_fortran_and_big_endian_are_refused_with_the_file_name(tmp_path):
    f = tmp_path / "f.npy"
    np.save(f, np.asfortranarray(np.ones((2, 3), np.float32)))
    r = tool("npy-info", f, check=False)
    assert r.returncode != 0 and str(f) in r.stderr and "Fortran" in r.stderr
    b = tmp_path / "b.npy"
    np.save(b, np.ones(3, dtype=">f4"))
    r = tool("npy-info", b, check=False)
    assert r.returncode != 0 and str(b) in r.stderr and "big-endian" in r.stderr


def test_truncated_numpy_file_is_refused(tmp_path):
    f = tmp_path / "t.npy"
    np.save(f, np.ones((10, 10), np.float64))
    data = f.read_bytes()
    f.write_bytes(data[:-8])
    r = tool("npy-info", f, check=False)
    assert r.returncode != 0 and "truncated" in r.stderr
