"""`evoq pairs` and the voting loop's label store (pairs.h5, shards, labels.h5), read back with h5py
and checked against oracles written here: Eq. 1 recomputed from the stored answers, the lossless
early-stop point recomputed from the full answer sequence, the order-swap hash re-implemented,
1 rank vs `mpirun -np 2` bit for bit, and kill -9 at random moments followed by resume.

Device: the voter here is `debug-evo vote-fake` (answers drawn from the sample streams, no model
arithmetic), so its bit-for-bit claims hold on any device; with the real model they are CPU-only
(test_evo_vote.py, docs/TRAINING.md "Determinism: CPU and CUDA")."""
import json
import os
import random
import shutil
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

import faultlib
from parity_precision import pin_fp32  # noqa: E402

EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")
TESTTOOL = os.environ.get("EVOQ_TESTTOOL", os.path.join(os.path.dirname(EVOQ), "evoq-testtool"))  # test drivers
TOOLS = ("debug-evo", "debug-optimizer", "debug-grpo-grad", "process-logits")
MPIRUN = shutil.which("mpirun")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1")
M64 = (1 << 64) - 1


def evoq(*args, np_ranks=1, check=True, **kw):
    cmd = pin_fp32([TESTTOOL if args[0] in TOOLS else EVOQ, *map(str, args)])
    if np_ranks > 1:
        cmd = [MPIRUN, "-np", str(np_ranks), "--oversubscribe", *cmd]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def splitmix(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def counter_hash(seed, a, b):
    return splitmix(splitmix(splitmix(seed) ^ a) ^ b)


def philox4x32_10(ctr, key):
    """Random123's philox4x32-10, written from Salmon et al. (SC'11): the oracle of the swap bits."""
    M0, M1, W0, W1, U32 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85, 0xFFFFFFFF
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & U32, (k1 + W1) & U32
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & U32, p1 & U32, ((p0 >> 32) ^ c3 ^ k1) & U32, p0 & U32
    return c0, c1, c2, c3


def sample_swapped(seed, pair, k):
    """docs/FORMATS.md "Order swap": bit 0 of word 0 of Philox(key=seed, counter=(0xFFFFFFFF, k, pair))."""
    w = philox4x32_10((0xFFFFFFFF, k, pair & 0xFFFFFFFF, pair >> 32), (seed & 0xFFFFFFFF, seed >> 32))
    return w[0] & 1


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "imgs"
    for i in range(14):
        sub = d / ("sub" if i % 3 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"im{i:02d}.png").write_bytes(b"png")
    (d / "readme.txt").write_text("not an image")
    return d


def make_pairs(tmp_path, images, n=40, seed=5):
    out = tmp_path / "pairs.h5"
    evoq("pairs", "--manifest", images, "-n", n, "--seed", seed, "-o", out)
    return out


# ---- pairs.h5 ------------------------------------------------------------------------------------
def test_pairs_random_schema_and_properties(tmp_path, images):
    out = make_pairs(tmp_path, images, n=91, seed=3)  # 14 images -> exactly 91 pairs
    with h5py.File(out, "r") as f:
        assert f.attrs["schema_version"] == 1
        assert f.attrs["seed"] == 3 and f.attrs["mode"] == "random"
        assert f.attrs["manifest"] == str(images) and "T" in f.attrs["creation_time"]
        paths = [p.decode() for p in f["image_path"][:]]
        i, j = f["pair_i"][:], f["pair_j"][:]
    assert len(paths) == 14 and "readme.txt" not in paths and paths == sorted(paths)
    assert sum(p.startswith("sub/") for p in paths) == 5
    assert np.all(i != j) and np.all(i < 14) and np.all(j < 14)
    assert len({(min(a, b), max(a, b)) for a, b in zip(i, j)}) == 91  # all distinct
    r = evoq("pairs", "--manifest", images, "-n", 92, "-o", tmp_path / "x.h5", check=False)
    assert r.returncode == 1 and "only 91 distinct pairs" in r.stderr
    again = tmp_path / "again.h5"
    evoq("pairs", "--manifest", images, "-n", 91, "--seed", 3, "-o", again)
    with h5py.File(again) as f:
        assert np.array_equal(f["pair_i"][:], i) and np.array_equal(f["pair_j"][:], j)


def test_pairs_same_reference_and_pair_list(tmp_path):
    lines = ["path,reference_id"] + [f"d/{r}_{k}.png,{r}" for r in ("a", "b", "c") for k in range(4)] + ["solo.png,z"]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "p.h5"
    evoq("pairs", "--manifest", tmp_path / "list.csv", "--root", "/data", "--mode", "same-reference", "-n", 18,
         "--seed", 1, "-o", out)
    with h5py.File(out) as f:
        refs = [r.decode() for r in f["reference_id"][:]]
        i, j = f["pair_i"][:], f["pair_j"][:]
        assert f.attrs["root"] == "/data" and f.attrs["mode"] == "same-reference"
    assert all(refs[a] == refs[b] for a, b in zip(i, j))
    assert len({(min(a, b), max(a, b)) for a, b in zip(i, j)}) == 18
    r = evoq("pairs", "--manifest", tmp_path / "list.csv", "--mode", "same-reference", "-n", 19, "-o", out, check=False)
    assert r.returncode == 1 and "same-reference" in r.stderr
    (tmp_path / "pl.txt").write_text("d/a_0.png,d/b_1.png\n3,0\n")
    evoq("pairs", "--manifest", tmp_path / "list.csv", "--pair-list", tmp_path / "pl.txt", "-o", out)
    with h5py.File(out) as f:
        assert list(f["pair_i"][:]) == [0, 3] and list(f["pair_j"][:]) == [5, 0]
        assert f.attrs["mode"] == "list"
    (tmp_path / "one.txt").write_text("only.png\n")
    r = evoq("pairs", "--manifest", tmp_path / "one.txt", "-o", out, check=False)
    assert r.returncode == 1 and "only one image" in r.stderr


# ---- labels.h5 -----------------------------------------------------------------------------------
def read_labels(path):
    with h5py.File(path, "r") as f:
        data = {k: f[k][:] for k in f.keys()}
        attrs = dict(f.attrs)
    return data, attrs


def vote(tmp_path, pairs, name, *extra, np_ranks=1, check=True, **kw):
    out = tmp_path / name / "labels.h5"
    out.parent.mkdir(exist_ok=True)
    r = evoq("debug-evo", "vote-fake", "--pairs", pairs, "--out", out, "--K", 9, "--seed", 4, *extra,
             np_ranks=np_ranks, check=check, **kw)
    return out, r


def eq1(a, b):
    return np.where((a == 0) & (b == 0), np.nan, np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5)))


