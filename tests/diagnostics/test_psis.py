"""PSIS k-hat: parity with arviz-stats, the sign convention, constant weights, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from arviz_stats.base import array_stats

from vidiv.diagnostics import khat_threshold, psis_khat, psis_log_weights
from vidiv.errors import NonFiniteError, VidivError


def _gaussian_log_ratios(scale: float, n: int, seed: int) -> np.ndarray:
    """log N(z; 0, 1) - log N(z; 0, scale^2) for z ~ N(0, scale^2); true k-hat = 1 - scale^2."""
    z = np.random.default_rng(seed).normal(size=n) * scale
    return -0.5 * z**2 + 0.5 * (z / scale) ** 2 + math.log(scale)


def test_khat_equals_arviz_psislw_on_the_same_log_weights():
    lw = _gaussian_log_ratios(0.7, 2000, seed=1)
    smoothed, k = psis_log_weights(lw)
    ref_lw, ref_k = array_stats.psislw(-lw, r_eff=1.0)
    assert psis_khat(lw) == float(ref_k)
    np.testing.assert_array_equal(smoothed, ref_lw)
    # normalised: logsumexp of the smoothed log weights is 0
    assert abs(np.log(np.exp(smoothed).sum())) < 1e-12


@pytest.mark.parametrize(
    ("scale", "low", "high"),
    [(0.3, 0.7, 1.2), (0.8, -0.2, 0.5), (1.3, -math.inf, 0.0)],
)
def test_sign_convention_gives_the_known_tail(scale, low, high):
    # q narrower than p: heavy right tail of the weights, k = 1 - s^2 = 0.91 (must be large);
    # q wider than p: bounded weights, k < 0
    k = psis_khat(_gaussian_log_ratios(scale, 4000, seed=0))
    assert low < k < high, (scale, k)
    # the other sign would smooth the wrong tail: for the narrow q it reports a tiny k-hat
    if scale == 0.3:
        assert array_stats.psislw(_gaussian_log_ratios(scale, 4000, 0), r_eff=1.0)[1] < 0


def test_constant_log_weights_give_minus_inf_without_error():
    assert psis_khat(np.full(100, -3.25)) == -math.inf
    # q == p up to floating-point rounding of log p - log q
    noisy = -3.25 + 1e-14 * np.random.default_rng(0).normal(size=100)
    lw, k = psis_log_weights(noisy)
    assert k == -math.inf
    np.testing.assert_allclose(np.exp(lw), np.full(100, 0.01))


def test_zero_weights_are_allowed():
    lw = _gaussian_log_ratios(0.8, 500, seed=3)
    lw[:5] = -np.inf
    k_with = psis_khat(lw)
    k_ref = float(array_stats.psislw(-lw[5:], r_eff=1.0)[1])
    assert k_with == k_ref


def test_threshold():
    assert khat_threshold(1000) == pytest.approx(1 - 1 / 3)
    assert khat_threshold(10**7) == 0.7
    assert khat_threshold(100) == pytest.approx(0.5)


def test_bad_input_messages():
    with pytest.raises(VidivError, match="at least 10"):
        psis_khat(np.zeros(9) + np.arange(9))
    with pytest.raises(NonFiniteError, match="NaN"):
        psis_khat(np.r_[np.arange(20.0), np.nan])
    with pytest.raises(VidivError, match="one-dimensional"):
        psis_khat(np.zeros((3, 20)))
    with pytest.raises(NonFiniteError, match="outside the model's support"):
        psis_khat(np.full(20, -np.inf))
    with pytest.raises(NonFiniteError, match=r"\+inf"):
        psis_khat(np.r_[np.arange(20.0), np.inf])


def test_fewer_than_25_draws_give_nan_khat_not_an_exception():
    """ArviZ fits the tail to >= 5 draws (20% of S): with 10 <= S < 25 k-hat is NaN, the weights
    are the raw self-normalised ones, and diagnose says to draw more."""
    import math

    from vidiv.diagnostics import diagnose, psis_khat, psis_log_weights, to_datatree

    rng = np.random.default_rng(3)
    lw = rng.normal(size=20)
    assert math.isnan(psis_khat(lw))
    smoothed, _ = psis_log_weights(lw)
    np.testing.assert_allclose(np.exp(smoothed), np.exp(lw) / np.exp(lw).sum())
    dt = to_datatree({"z": rng.normal(size=20)}, log_p=lw, log_q=np.zeros(20))
    report = diagnose(dt)
    assert report.verdict == "unavailable"
    assert "needs at least 25" in report.message
