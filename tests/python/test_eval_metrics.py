"""SRCC / KRCC / PLCC / logistic-fitted PLCC of `evoq metrics` against scipy."""
import json
import os
import subprocess

import numpy as np
import pytest
from scipy import optimize, stats

EVOQ = os.environ.get("EVOQ_BIN", "build/bin/evoq")


def logistic4(x, b1, b2, b3, b4):
    return (b1 - b2) / (1 + np.exp(-(x - b3) / np.abs(b4))) + b2


def run_metrics(tmp_path, x, y):
    path = tmp_path / "xy.csv"
    with open(path, "w") as f:
        f.write("x,y\n")
        for a, b in zip(x, y):
            f.write(f"{float(a)!r},{float(b)!r}\n")
    out = subprocess.run([EVOQ, "metrics", "--csv", str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def scipy_fitted_plcc(x, y):
    p0 = [np.max(y), np.min(y), np.mean(x), np.std(x)]
    beta, _ = optimize.curve_fit(logistic4, x, y, p0=p0, maxfev=20000)
    yhat = logistic4(x, *beta)
    return stats.pearsonr(yhat, y)[0], float(np.sum((yhat - y) ** 2))


CASES = []
rng = np.random.default_rng(1234)
for n in (5, 12, 50, 300):
    x = rng.normal(size=n)
    y = 3 / (1 + np.exp(-1.5 * x)) + rng.normal(scale=0.3, size=n)
    CASES.append((f"logistic-noise-{n}", x, y))
x = rng.integers(0, 5, size=60).astype(float)  # heavy ties in x
y = np.round(x + rng.normal(scale=1.0, size=60))  # ties in y
CASES.append(("ties", x, y))
x = rng.uniform(1, 5, size=40)
CASES.append(("negative", x, 100 - 7 * x + rng.normal(scale=2, size=40)))


@pytest.mark.parametrize("name,x,y", CASES, ids=[c[0] for c in CASES])
def test_against_scipy(tmp_path, name, x, y):
    got = run_metrics(tmp_path, x, y)
    assert got["n"] == len(x)
    assert got["plcc"] == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-10)
    assert got["srcc"] == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-10)
    assert got["krcc"] == pytest.approx(stats.kendalltau(x, y, variant="b")[0], abs=1e-10)
    ref_plcc, ref_sse = scipy_fitted_plcc(x, y)
    # Same model, same start values: our LM must reach at least scipy's minimum and the same PLCC.
    assert got["sse"] <= ref_sse * (1 + 1e-6) + 1e-12
    assert got["plcc_fitted"] == pytest.approx(ref_plcc, abs=2e-4)


def test_n2_and_constant(tmp_path):
    got = run_metrics(tmp_path, [1.0, 2.0], [5.0, 3.0])
    assert got["plcc"] == pytest.approx(stats.pearsonr([1, 2], [5, 3])[0])
    assert got["srcc"] == pytest.approx(-1.0)
    assert got["krcc"] == pytest.approx(stats.kendalltau([1, 2], [5, 3])[0])
    assert got["plcc_fitted"] is None  # fewer points than logistic parameters
    got = run_metrics(tmp_path, [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 2.0, 2.0, 2.0, 2.0])
    # scipy returns NaN (with a warning) for constant input; evoq writes null.
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert np.isnan(stats.spearmanr([1, 2, 3, 4, 5], [2, 2, 2, 2, 2])[0])
    assert got["srcc"] is None and got["plcc"] is None and got["krcc"] is None and got["plcc_fitted"] is None


def test_mismatched_input_is_an_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("x,y\n1,2\n3,abc\n")
    out = subprocess.run([EVOQ, "metrics", "--csv", str(path)], capture_output=True, text=True)
    assert out.returncode != 0
    assert "bad.csv:3" in out.stderr