def test_labels_schema_and_oracles(tmp_path, images):
    pairs = make_pairs(tmp_path, images, n=60)
    full, _ = vote(tmp_path, pairs, "full", "--no-early-stop", "--keep-responses")
    early, _ = vote(tmp_path, pairs, "early")
    F, attrs = read_labels(full)
    E, _ = read_labels(early)
    assert attrs["schema_version"] == 1 and attrs["K"] == 9 and attrs["seed"] == 4
    for key in ("model_path", "model_checksum", "sampling", "prompt", "creation_time"):
        assert key in attrs
    with h5py.File(pairs) as f:
        assert np.array_equal(F["pair_i"], f["pair_i"][:]) and np.array_equal(F["pair_j"], f["pair_j"][:])
        paths = f["image_path"][:]
        assert np.array_equal(F["path_i"], paths[f["pair_i"][:]])
    assert np.array_equal(F["pair_index"], np.arange(60))
    for D in (F, E):
        off = D["sample_offset"]
        assert np.array_equal(np.diff(off), D["samples_used"])
        ans = D["sample_answer"]
        for p in range(60):
            a = ans[off[p]:off[p + 1]]
            assert D["votes_i"][p] == np.sum(a == 0) and D["votes_j"][p] == np.sum(a == 1)
            assert D["invalid"][p] == np.sum(a == -1)
        np.testing.assert_array_equal(D["p_star"], eq1(D["votes_i"], D["votes_j"]))  # Eq. 1 (NaN == NaN)
        assert np.array_equal(D["labelled"], ~np.isnan(D["p_star"]))
    # Order swaps: the Philox bit of (seed, pair, sample).
    for p in range(60):
        sw = F["sample_swapped"][F["sample_offset"][p]:F["sample_offset"][p + 1]]
        assert list(sw) == [sample_swapped(4, p, k) for k in range(9)]
    assert 0.3 < F["sample_swapped"].mean() < 0.7
    # Raw responses are stored per sample and agree with the recorded (unswapped) answers.
    assert len(F["responses"]) == len(F["sample_answer"])
    for resp, ans, sw in zip(F["responses"], F["sample_answer"], F["sample_swapped"]):
        if ans == -1:
            assert resp == b"no idea"
        else:
            shown_first_better = (ans == 0) != bool(sw)
            assert resp.endswith(b"{0}" if shown_first_better else b"{1}")
    # Early stop: same p*, and it stops at the first k where no continuation can change Eq. 1.
    np.testing.assert_array_equal(E["p_star"], F["p_star"])
    assert E["samples_used"].sum() < F["samples_used"].sum() == 60 * 9
    for p in range(60):
        a = F["sample_answer"][F["sample_offset"][p]:F["sample_offset"][p + 1]]
        stop = 9
        for k in range(1, 10):
            d = np.sum(a[:k] == 0) - np.sum(a[:k] == 1)
            if abs(d) > 9 - k:
                stop = k
                break
        assert E["samples_used"][p] == stop, p
        assert np.array_equal(E["sample_answer"][E["sample_offset"][p]:E["sample_offset"][p + 1]], a[:stop])


