"""Gradient placement (checked in jax): LV = no gradient through the trajectory, gradient only via
u in u.(sg(u) - u/2) dt + u.dW; KL = pathwise gradient through the whole Euler chain."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vidiv.paths import make_sde, path_log_q, rollout

SDE = make_sde("pis", sigma=0.9, T=1.0)
N = 12


def _noise(seed=3, b=6, d=2):
    return np.random.default_rng(seed).standard_normal((N, b, d))


def _ctrl(theta):
    return lambda x, t: jnp.tanh(theta[0] * x + theta[1] * t) + theta[2]


def _log_q(theta, xi, estimator):
    out = rollout(_ctrl(theta), jnp.zeros(xi.shape[1:]), jnp.asarray(xi), SDE.schedule(N),
                  estimator)
    return path_log_q(out.running, out.ito, SDE.log_p_ref(out.x, N)), out.x


THETA = jnp.array([0.8, -0.5, 0.3])


def test_lv_trajectory_carries_no_gradient():
    xi = _noise()
    jac = jax.jit(jax.jacobian(lambda th: _log_q(th, xi, "lv")[1]))(THETA)
    assert np.all(np.asarray(jac) == 0.0)
    jac_kl = jax.jit(jax.jacobian(lambda th: _log_q(th, xi, "kl")[1]))(THETA)
    assert np.abs(np.asarray(jac_kl)).max() > 1e-2


def test_lv_gradient_equals_explicit_formula():
    """d/dtheta sum_k u_k.(sg(u_k) - u_k/2) dt + u_k.dW_k at fixed states = sum_k du_k.dW_k
    (the (sg(u) - u) dt part vanishes at sg(u) = u)."""
    xi = _noise()
    g = jax.grad(lambda th: _log_q(th, xi, "lv")[0].sum())(THETA)
    # replay the trajectory in numpy and accumulate du/dtheta . dW by hand
    s = SDE.schedule(N)
    x = np.zeros(xi.shape[1:])
    th = np.asarray(THETA)
    expected = np.zeros(3)
    for k in range(N):
        pre = th[0] * x + th[1] * s.t[k]
        u = np.tanh(pre) + th[2]
        dsech = 1 - np.tanh(pre) ** 2
        dw = np.sqrt(s.dt[k]) * xi[k]
        expected += [(dsech * x * dw).sum(), (dsech * s.t[k] * dw).sum(), dw.sum()]
        x = x + s.sigma[k] * u * s.dt[k] + s.sigma[k] * dw
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-10, atol=1e-12)


def test_kl_gradient_is_pathwise():
    """The KL graph's gradient equals a central finite difference of the noise-fixed rollout."""
    xi = _noise()

    def f(th):
        return _log_q(th, xi, "kl")[0].sum()

    g = np.asarray(jax.grad(f)(THETA))
    eps = 1e-6
    fd = np.array([(f(THETA.at[i].add(eps)) - f(THETA.at[i].add(-eps))) / (2 * eps)
                   for i in range(3)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    g_lv = np.asarray(jax.grad(lambda th: _log_q(th, xi, "lv")[0].sum())(THETA))
    assert np.abs(g - g_lv).max() > 1e-3  # the two estimators really differ


def test_lv_and_kl_values_agree():
    xi = _noise()
    a, xa = _log_q(THETA, xi, "lv")
    b, xb = _log_q(THETA, xi, "kl")
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(xa), np.asarray(xb), rtol=0, atol=1e-12)
