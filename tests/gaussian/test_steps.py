"""Closed-form checks of the forward / backward / BWGD steps (numpy, torch, jax give the same)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gaussian.targets import random_rotation
from vidiv.gaussian import (
    backward_eigenvalues,
    backward_step,
    bwgd_step,
    fbgvi_step,
    forward_step,
)


def _scalar_backward(s: float, eta: float) -> float:
    # JKO of −entropy in 1-D: argmin_σ² (σ−√s)²/(2η) − log σ  ⇒  σ² = ½(s + 2η + √(s(s+4η)))
    return 0.5 * (s + 2 * eta + np.sqrt(s * (s + 4 * eta)))


@pytest.mark.parametrize("eta", [1e-3, 0.1, 1.1, 25.0])
def test_backward_step_matches_scalar_closed_form_on_diagonal(eta):
    lam = np.array([0.0, 1e-12, 0.3, 1.0, 7.0, 1e4])
    out = backward_step(np.diag(lam), eta)
    np.testing.assert_allclose(
        out, np.diag([_scalar_backward(s, eta) for s in lam]), rtol=1e-12, atol=1e-14
    )


def test_scalar_closed_form_is_the_prox_of_negative_entropy():
    # the 1-D JKO objective (√v − √s)²/(2η) − ½ log v is minimised at the closed form
    s, eta = 0.7, 0.4
    v = np.linspace(0.05, 5, 200001)
    obj = (np.sqrt(v) - np.sqrt(s)) ** 2 / (2 * eta) - 0.5 * np.log(v)
    assert abs(v[np.argmin(obj)] - _scalar_backward(s, eta)) < 1e-4


@pytest.mark.parametrize("rank", [0, 1, 3, 6])
def test_backward_step_keeps_eigenvalues_above_eta_for_any_psd_input(rng, rank):
    d, eta = 6, 0.05
    A = rng.standard_normal((d, rank)) * 10.0
    cov_half = A @ A.T  # PSD, singular when rank < d
    U = random_rotation(d, rng)
    out = backward_step(cov_half, eta)
    ev = np.linalg.eigvalsh(out)
    assert ev.min() >= eta * (1 - 1e-10)
    np.testing.assert_allclose(out, out.T, atol=0)
    # equals the matrix formula with a PSD square root (eigenvalues of Σ½ mapped one by one)
    lam, V = np.linalg.eigh(cov_half)
    np.testing.assert_allclose(out, (V * backward_eigenvalues(lam, eta)) @ V.T, atol=1e-9)
    # rotation equivariance
    np.testing.assert_allclose(backward_step(U @ cov_half @ U.T, eta), U @ out @ U.T, atol=1e-8)


def test_backward_eigenvalues_clip_roundoff_negatives():
    out = backward_eigenvalues(np.array([-1e-14, -3.0, 0.0]), 0.2)
    np.testing.assert_allclose(out, [0.2, 0.2, 0.2])


def test_forward_step_formula(rng):
    d, eta = 4, 0.3
    m, g = rng.standard_normal(d), rng.standard_normal(d)
    B = rng.standard_normal((d, d))
    S, H = B @ B.T + np.eye(d), rng.standard_normal((d, d))
    m1, S_half = forward_step(m, S, g, H, eta)
    M = np.eye(d) - eta * 0.5 * (H + H.T)
    np.testing.assert_allclose(m1, m - eta * g)
    np.testing.assert_allclose(S_half, M @ S @ M.T, atol=1e-12)


def test_bwgd_step_formula_and_fixed_point(rng):
    d, eta = 3, 0.2
    B = rng.standard_normal((d, d))
    S_star = B @ B.T + np.eye(d)
    H = np.linalg.inv(S_star)
    m, S = bwgd_step(np.ones(d), S_star, np.zeros(d), H, eta)
    np.testing.assert_allclose(S, S_star, atol=1e-12)  # Σ* is a fixed point of BWGD
    np.testing.assert_allclose(m, np.ones(d))
    S0 = np.eye(d)
    M = np.eye(d) - eta * (H - np.linalg.inv(S0))
    np.testing.assert_allclose(bwgd_step(m, S0, np.ones(d), H, eta)[1], M @ S0 @ M.T, atol=1e-12)


def test_fbgvi_fixed_point_is_the_target_when_eta_below_smallest_variance(rng):
    d = 4
    B = rng.standard_normal((d, d))
    S_star = B @ B.T + np.eye(d)
    eta = 0.9 * np.linalg.eigvalsh(S_star).min()
    m, S = fbgvi_step(np.zeros(d), S_star, np.zeros(d), np.linalg.inv(S_star), eta)
    np.testing.assert_allclose(S, S_star, rtol=1e-10, atol=1e-10)


def test_same_numbers_in_torch_and_jax(rng):
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    d, eta = 5, 0.7
    B = rng.standard_normal((d, d))
    S, H = B @ B.T, B + B.T
    m, g = rng.standard_normal(d), rng.standard_normal(d)
    ref = fbgvi_step(m, S, g, H, eta)
    for conv, back in ((torch.as_tensor, lambda t: t.numpy()), (jnp.asarray, np.asarray)):
        out = fbgvi_step(conv(m), conv(S), conv(g), conv(H), eta)
        np.testing.assert_allclose(back(out[0]), ref[0], rtol=1e-12)
        np.testing.assert_allclose(back(out[1]), ref[1], rtol=1e-10, atol=1e-12)
