"""Path log-RND: LV form = KL form at sg(u) = u, Girsanov closed form, reference marginals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidiv.paths import (
    VP,
    make_sde,
    path_log_q,
    rollout,
    running_cost,
)


def _linear_control(theta):
    return lambda x, t: theta[0] * x + theta[1] * math.sin(t)


def test_running_cost_lv_equals_kl_at_detached_equal_control(rng):
    u = rng.standard_normal((7, 3))
    np.testing.assert_allclose(running_cost(u, u, 0.3, "lv"), running_cost(u, u, 0.3, "kl"))
    np.testing.assert_allclose(running_cost(u, u, 0.3, "kl"), 0.15 * (u**2).sum(-1))
    # off policy (v != u) the LV form is u.(v - u/2) dt, not 1/2|u|^2 dt
    v = u + 1.0
    np.testing.assert_allclose(running_cost(u, v, 0.5, "lv"), 0.5 * (u * (v - 0.5 * u)).sum(-1))


@pytest.mark.parametrize("sde", ["pis", "vp"])
def test_path_log_q_same_value_in_both_forms(rng, sde):
    """Same noise, same state-dependent control: LV and KL rollouts agree in value, to 1e-12,
    and the value equals the sum of exact Gaussian transition log-ratios."""
    s = make_sde(sde).schedule(20)
    x0 = rng.standard_normal((5, 2)) * make_sde(sde).initial_std
    xi = rng.standard_normal((20, 5, 2))
    ctrl = _linear_control((0.7, 0.4))
    a = rollout(ctrl, x0, xi, s, "lv")
    b = rollout(ctrl, x0, xi, s, "kl")
    np.testing.assert_allclose(a.x, b.x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.running + a.ito, b.running + b.ito, rtol=0, atol=1e-12)
    # direct log ratio of the Gaussian transition densities of the two chains
    x, total = x0, np.zeros(5)
    for k in range(20):
        dt, sig, dr = s.dt[k], s.sigma[k], s.drift[k]
        u = ctrl(x, s.t[k])
        xn = x + (dr * x + sig * u) * dt + sig * math.sqrt(dt) * xi[k]
        lq = -((xn - x - (dr * x + sig * u) * dt) ** 2).sum(-1) / (2 * sig**2 * dt)
        lp = -((xn - x - dr * x * dt) ** 2).sum(-1) / (2 * sig**2 * dt)
        total += lq - lp
        x = xn
    np.testing.assert_allclose(a.running + a.ito, total, rtol=1e-10, atol=1e-10)


def test_constant_control_girsanov_closed_form(rng):
    """PIS with u = c: X_N ~ N(sigma c T, sigma^2 T) and the path log q equals that Gaussian's log
    density at X_N exactly (the RND depends on the path only through W_T)."""
    sde = make_sde("pis", sigma=0.8, T=2.0)
    c = np.array([0.5, -1.5])
    s = sde.schedule(40)
    xi = rng.standard_normal((40, 1000, 2))
    out = rollout(lambda x, t: np.broadcast_to(c, x.shape), np.zeros((1000, 2)), xi, s)
    log_q = path_log_q(out.running, out.ito, sde.log_p_ref(out.x, 40))
    m, v = sde.sigma_value * c * sde.T, sde.sigma_value**2 * sde.T
    exact = (-0.5 * ((out.x - m) ** 2).sum(-1) / v - math.log(2 * math.pi * v))
    np.testing.assert_allclose(log_q, exact, rtol=0, atol=1e-10)


def test_zero_control_reproduces_reference_marginal(rng):
    """u = 0: PIS end point ~ N(0, sigma^2 T) (exact for the Euler chain); VP end variance equals
    the discrete-chain recursion (it differs from scale^2 by O(dt))."""
    n = 200_000
    pis = make_sde("pis")
    out = rollout(lambda x, t: 0 * x, np.zeros((n, 1)), rng.standard_normal((25, n, 1)),
                  pis.schedule(25))
    assert pis.terminal_variance(25) == pytest.approx(0.2 * 5.0, abs=1e-12)
    se = math.sqrt(2.0 / n)  # s.e. of a sample variance of a unit normal
    assert abs(out.x.var() - 1.0) < 5 * se
    assert abs(out.x.mean()) < 5 / math.sqrt(n)
    assert np.allclose(out.running, 0) and np.allclose(out.ito, 0)

    vp = VP(scale=2.0)
    v_n = vp.terminal_variance(10)
    assert v_n != pytest.approx(4.0, abs=1e-3)  # coarse grid: not the continuous-time s^2
    x0 = 2.0 * rng.standard_normal((n, 1))
    out = rollout(lambda x, t: 0 * x, x0, rng.standard_normal((10, n, 1)), vp.schedule(10))
    assert abs(out.x.var() / v_n - 1.0) < 5 * se
    # ... and the recursion converges to scale^2 as dt -> 0
    assert vp.terminal_variance(4000) == pytest.approx(4.0, rel=2e-3)


def test_log_p_ref_is_normalised():
    sde = make_sde("vp", scale=1.5)
    grid = np.linspace(-12, 12, 20001)[:, None]
    dens = np.exp(sde.log_p_ref(grid, 30))
    assert np.trapezoid(dens, grid[:, 0]) == pytest.approx(1.0, abs=1e-9)


def test_importance_weights_are_unbiased_for_z(rng):
    """E_q[rho(X_N)/q(path)] = Z for a non-trivial state-dependent control (Z = 1 here)."""
    sde = make_sde("pis", sigma=1.0, T=1.0)
    n = 400_000
    s = sde.schedule(10)
    out = rollout(_linear_control((-0.8, 0.6)), np.zeros((n, 1)),
                  rng.standard_normal((10, n, 1)), s)
    log_q = path_log_q(out.running, out.ito, sde.log_p_ref(out.x, 10))
    log_rho = -0.5 * ((out.x[:, 0] - 1.0) / 0.7) ** 2 - math.log(0.7 * math.sqrt(2 * math.pi))
    w = np.exp(log_rho - log_q)
    assert abs(w.mean() - 1.0) < 5 * w.std() / math.sqrt(n)