DATASETS = ["pair_index", "pair_i", "pair_j", "path_i", "path_j", "votes_i", "votes_j", "invalid", "samples_used",
            "p_star", "labelled", "failed", "fail_reason", "sample_offset", "sample_answer", "sample_swapped"]


def assert_same_labels(a, b):
    A, _ = read_labels(a)
    B, _ = read_labels(b)
    for k in DATASETS:
        assert A[k].dtype == B[k].dtype, k
        assert A[k].tobytes() == B[k].tobytes() if A[k].dtype != object else list(A[k]) == list(B[k]), k


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun")
def test_two_ranks_equal_one_rank_bit_for_bit(tmp_path, images):
    pairs = make_pairs(tmp_path, images, n=50)
    one, _ = vote(tmp_path, pairs, "one")
    two, r = vote(tmp_path, pairs, "two", np_ranks=2)
    strided, _ = vote(tmp_path, pairs, "strided", "--split", "strided", "--samples-per-call", 1, np_ranks=2)
    # Append-only shards: each rank wrote its own numbered segments (a flush every 4 of its 25 pairs: at
    # least 7; a slow machine may add flushes by time).
    names = sorted(os.listdir(str(two) + ".shards"))
    for r in (0, 1):
        mine = [n for n in names if n.startswith(f"labels-shard-r{r}-")]
        assert len(mine) >= 7 and mine == [f"labels-shard-r{r}-{s:06d}.h5" for s in range(len(mine))], names
    assert_same_labels(one, two)
    assert_same_labels(one, strided)
    # A rerun skips every finished pair.
    stats = tmp_path / "stats.json"
    vote(tmp_path, pairs, "two", "--stats", stats, np_ranks=2)
    ranks = json.load(open(stats))["ranks"]
    assert [(r["done"], r["skipped"]) for r in ranks] == [(0, 25), (0, 25)]


def test_failed_pairs_are_recorded_and_reported(tmp_path, images):
    pairs = make_pairs(tmp_path, images, n=40)
    out, r = vote(tmp_path, pairs, "fail", "--fail-images", "3", check=False)
    assert r.returncode == 3
    D, attrs = read_labels(out)
    with h5py.File(pairs) as f:
        involved = (f["pair_i"][:] == 3) | (f["pair_j"][:] == 3)
        bad_path = f["image_path"][3].decode()
    assert np.array_equal(D["failed"].astype(bool), involved) and involved.any()
    assert all(f"cannot read image '{bad_path}'" == x.decode() for x in D["fail_reason"][involved])
    assert attrs["num_failed"] == involved.sum()
    assert np.all(np.isnan(D["p_star"][involved])) and not np.any(np.isnan(D["p_star"][~involved]))


