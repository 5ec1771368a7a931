"""compare_to_reference: exact numbers on a constructed case, DataTree and npz-like references."""

from __future__ import annotations

import numpy as np
import pytest

from vidiv.diagnostics import compare_to_reference, to_datatree
from vidiv.errors import VidivError


def test_exact_numbers_on_a_constructed_case():
    # VI draws of theta[0] = {0, 2} (mean 1, sd sqrt(2)), theta[1] = {1, 1}; mu = {0, 1}
    dt = to_datatree({"theta": np.array([[0.0, 1.0], [2.0, 1.0]]), "mu": np.array([0.0, 1.0])})
    ref = {
        "theta": np.array([[0.0, 0.0], [0.0, 2.0], [3.0, 1.0], [1.0, 1.0]]),  # col means 1, 1
        "mu": np.array([0.0, 1.0, 2.0, 3.0]),
        "chain": np.zeros(4, dtype=np.int8),  # ignored: not in the posterior
    }
    df = compare_to_reference(dt, ref)
    assert list(df.index) == ["theta[0]", "theta[1]", "mu"]
    sd_ref0 = np.std([0.0, 0.0, 3.0, 1.0], ddof=1)  # sqrt(2)
    assert df.loc["theta[0]", "sd_ref"] == pytest.approx(sd_ref0)
    assert df.loc["theta[0]", "std_mean_error"] == pytest.approx(0.0)
    assert df.loc["theta[0]", "sd_ratio"] == pytest.approx(np.sqrt(2.0) / sd_ref0)
    # W1 between {0, 2} and {0, 0, 3, 1}: sorted quarters 0,0,2,2 vs 0,0,1,3 differ by 0,0,1,1
    assert df.loc["theta[0]", "wasserstein"] == pytest.approx(0.5)
    assert df.loc["theta[1]", "sd_ratio"] == pytest.approx(0.0)
    # mu: VI mean 0.5, ref mean 1.5, ref sd sqrt(5/3)
    assert df.loc["mu", "std_mean_error"] == pytest.approx(1.0 / np.sqrt(5.0 / 3.0))
    assert df.loc["mu", "wasserstein"] == pytest.approx(1.0)


def test_reference_as_datatree_and_gaussian_accuracy(rng):
    ref = to_datatree({"beta": rng.normal(size=(20000, 2, 2))})
    vi = to_datatree({"beta": 0.5 + 2.0 * rng.normal(size=(20000, 2, 2))})
    df = compare_to_reference(vi, ref)
    assert list(df.index) == ["beta[0, 0]", "beta[0, 1]", "beta[1, 0]", "beta[1, 1]"]
    np.testing.assert_allclose(df["std_mean_error"], 0.5, atol=0.05)
    np.testing.assert_allclose(df["sd_ratio"], 2.0, atol=0.05)
    # W1(N(0.5, 4), N(0, 1)) = E|0.5 + Z| ~ 0.86 for quantile coupling (2z + 0.5 vs z)
    expected = np.mean(np.abs(0.5 + np.random.default_rng(1).normal(size=10**6)))
    np.testing.assert_allclose(df["wasserstein"], expected, atol=0.05)


def test_bad_input(rng):
    dt = to_datatree({"a": rng.normal(size=(10, 3))})
    with pytest.raises(VidivError, match="no variable in common"):
        compare_to_reference(dt, {"b": np.zeros(10)})
    with pytest.raises(VidivError, match=r"shape \(3,\) per draw in the VI posterior but \(2,\)"):
        compare_to_reference(dt, {"a": np.zeros((10, 2))})
    with pytest.raises(VidivError, match="missing from the VI posterior"):
        compare_to_reference(dt, {"a": np.zeros((10, 3))}, var_names=["a", "c"])
    with pytest.raises(VidivError, match="reference must be a dict"):
        compare_to_reference(dt, [1, 2, 3])


def test_posteriordb_reference_npz_halves_agree():
    """Real reference draws (posteriordb eight schools, NUTS): one half of the chains against
    all of them is accurate, and a deliberately narrowed copy is flagged by the sd ratio."""
    from pathlib import Path

    path = (Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "posteriordb"
            / "eight_schools-eight_schools_noncentered" / "reference.npz")
    if not path.exists():
        pytest.skip("shared posteriordb reference draws not available")
    ref = np.load(path)
    half = ref["chain"] < 5  # chains 0-4 as the "approximation"
    vi = {k: ref[k][half].astype(float) for k in ("mu", "tau", "theta")}
    df = compare_to_reference(to_datatree(vi), ref)
    assert len(df) == 1 + 1 + 8
    assert df["std_mean_error"].max() < 0.06  # Monte Carlo noise of 5000 vs 10000 draws
    assert abs(df["sd_ratio"] - 1).max() < 0.06
    mu = ref["mu"].astype(float)
    narrow = {"mu": mu.mean() + 0.5 * (mu - mu.mean())}
    row = compare_to_reference(to_datatree(narrow), ref).loc["mu"]
    assert row["sd_ratio"] == pytest.approx(0.5, rel=1e-6)
    assert row["std_mean_error"] == pytest.approx(0.0, abs=1e-6)
