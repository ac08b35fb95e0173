"""`evoq labels-from-scores`: labels.h5 from scores (supervised GRPO through the vote-label path).

Oracle: p* written here by hand from the scores (1 when the first image of a pair is better, 0.5 on a
tie, 0 otherwise), for MOS (higher is better) and DMOS (lower is better); the file trains with
`evoq train` and the rollouts carry exactly those p*."""
import os

import h5py
import numpy as np
import pytest

from train_testlib import EVOQ, brightness_images, build_scoring_model, run, save_checkpoint


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("scores"))
    images = brightness_images(d, 6)
    pairs = os.path.join(d, "pairs.h5")
    run([EVOQ, "pairs", "--manifest", d, "-n", "15", "--seed", "4", "-o", pairs])  # every pair of 6 images
    return d, images, pairs


def write_scores(path, rows, header="path,score"):
    with open(path, "w") as f:
        f.write(header + "\n" + "".join(f"{p},{s}\n" for p, s in rows))


def pairs_of(labels):
    with h5py.File(labels, "r") as f:
        names = [x.decode() for x in f["image_path"][:]]
        return [(names[i], names[j]) for i, j in zip(f["pair_i"][:], f["pair_j"][:])], f["p_star"][:], dict(f.attrs)


def test_p_star_from_mos_and_dmos(pool, tmp_path):
    d, images, pairs = pool
    names = [os.path.basename(p) for p in images]
    mos = {n: float(k // 2) for k, n in enumerate(names)}  # img0 = img1 < img2 = img3 < img4 = img5: ties exist
    csv = str(tmp_path / "mos.csv")
    write_scores(csv, [(os.path.join(d, n), s) for n, s in mos.items()])  # absolute paths
    out = str(tmp_path / "labels.h5")
    res = run([EVOQ, "labels-from-scores", "--pairs", pairs, "--scores", csv, "-o", out])
    got, p_star, attrs = pairs_of(out)
    assert len(got) == 15
    want = [1.0 if mos[a] > mos[b] else 0.5 if mos[a] == mos[b] else 0.0 for a, b in got]
    np.testing.assert_array_equal(p_star, want)
    assert attrs["label_source"] == "scores"
    assert "ties 3" in res.stderr + res.stdout

    # DMOS (lower is better), relative paths, named column, tie tolerance 0.6 merges scores 0.5 apart.
    dmos = dict(zip(names, [3.0, 1.0, 4.0, 1.5, 5.0, 2.0]))
    csv = str(tmp_path / "dmos.csv")
    write_scores(csv, [(os.path.relpath(os.path.join(d, n), tmp_path), s) for n, s in dmos.items()], "image,dmos")
    run([EVOQ, "labels-from-scores", "--pairs", pairs, "--scores", csv, "--direction", "lower-is-better",
         "--tie-tolerance", "0.6", "-o", out])
    got, p_star, _ = pairs_of(out)
    want = [0.5 if abs(dmos[a] - dmos[b]) <= 0.6 else 1.0 if dmos[a] < dmos[b] else 0.0 for a, b in got]
    np.testing.assert_array_equal(p_star, want)
    assert 0.0 in want and 0.5 in want and 1.0 in want


def test_unscored_image_and_bad_input(pool, tmp_path):
    d, images, pairs = pool
    csv = str(tmp_path / "part.csv")
    write_scores(csv, [(p, i) for i, p in enumerate(images[:-1])])
    out = str(tmp_path / "labels.h5")
    res = run([EVOQ, "labels-from-scores", "--pairs", pairs, "--scores", csv, "-o", out], check=False)
    assert res.returncode != 0 and "no score for 'img5.png'" in res.stderr and "--skip-unscored" in res.stderr
    assert not os.path.exists(out)
    run([EVOQ, "labels-from-scores", "--pairs", pairs, "--scores", csv, "--skip-unscored", "-o", out])
    got, p_star, _ = pairs_of(out)
    unscored = [("img5.png" in (a, b)) for a, b in got]
    assert sum(unscored) == 5 and all(np.isnan(p_star[k]) == u for k, u in enumerate(unscored))

    write_scores(csv, [(images[0], "good")])
    res = run([EVOQ, "labels-from-scores", "--pairs", pairs, "--scores", csv, "-o", out], check=False)
    assert res.returncode != 0 and "line 2" in res.stderr and "'good' is not a finite number" in res.stderr
    res = run([EVOQ, "labels-from-scores", "--pairs", pairs, "--scores", csv, "--direction", "up", "-o", out],
              check=False)
    assert res.returncode == 2 and "--direction 'up'" in res.stderr


def test_trains_through_the_vote_label_path(pool, tmp_path):
    d, images, pairs = pool
    csv = str(tmp_path / "mos.csv")
    write_scores(csv, [(p, i) for i, p in enumerate(images)])  # brighter is better
    labels = str(tmp_path / "labels.h5")
    run([EVOQ, "labels-from-scores", "--pairs", pairs, "--scores", csv, "-o", labels])
    model = save_checkpoint(build_scoring_model(seed=0), str(tmp_path / "model"))
    out = str(tmp_path / "run")
    res = run([EVOQ, "train", "--model", model, "--labels", labels, "--out", out, "--steps", "1", "--pairs-per-step",
               "2", "--samples", "4", "--max-new-tokens", "4", "--reasoning", "false", "--threads", "1"])
    assert "15 usable pairs" in res.stderr + res.stdout
    with h5py.File(os.path.join(out, "rollouts", "step-00000000.h5"), "r") as f:
        for i, j, p in zip(f["pair_i"][:], f["pair_j"][:], f["p_star"][:]):
            assert p == (1.0 if i > j else 0.0)  # image index order = brightness order = score order