def test_resume_with_other_settings_is_refused(tmp_path, images):
    pairs = make_pairs(tmp_path, images, n=10)
    vote(tmp_path, pairs, "run")
    out = tmp_path / "run" / "labels.h5"
    r = evoq("debug-evo", "vote-fake", "--pairs", pairs, "--out", out, "--K", 7, "--seed", 4, check=False)
    assert r.returncode == 1 and "different settings (K (was 9, now 7))" in r.stderr, r.stderr


def test_kill_9_at_random_moments_then_resume(tmp_path, images):
    """Six SIGKILLs of the whole job (1 or 2 ranks), each 1-8 pairs after the previous one's progress
    and up to 50 ms later (so some land mid-flush); the fake model sleeps 3 ms per sample, so on any
    machine most of the 90 pairs remain. No flushed pair is lost or duplicated; the final labels equal
    an uninterrupted run's."""
    rng = random.Random(1)
    pairs = make_pairs(tmp_path, images, n=90, seed=9)
    reference, _ = vote(tmp_path, pairs, "reference")
    out = tmp_path / "crash" / "labels.h5"
    out.parent.mkdir()
    shards = str(out) + ".shards"
    finished = set()
    for trial in range(6):
        np_ranks = 2 if (MPIRUN and trial % 2 == 1) else 1
        cmd = [TESTTOOL, "debug-evo", "vote-fake", "--pairs", str(pairs), "--out", str(out), "--K", "9", "--seed", "4",
               "--flush-every", "1", "--sleep-ms", "3"]
        if np_ranks > 1:
            cmd = [MPIRUN, "-np", "2", "--oversubscribe", *cmd]
        target = len(finished) + rng.randint(1, 8)
        proc = faultlib.kill_after_progress(cmd, lambda: faultlib.flushed_pair_count(shards), target, rng, ENV)
        assert proc.returncode == -signal.SIGKILL, proc.returncode
        now = set(faultlib.label_segments(shards))
        assert finished <= now, "a flushed pair was lost"
        assert target <= len(now) < 90, f"the kill landed after {len(now)} of 90 pairs: no work remained"
        finished = now
    evoq("debug-evo", "vote-fake", "--pairs", pairs, "--out", out, "--K", 9, "--seed", 4, "--flush-every", 1)
    assert len(faultlib.label_segments(shards)) == 90
    assert_same_labels(reference, out)


def flip_bit(path, offset, bit=0):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


@pytest.mark.parametrize("target", ["p_star", "votes_i", "response"])
def test_a_flipped_bit_in_a_shard_segment_is_refused(tmp_path, images, target):
    """One bit flipped in a flushed segment (a p* value, a vote count, one character of a stored
    answer): the merge and a resumed vote refuse it with a line naming the segment; deleting the
    segment and voting again redoes its pairs and gives the undamaged labels."""
    pairs = make_pairs(tmp_path, images, n=20)
    clean, _ = vote(tmp_path, pairs, "clean", "--keep-responses", "--flush-every", 5)
    out, _ = vote(tmp_path, pairs, "damaged", "--keep-responses", "--flush-every", 5)
    shards = str(out) + ".shards"
    segment = sorted(os.listdir(shards))[1]
    path = os.path.join(shards, segment)
    if target == "response":
        raw = open(path, "rb").read()
        offset = raw.find(b"boxed{") + len("boxed{")  # the answer digit of a stored response
        assert offset > len("boxed{")
    else:
        with h5py.File(path, "r") as f:
            offset = f[target].id.get_chunk_info(0).byte_offset
    flip_bit(path, offset)
    os.remove(out)
    args = ["debug-evo", "vote-fake", "--pairs", pairs, "--out", out, "--K", 9, "--seed", 4, "--keep-responses",
            "--flush-every", 5]
    for extra in (["--merge-only"], []):
        r = evoq(*args, *extra, check=False)
        assert r.returncode == 1 and segment in r.stderr and "corrupt" in r.stderr, r.stderr
        assert not out.exists()
    os.remove(path)
    evoq(*args)
    assert_same_labels(clean, out)


def test_philox_oracle_known_answers():
    # Random123 kat_vectors, "philox4x32 10" lines: the oracle above is itself checked.
    assert philox4x32_10((0, 0, 0, 0), (0, 0)) == (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)
    assert philox4x32_10((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2) == (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)
