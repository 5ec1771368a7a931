"""Self-normalised weights, ESS, IS log Z and the gradient estimators (torch autograd oracle)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vidiv.estimators import (
    leave_one_out_bounds,
    log_variance,
    renyi_bound,
    renyi_dreg_surrogate,
    score_surrogate,
    vis_guide_surrogate,
    vis_model_surrogate,
    weights,
)


def _softmax(x):
    e = np.exp(x - x.max(0))
    return e / e.sum(0)


def test_weights_normalized_ess_log_z(rng):
    lw = rng.normal(size=50)
    w = weights.normalized(lw)
    np.testing.assert_allclose(w.sum(), 1.0)
    np.testing.assert_allclose(w, np.exp(lw) / np.exp(lw).sum())
    assert float(weights.is_ess(np.zeros(40))) == pytest.approx(40.0)
    assert float(weights.is_ess(np.array([0.0, -np.inf, -np.inf]))) == pytest.approx(1.0)
    np.testing.assert_allclose(weights.is_ess(lw), 1 / np.sum(w**2))
    lz, se = weights.log_z(lw)
    ew = np.exp(lw)
    assert float(lz) == pytest.approx(np.log(ew.mean()))
    assert float(se) == pytest.approx(ew.std(ddof=1) / np.sqrt(50) / ew.mean())
    # huge log weights do not overflow
    lz, se = weights.log_z(lw + 1e5)
    assert float(lz) == pytest.approx(np.log(ew.mean()) + 1e5)
    assert np.isfinite(se)


def test_is_log_z_standard_error_is_calibrated():
    """Over repeated experiments the IS log Z is within 2 s.e. of the truth ~95% of the time."""
    rng = np.random.default_rng(1)
    # q = N(0, 1.2^2), p = N(0.3, 1) unnormalised by Z = e^2: log w = log p - log q + 2
    hits = 0
    for _ in range(400):
        z = rng.normal(0, 1.2, size=2000)
        lw = -0.5 * (z - 0.3) ** 2 + 0.5 * (z / 1.2) ** 2 + np.log(1.2) + 2.0
        lz, se = weights.log_z(lw)
        hits += abs(float(lz) - 2.0) < 2 * float(se)
    assert 0.90 <= hits / 400 <= 0.99


def _t(x):
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("alpha", [-1.0, 0.0, 0.5, 1.0, 2.0])
def test_renyi_gradient_is_vr_weights(rng, alpha):
    lp, lq = rng.normal(size=(2, 16))
    tp, tq = _t(lp), _t(lq)
    renyi_bound(tp, tq, alpha).backward()
    w = _softmax((1 - alpha) * (lp - lq))
    np.testing.assert_allclose(tp.grad.numpy(), w, rtol=1e-12)
    np.testing.assert_allclose(tq.grad.numpy(), -w, rtol=1e-12)


def test_vis_surrogate_gradients(rng):
    lp, lq = rng.normal(size=(2, 16))
    tp, tq = _t(lp), _t(lq)
    g = vis_guide_surrogate(tp, tq)
    g.backward()
    assert float(g) == pytest.approx(np.log(np.mean(np.exp(2 * (lp - lq)))))
    np.testing.assert_allclose(tq.grad.numpy(), -_softmax(2 * (lp - lq)), rtol=1e-12)
    assert tp.grad is None or np.all(tp.grad.numpy() == 0)
    tp, tq = _t(lp), _t(lq)
    vis_model_surrogate(tp, tq).backward()
    np.testing.assert_allclose(tp.grad.numpy(), _softmax(lp - lq), rtol=1e-12)
    assert tq.grad is None or np.all(tq.grad.numpy() == 0)


def test_log_variance_gradient_is_loo_score(rng):
    lp, lq = rng.normal(size=(2, 12))
    tq = _t(lq)
    log_variance(torch.tensor(lp), tq).backward()
    f = lq - lp
    S = len(f)
    loo = np.array([np.delete(f, s).mean() for s in range(S)])
    # 2/(S-1) (f - mean) == 2/S (f - mean of the others)
    np.testing.assert_allclose(tq.grad.numpy(), 2 / (S - 1) * (f - f.mean()), rtol=1e-12)
    np.testing.assert_allclose(tq.grad.numpy(), 2 / S * (f - loo), rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, -1.0])
def test_dreg_surrogate_value_and_weights(rng, alpha):
    lp, lq, lpm = rng.normal(size=(3, 16))
    tp, tq, tm = _t(lp), _t(lq), _t(lpm)
    s = renyi_dreg_surrogate(tp, tq, alpha, log_p_model=tm)
    s.backward()
    assert float(s) == pytest.approx(float(renyi_bound(lp, lq, alpha)), rel=1e-13)
    w = _softmax((1 - alpha) * (lp - lq))
    c = alpha * w + (1 - alpha) * w**2
    np.testing.assert_allclose(tp.grad.numpy(), c, rtol=1e-12)
    np.testing.assert_allclose(tq.grad.numpy(), -c, rtol=1e-12)
    np.testing.assert_allclose(tm.grad.numpy(), w - c, atol=1e-15)
    # model parameters see the standard weights: d/dtheta through log_p + log_p_model
    np.testing.assert_allclose(tp.grad.numpy() + tm.grad.numpy(), w, rtol=1e-12)


def test_leave_one_out_bounds_brute_force(rng):
    lw = rng.normal(size=(6, 2))
    for alpha in (0.0, 0.5, 1.0, 2.0):
        got = leave_one_out_bounds(lw, alpha)
        for k in range(6):
            mod = lw.copy()
            mod[k] = np.delete(lw, k, axis=0).mean(0)
            np.testing.assert_allclose(got[k], renyi_bound(mod, np.zeros_like(mod), alpha))


def test_score_surrogate_zero_value_vimco_gradient(rng):
    lw = rng.normal(size=8)
    lqs = _t(rng.normal(size=8))
    s = score_surrogate(torch.tensor(lw), lqs, 0.0)
    assert float(s) == 0.0
    s.backward()
    expected = renyi_bound(lw, np.zeros(8), 0.0) - leave_one_out_bounds(lw, 0.0)
    np.testing.assert_allclose(lqs.grad.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_score_surrogate_is_unbiased_exact_enumeration(alpha):
    """Discrete guide q(z=1) = sigmoid(phi), K = 2: the expected surrogate gradient equals the
    exact derivative of E[L_alpha,K] computed by enumerating all K-tuples."""
    log_joint = {0: np.log(0.7) - 0.5 * (1.3 + 1) ** 2, 1: np.log(0.3) - 0.5 * (1.3 - 1) ** 2}
    K = 2

    def expected_bound(phi):
        p1 = 1 / (1 + np.exp(-phi))
        total = 0.0
        for zs in itertools.product((0, 1), repeat=K):
            lq = np.array([np.log(p1) if z else np.log1p(-p1) for z in zs])
            lp = np.array([log_joint[z] for z in zs])
            prob = np.exp(lq.sum())
            total += prob * float(renyi_bound(lp, lq, alpha))
        return total

    phi0 = 0.4
    h = 1e-6
    exact = (expected_bound(phi0 + h) - expected_bound(phi0 - h)) / (2 * h)
    grad = 0.0
    for zs in itertools.product((0, 1), repeat=K):
        phi = torch.tensor(phi0, requires_grad=True)
        p1 = torch.sigmoid(phi)
        lq = torch.stack([torch.log(p1) if z else torch.log1p(-p1) for z in zs])
        lp = torch.tensor([log_joint[z] for z in zs])
        sur = renyi_bound(lp, lq, alpha) + score_surrogate(lp - lq, lq, alpha)
        (g,) = torch.autograd.grad(sur, phi)
        grad += float(torch.exp(lq.detach().sum())) * float(g)
    assert grad == pytest.approx(exact, abs=1e-7)
