"""Stein Hessian estimator (exact in expectation), Gaussian KL / entropy closed forms, schedules."""

from __future__ import annotations

import numpy as np
import pytest

from vidiv.errors import InvalidArgumentError
from vidiv.gaussian import (
    Decay,
    check_step_size,
    default_step_size,
    free_energy,
    gaussian_entropy,
    gaussian_kl,
    mean_hessian,
    resolve_schedule,
    stein_hessian,
)


def _spd(rng, d, shift=0.5):
    B = rng.standard_normal((d, d))
    return B @ B.T / d + shift * np.eye(d)


def test_stein_hessian_is_exact_in_expectation_algebraically(rng):
    # For V = ½(x−a)ᵀP(x−a) + cᵀx: ∇V(x) = P(x−a) + c. Averaging Σ⁻¹(x−m)∇V(x)ᵀ over a symmetric
    # point set with exact second moment Σ (x = m ± √d L e_i) equals E_q[...] = P exactly.
    d = 4
    S, P = _spd(rng, d), _spd(rng, d)
    m, a, c = rng.standard_normal(d), rng.standard_normal(d), rng.standard_normal(d)
    L = np.linalg.cholesky(S)
    pts = np.concatenate([m + np.sqrt(d) * L.T, m - np.sqrt(d) * L.T])  # rows: m ± √d L e_i
    grads = (pts - a) @ P + c
    np.testing.assert_allclose(np.cov(pts.T, bias=True), S, atol=1e-12)
    np.testing.assert_allclose(stein_hessian(pts, grads, m, S, center=False), P, atol=1e-12)
    # centred version: Σ_s (x_s − m)(g_s − ḡ)ᵀ/(S − 1) on this point set is S/(S − 1) · Σ P
    n = len(pts)
    np.testing.assert_allclose(stein_hessian(pts, grads, m, S), P * n / (n - 1), atol=1e-12)
    # the uncorrected u ∇Vᵀ (u = L⁻¹(x − m)) estimates Lᵀ P, not P: the factor matters
    u = np.linalg.solve(L, (pts - m).T)
    wrong = 0.5 * (u @ grads / len(pts) + (u @ grads / len(pts)).T)
    assert np.abs(wrong - P).max() > 0.05


def test_stein_hessian_monte_carlo_matches_hessian_for_gaussian_target(rng):
    d, n = 3, 200_000
    S, P = _spd(rng, d), _spd(rng, d, shift=1.0)
    m, a = rng.standard_normal(d), rng.standard_normal(d)
    x = m + rng.standard_normal((n, d)) @ np.linalg.cholesky(S).T
    est = stein_hessian(x, (x - a) @ P, m, S)
    assert np.abs(est - P).max() < 0.05 * np.abs(P).max()
    np.testing.assert_allclose(mean_hessian(np.broadcast_to(P, (5, d, d))), P)


def test_gaussian_kl_closed_form(rng):
    d = 3
    S0, S1 = _spd(rng, d), _spd(rng, d)
    m0, m1 = rng.standard_normal(d), rng.standard_normal(d)
    # Monte Carlo of E_q[log q − log p]
    from scipy.stats import multivariate_normal as mvn

    x = mvn(m0, S0).rvs(400_000, random_state=1)
    mc = np.mean(mvn(m0, S0).logpdf(x) - mvn(m1, S1).logpdf(x))
    assert abs(gaussian_kl(m0, S0, m1, S1) - mc) < 0.01
    assert abs(gaussian_kl(m0, S0, m0, S0)) < 1e-12
    assert gaussian_entropy(S0) == pytest.approx(mvn(m0, S0).entropy(), rel=1e-12)


def test_free_energy_is_kl_minus_log_z(rng):
    d, n = 2, 400_000
    S_star, S = _spd(rng, d), _spd(rng, d)
    m_star, m = rng.standard_normal(d), rng.standard_normal(d)
    # V = −log N(x; m*, Σ*) exactly (so log Z = 0): F(q) = KL(q‖π)
    from scipy.stats import multivariate_normal as mvn

    x = mvn(m, S).rvs(n, random_state=2)
    F = free_energy(-mvn(m_star, S_star).logpdf(x), S)
    assert abs(F - gaussian_kl(m, S, m_star, S_star)) < 0.02


def test_schedules_and_default_step_size():
    f = resolve_schedule(Decay(tau=10.0, power=0.5))
    assert f(30) == pytest.approx(0.5)
    assert resolve_schedule(None)(1000) == 1.0
    assert default_step_size(np.diag([0.5, 2.0, 4.0]), fraction=1.0) == pytest.approx(0.25)
    assert default_step_size(-np.eye(2), fallback=0.3) == 0.3  # no positive curvature
    assert check_step_size(None) is None
    with pytest.raises(InvalidArgumentError, match="finite positive"):
        check_step_size(0.0)
    with pytest.raises(InvalidArgumentError, match="finite positive"):
        check_step_size(float("nan"))
    with pytest.raises(InvalidArgumentError, match="schedule must be"):
        resolve_schedule("cosine")
    with pytest.raises(InvalidArgumentError, match="tau"):
        Decay(tau=0.0)


def test_centred_stein_hessian_is_unbiased_and_less_noisy(rng):
    # E over many independent batches of S = 3: both versions average to P; centring cuts the
    # variance when E ∇V is far from 0 (here a large constant c in ∇V)
    d, S, reps = 2, 3, 40_000
    Sig, P = _spd(rng, d), _spd(rng, d, shift=1.0)
    m, c = np.zeros(d), np.array([30.0, -20.0])
    L = np.linalg.cholesky(Sig)
    x = m + rng.standard_normal((reps, S, d)) @ L.T
    g = x @ P + c
    cen = np.stack([stein_hessian(x[r], g[r], m, Sig) for r in range(reps)])
    raw = np.stack([stein_hessian(x[r], g[r], m, Sig, center=False) for r in range(reps)])
    for est in (cen, raw):
        se = est.std(0) / np.sqrt(reps)
        assert np.all(np.abs(est.mean(0) - P) < 5 * se + 1e-12)
    assert cen.std(0).max() < 0.2 * raw.std(0).max()
