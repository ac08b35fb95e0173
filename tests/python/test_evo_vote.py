"""`evoq vote` with a real (tiny, random) Qwen2.5-VL: labels.h5 checked against oracles written here
(Philox swap bits, sha256 of the weights, Eq. 1 from the stored answers, the parse of the stored
responses), the samples of pair 0 against `evoq compare` (same seed -> same streams), 1 rank vs
`mpirun -np 2` bit for bit (responses included), kill -9 then resume, and a corrupt image.

Device: the bit-for-bit claims (rank counts, batching, resume) are made and tested on the CPU. On CUDA
the rows of a batch are computed by kernels that depend on the batch's size, so a different rank count
or batching changes logits in the last bits and can flip a sampled token: labels agree in
distribution, not bit for bit (docs/TRAINING.md "Determinism: CPU and CUDA")."""
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
import faultlib  # noqa: E402
from parity_precision import pin_fp32  # noqa: E402
from test_evo_labels import DATASETS, ENV, EVOQ, MPIRUN, evoq, sample_swapped  # noqa: E402

ROOT = os.environ.get("EVOQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
K = 6
COMMON = ["-K", K, "--seed", 3, "--max-new-tokens", 12, "--keep-responses", "--threads", 1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("vote")
    model = d / "model"
    subprocess.run([sys.executable, os.path.join(ROOT, "data_prep", "make_tiny_model.py"), str(model)], check=True,
                   capture_output=True)
    rng = np.random.default_rng(0)
    (d / "imgs").mkdir()
    for i in range(5):
        Image.fromarray((rng.random((40 + 8 * i, 56, 3)) * 255).astype("uint8")).save(d / "imgs" / f"im{i}.png")
    pairs = d / "pairs.h5"
    evoq("pairs", "--manifest", d / "imgs", "-n", 7, "--seed", 2, "-o", pairs)
    return d, model, pairs


def vote(out, model, pairs, *extra, np_ranks=1, check=True):
    if "--pairs-per-batch" not in extra:
        extra = (*extra, "--pairs-per-batch", 3)
    return evoq("vote", "--model", model, "--pairs", pairs, "--out", out, *COMMON, *extra, np_ranks=np_ranks,
                check=check)


def read(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in f.keys()}, dict(f.attrs)


def assert_same(a, b):
    A, _ = read(a)
    B, _ = read(b)
    for k in DATASETS + ["responses"]:
        if A[k].dtype == object:
            assert list(A[k]) == list(B[k]), k
        else:
            assert A[k].tobytes() == B[k].tobytes(), k


def weights_checksum(model_dir):
    lines = ""
    for name in sorted(n for n in os.listdir(model_dir) if n.endswith(".safetensors")):
        lines += f"{name} {hashlib.sha256(open(os.path.join(model_dir, name), 'rb').read()).hexdigest()}\n"
    return hashlib.sha256(lines.encode()).hexdigest()


def shown_vote(text):
    """Independent reading of a compare answer: the last boxed{...} must hold exactly 0 or 1."""
    boxes = re.findall(r"boxed\{\s*([^{}]*?)\s*\}", text)
    return int(boxes[-1]) if boxes and boxes[-1] in ("0", "1") else -1


def test_labels_oracles_and_compare_streams(setup, tmp_path):
    d, model, pairs = setup
    out = tmp_path / "labels.h5"
    vote(out, model, pairs, "--early-stop=0")
    D, attrs = read(out)
    assert attrs["K"] == K and attrs["seed"] == 3 and attrs["schema_version"] == 1
    assert attrs["model_checksum"] == weights_checksum(model)
    assert "Compare the two images" in attrs["prompt"] and "<think> </think>" in attrs["prompt"]
    n = len(D["pair_index"])
    assert n == 7 and np.all(D["samples_used"] == K)
    off = D["sample_offset"]
    for p in range(n):
        sw = D["sample_swapped"][off[p]:off[p + 1]]
        assert list(sw) == [sample_swapped(3, p, k) for k in range(K)]
        for k in range(K):
            text = D["responses"][off[p] + k].decode()
            v = shown_vote(text)
            expected = -1 if v < 0 else (v if not sw[k] else 1 - v)  # back to the original order
            assert D["sample_answer"][off[p] + k] == expected, text
        a = D["sample_answer"][off[p]:off[p + 1]]
        vi, vj = np.sum(a == 0), np.sum(a == 1)
        assert (D["votes_i"][p], D["votes_j"][p], D["invalid"][p]) == (vi, vj, np.sum(a == -1))
        want = np.nan if vi == vj == 0 else 1.0 if vi > vj else 0.0 if vi < vj else 0.5  # Eq. 1
        assert (np.isnan(want) and np.isnan(D["p_star"][p])) or D["p_star"][p] == want
    # Pair 0 is request 0: its samples are those of `evoq compare` on the same images with the same seed.
    import json
    with h5py.File(pairs) as f:
        root = f.attrs["root"] if "root" in f.attrs else str(d / "imgs")
        paths = [os.path.join(root, f["image_path"][f[c][0]].decode()) for c in ("pair_i", "pair_j")]
    r = evoq("compare", "--model", model, *paths, "--samples", K, "--seed", 3, "--max-new-tokens", 12,
             "--temperature", 1, "--top-k", 50, "--top-p", 1, "--repetition-penalty", 1, "--json", "--threads", 1)
    cmp = json.loads(r.stdout)
    by_index = {s["index"]: s for s in cmp["responses"]}
    for k in range(K):
        assert by_index[k]["text"] == D["responses"][k].decode()
        assert by_index[k]["swapped"] == bool(D["sample_swapped"][k])


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun")
def test_two_ranks_equal_one_rank_and_batching(setup, tmp_path):
    # Bit for bit on the CPU (this test's device); not expected on CUDA (module docstring).
    d, model, pairs = setup
    one, two, batched = tmp_path / "one.h5", tmp_path / "two.h5", tmp_path / "batched.h5"
    vote(one, model, pairs, "--pairs-per-batch", 1)
    vote(two, model, pairs, np_ranks=2)
    vote(batched, model, pairs, "--pairs-per-batch", 7, "--split", "strided")
    names = sorted(os.listdir(str(two) + ".shards"))
    assert {n.split("-")[2] for n in names} == {"r0", "r1"}, names  # every rank wrote its own segments
    assert_same(one, two)
    assert_same(one, batched)


def test_kill_9_then_resume_gives_the_uninterrupted_labels(setup, tmp_path):
    """SIGKILL (the whole job, mpirun included) after 1-3 more pairs were flushed than before, three
    times, then a rerun: no flushed pair lost or duplicated, final labels equal an uninterrupted run's."""
    d, model, _ = setup
    rng = np.random.default_rng(1)
    (tmp_path / "imgs").mkdir()
    for i in range(8):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype("uint8")).save(tmp_path / "imgs" / f"k{i}.png")
    pairs = tmp_path / "pairs.h5"
    evoq("pairs", "--manifest", tmp_path / "imgs", "-n", 24, "--seed", 5, "-o", pairs)
    reference = tmp_path / "reference.h5"
    vote(reference, model, pairs)
    out = tmp_path / "crash.h5"
    shards = str(out) + ".shards"
    pick = random.Random(4)
    finished = set()
    for trial in range(3):
        cmd = pin_fp32([EVOQ, "vote", "--model", str(model), "--pairs", str(pairs), "--out", str(out),
                        *map(str, COMMON), "--flush-every", "1", "--pairs-per-batch", "1"])
        if MPIRUN and trial == 1:
            cmd = [MPIRUN, "-np", "2", "--oversubscribe", *cmd]
        target = len(finished) + pick.randint(1, 3)
        proc = faultlib.kill_after_progress(cmd, lambda: faultlib.flushed_pair_count(shards), target, pick, ENV)
        assert proc.returncode < 0 or proc.returncode > 128 or MPIRUN and trial == 1, proc.returncode
        now = set(faultlib.label_segments(shards))
        assert finished <= now, "a flushed pair was lost"
        assert target <= len(now) < 24, f"the kill landed after {len(now)} of 24 pairs: no work remained"
        assert not out.exists(), "labels.h5 was merged: the job had finished"
        finished = now
    vote(out, model, pairs)
    assert len(faultlib.label_segments(shards)) == 24
    assert_same(reference, out)


def test_unreadable_image_fails_its_pairs_only(setup, tmp_path):
    d, model, pairs = setup
    imgs = tmp_path / "imgs"
    shutil.copytree(d / "imgs", imgs)
    (imgs / "im1.png").write_bytes(b"not a png")
    out = tmp_path / "labels.h5"
    r = vote(out, model, pairs, "--root", imgs, check=False)
    assert r.returncode == 3, r.stderr
    D, attrs = read(out)
    with h5py.File(pairs) as f:
        names = [p.decode() for p in f["image_path"][:]]
        bad = names.index("im1.png")
        involved = (f["pair_i"][:] == bad) | (f["pair_j"][:] == bad)
    assert involved.any() and not involved.all()
    assert np.array_equal(D["failed"].astype(bool), involved)
    assert all("im1.png" in x.decode() for x in D["fail_reason"][involved])
    assert np.all(D["samples_used"][~involved] > 0)
    assert "failed" in r.stderr


def test_bad_arguments_are_clear_errors(setup, tmp_path):
    d, model, pairs = setup
    r = vote(tmp_path / "x.h5", tmp_path / "no-model", pairs, check=False)
    assert r.returncode != 0 and "no-model" in r.stderr
    r = vote(tmp_path / "x.h5", model, tmp_path / "missing.h5", check=False)
    assert r.returncode != 0 and "missing.h5" in r.stderr
    r = evoq("vote", "--model", model, "--pairs", pairs, "--out", tmp_path / "x.h5", "-K", 0, check=False)
    assert r.returncode == 2 and "--samples" in r.stderr


def test_sigusr1_flushes_and_exits_75_then_rerun_completes(setup, tmp_path):
    """SIGUSR1 once the log shows a finished pair (nothing flushed yet: --flush-every 100), delivered
    while the job is frozen so that it lands with work remaining: the stop path flushes, exits 75."""
    d, model, pairs = setup
    reference = tmp_path / "reference.h5"
    vote(reference, model, pairs)
    out = tmp_path / "stopped.h5"
    cmd = pin_fp32([EVOQ, "vote", "--model", str(model), "--pairs", str(pairs), "--out", str(out), *map(str, COMMON),
                    "--pairs-per-batch", "1", "--flush-every", "100", "--progress-every", "0"])
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    seen = ""
    for line in proc.stderr:  # progress lines: "vote: <finished>/<total> pairs ..."
        seen += line
        m = re.search(r"vote: (\d+)/7 pairs", line)
        if m and int(m.group(1)) >= 1:
            break
    assert proc.poll() is None, seen
    with faultlib.frozen(proc):
        proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 75, seen + err
    done = faultlib.label_segments(str(out) + ".shards")
    assert 1 <= len(done) < 7 and not out.exists() and "rerun" in err
    vote(out, model, pairs)
    assert_same(reference, out)