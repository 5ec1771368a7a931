"""Estimator values against closed forms and limits (numpy, float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from vidiv.estimators import (
    cubo,
    elbo,
    log_marginal,
    log_variance,
    renyi_bound,
    vis_guide_surrogate,
    vis_model_surrogate,
)


@pytest.fixture
def lw(rng):
    return rng.normal(-3.0, 1.5, size=(64, 3))


def test_elbo_and_log_marginal_match_definitions(lw):
    zeros = np.zeros_like(lw)
    np.testing.assert_allclose(elbo(lw, zeros), lw.mean(0), rtol=0, atol=1e-14)
    np.testing.assert_allclose(
        log_marginal(lw, zeros), np.log(np.exp(lw).mean(0)), rtol=1e-13, atol=0
    )
    # log_p and log_q enter only through their difference
    np.testing.assert_allclose(log_marginal(lw + 5.0, zeros + 5.0), log_marginal(lw, zeros))


@pytest.mark.parametrize("alpha", [-3.0, -1.0, 0.0, 0.3, 0.5, 0.9, 2.0, 5.0])
def test_renyi_matches_power_mean(lw, alpha):
    zeros = np.zeros_like(lw)
    expected = np.log(np.mean(np.exp((1 - alpha) * lw), axis=0)) / (1 - alpha)
    np.testing.assert_allclose(renyi_bound(lw, zeros, alpha), expected, rtol=1e-12)


def test_renyi_special_cases(lw):
    zeros = np.zeros_like(lw)
    np.testing.assert_array_equal(renyi_bound(lw, zeros, 1.0), elbo(lw, zeros))
    np.testing.assert_allclose(renyi_bound(lw, zeros, 0.0), log_marginal(lw, zeros), rtol=1e-14)
    np.testing.assert_allclose(renyi_bound(lw, zeros, -1.0), cubo(lw, zeros), rtol=1e-14)
    # one particle: every alpha gives the ELBO
    for a in (-2.0, 0.0, 0.5, 1.0, 3.0):
        np.testing.assert_allclose(renyi_bound(lw[:1], zeros[:1], a), lw[0], rtol=1e-13)


@pytest.mark.parametrize("eps", [1e-4, -1e-4, 1e-6, -1e-6, 5e-4, 9.99e-4, -9.99e-4])
def test_renyi_continuous_across_alpha_one(lw, eps):
    """Near alpha = 1 the bound equals its cumulant expansion mean + eps/2 var + eps^2/6 k3."""
    zeros = np.zeros_like(lw)
    c = lw - lw.mean(0)
    var, k3 = (c**2).mean(0), (c**3).mean(0)
    series = lw.mean(0) + eps / 2 * var + eps**2 / 6 * k3
    got = renyi_bound(lw, zeros, 1.0 - eps)
    # next term is O(eps^3 * k4): < 1e-9 here
    np.testing.assert_allclose(got, series, rtol=0, atol=1e-9)


def test_renyi_no_jump_at_branch_boundary(lw):
    zeros = np.zeros_like(lw)
    below = renyi_bound(lw, zeros, 1.0 - 0.9999e-3)
    above = renyi_bound(lw, zeros, 1.0 - 1.0001e-3)
    # the exact derivative d/d eps is ~var/2 ~ 1.1: the step of 2e-7 in eps moves it ~2e-7
    np.testing.assert_allclose(below, above, rtol=0, atol=1e-6)


def test_bounds_are_ordered_for_every_sample_set(rng):
    """Power means: CUBO >= log mean w >= L_0.5 >= ELBO for any fixed particles."""
    for _ in range(20):
        lw = rng.normal(0, 3, size=(7,))
        z = np.zeros(7)
        vals = [cubo(lw, z), log_marginal(lw, z), renyi_bound(lw, z, 0.5), elbo(lw, z)]
        assert all(a >= b - 1e-12 for a, b in zip(vals, vals[1:], strict=False))


def test_gaussian_log_weights_closed_form():
    """log w ~ N(m, s^2) exactly (quantiles): L_alpha -> m + (1 - alpha) s^2 / 2."""
    from scipy.stats import norm

    S = 200_000
    m, s = -2.0, 0.5
    lw = m + s * norm.ppf((np.arange(S) + 0.5) / S)
    for alpha in (-1.0, 0.0, 0.5, 2.0):
        got = float(renyi_bound(lw, np.zeros(S), alpha))
        assert got == pytest.approx(m + (1 - alpha) * s**2 / 2, abs=2e-4)


def test_extreme_log_weights_are_finite_and_exact():
    z = np.zeros(3)
    lw = np.array([1e4, -1e4, -np.inf])
    assert float(log_marginal(lw, z)) == pytest.approx(1e4 - math.log(3), rel=1e-15)
    assert float(renyi_bound(lw, z, 0.5)) == pytest.approx(1e4 - 2 * math.log(3), rel=1e-15)
    assert float(cubo(lw, z)) == pytest.approx(1e4 - 0.5 * math.log(3), rel=1e-15)
    one = np.array([-np.inf, -np.inf, 3.0])
    assert float(log_marginal(one, z)) == pytest.approx(3.0 - math.log(3))
    assert float(vis_guide_surrogate(one, z)) == pytest.approx(6.0 - math.log(3))
    # near alpha = 1 a zero-weight particle drives L_alpha towards -inf (the ELBO), never NaN
    eps = 5e-4
    assert float(renyi_bound(one, z, 1 - eps)) == pytest.approx(3.0 - math.log(3) / eps)
    assert float(elbo(one, z)) == -np.inf


def test_vis_surrogates_values(lw):
    zeros = np.zeros_like(lw)
    np.testing.assert_allclose(
        vis_guide_surrogate(lw, zeros), logsumexp(2 * lw, 0) - np.log(len(lw)), rtol=1e-13
    )
    np.testing.assert_allclose(vis_model_surrogate(lw, zeros), log_marginal(lw, zeros))
    # CUBO_2 is half of log V
    np.testing.assert_allclose(cubo(lw, zeros), 0.5 * vis_guide_surrogate(lw, zeros), rtol=1e-13)


def test_log_variance_value(lw):
    zeros = np.zeros_like(lw)
    np.testing.assert_allclose(log_variance(zeros, lw), lw.var(0, ddof=1), rtol=1e-13)
    np.testing.assert_allclose(log_variance(lw, zeros), lw.var(0, ddof=1), rtol=1e-13)
    # exact posterior (log q - log p constant): zero loss
    assert float(log_variance(np.full(5, -3.0), np.full(5, -1.0))) == 0.0
