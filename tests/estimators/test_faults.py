"""Issue 15, bad input and faults in the core: zero weights, NaN / +-inf log weights, the float32
edge and square roots at zero. Exact values and gradients in torch and jax (float64 unless said)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from tests.conformance.test_estimators_conformance import FUNCS
from tests.conformance.test_estimators_conformance import _alpha_fn as _renyi
from tests.estimators.oracles import vimco_signals
from vidiv import estimators as E
from vidiv.errors import NonFiniteError

INF = math.inf


def _torch(fn, *arrays, dtype=torch.float64):
    """Value and gradients of ``fn(*arrays).sum()`` in torch."""
    ts = [torch.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]
    out = fn(*ts)
    grads = torch.autograd.grad(out.sum(), ts, allow_unused=True)
    return out.detach().numpy(), [
        np.zeros(t.shape) if g is None else g.numpy() for t, g in zip(ts, grads, strict=True)
    ]


def _jax(fn, *arrays, dtype=jnp.float64, jit=False):
    f = jax.jit(fn) if jit else fn
    xs = [jnp.asarray(a, dtype=dtype) for a in arrays]
    argnums = tuple(range(len(xs)))
    grads = jax.grad(lambda *a: f(*a).sum(), argnums=argnums)(*xs)
    return np.asarray(f(*xs)), [np.asarray(g) for g in grads]


BOTH = [_torch, _jax]


# ---- item 1: log_z standard error at equal weights ------------------------------------------
@pytest.mark.parametrize("run", BOTH)
@pytest.mark.parametrize("v", [1e4, -1e4, 0.0])
def test_log_z_se_of_equal_weights_is_zero_with_zero_gradient(run, v):
    lw = np.full(5, v)
    se, (g,) = run(lambda x: E.weights.log_z(x).se, lw)
    assert float(se) == 0.0
    np.testing.assert_array_equal(g, np.zeros(5))  # was NaN (d sqrt(x)/dx at x = 0)
    lz, (g,) = run(lambda x: E.weights.log_z(x).log_z, lw)
    assert float(lz) == pytest.approx(v, abs=1e-12)
    np.testing.assert_allclose(g, np.full(5, 0.2), rtol=1e-14)


@pytest.mark.parametrize("run", BOTH)
def test_log_z_se_gradient_matches_closed_form(run):
    # se = sd(w) / (sqrt(S) mean w); w = exp(lw): d se / d lw_s = w_s (w_s - m) / ((S-1) sqrt(S)
    # sd m) - se w_s / (S m), with m the mean and sd the (S-1) standard deviation
    lw = np.array([0.0, 0.5, -1.0, 2.0])
    w = np.exp(lw)
    S, m, sd = 4, w.mean(), w.std(ddof=1)
    se_ref = sd / math.sqrt(S) / m
    grad_ref = w * (w - m) / ((S - 1) * math.sqrt(S) * sd * m) - se_ref * w / (S * m)
    se, (g,) = run(lambda x: E.weights.log_z(x).se, lw)
    assert float(se) == pytest.approx(se_ref, rel=1e-14)
    np.testing.assert_allclose(g, grad_ref, rtol=1e-12)


# ---- item 2: the float32 edge -----------------------------------------------------------------
@pytest.mark.parametrize("run", BOTH)
@pytest.mark.parametrize(
    "name,fn,value,grad",
    [
        # alpha = -1: 3e38 + (log(1 + 0) - log 2) / 2 rounds to 3e38; (1 - alpha) * 3e38 overflows
        ("renyi_-1", lambda p, q: E.renyi_bound(p, q, -1.0), 3e38, [1.0, 0.0]),
        ("cubo", E.cubo, 3e38, [1.0, 0.0]),
        ("cubo_3", lambda p, q: E.cubo(p, q, 3.0), 3e38, [1.0, 0.0]),
        # alpha = 2 is dominated by the smallest weight: -3e38 + log 2
        ("renyi_2", lambda p, q: E.renyi_bound(p, q, 2.0), -3e38, [0.0, 1.0]),
        ("log_marginal", E.log_marginal, 3e38, [1.0, 0.0]),
        ("vis_guide", lambda p, q: E.vis_guide_surrogate(p, q), 6e38, None),
        ("elbo", E.elbo, 0.0, [0.5, 0.5]),
    ],
)
def test_float32_edge_is_finite_with_finite_gradient(run, name, fn, value, grad):
    lp = np.array([3e38, -3e38], dtype=np.float32)
    lq = np.zeros(2, dtype=np.float32)
    dtype = torch.float32 if run is _torch else jnp.float32
    if name == "vis_guide":  # log mean w^2 = 2 * 3e38 - log 2 overflows float32: +inf, honestly
        v, _ = run(fn, lp, lq, dtype=dtype)
        assert v.dtype == np.float32 and np.isposinf(v)
        return
    v, (gp, gq) = run(fn, lp, lq, dtype=dtype)
    assert v.dtype == np.float32
    assert v == np.float32(value)
    np.testing.assert_array_equal(gp, np.float32(grad))
    np.testing.assert_array_equal(gq, -np.float32(grad))


def test_float32_elbo_mean_does_not_overflow():
    lp = np.array([3e38, 3e38], dtype=np.float32)
    v, (g, _) = _torch(E.elbo, lp, np.zeros(2, np.float32), dtype=torch.float32)
    assert v == np.float32(3e38) and np.array_equal(g, [0.5, 0.5])


def test_float32_overflowing_log_weight_raises():
    # log_p - log_q = 3e38 - (-3e38) is +inf in float32: refused, not a silent +inf
    lp = torch.tensor([3e38, 0.0], dtype=torch.float32)
    lq = torch.tensor([-3e38, 0.0], dtype=torch.float32)
    with pytest.raises(NonFiniteError, match=r"contain \+inf.*Bound the model's scale"):
        E.cubo(lp, lq)


# ---- item 3: NaN / +inf / all -inf -----------------------------------------------------------
# every estimator of the conformance table ("score_0.5" there is the bound plus the score term)
CHECKED = {
    **FUNCS,
    "renyi_2": _renyi(2.0),
    "dreg_0.5": lambda p, q: E.renyi_dreg_surrogate(p, q, 0.5),
    "score_only_0.5": lambda p, q: E.score_surrogate(p - q, q, 0.5),
    "normalized": lambda p, q: E.weights.normalized(p - q),
}

BAD = {
    "all -inf": (np.full((3, 2), -INF), "every particle has zero weight"),
    "NaN": (np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 2.0]]), "1 NaN value"),
    "+inf": (np.array([[0.0, 1.0], [INF, 0.0], [1.0, 2.0]]), r"contain \+inf"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("name", sorted(CHECKED))
@pytest.mark.parametrize("lib", ["numpy", "torch", "jax"])
def test_bad_log_weights_raise_non_finite_error(name, kind, lib):
    lp, match = BAD[kind]
    lq = np.zeros_like(lp)
    conv = {"numpy": np.asarray, "torch": torch.tensor, "jax": jnp.asarray}[lib]
    with pytest.raises(NonFiniteError, match=match):
        CHECKED[name](conv(lp), conv(lq))


# the zero-valued score surrogate and the per-particle weights have no batch value to check
@pytest.mark.parametrize("name", sorted(set(CHECKED) - {"score_only_0.5", "normalized"}))
def test_under_jit_bad_elements_are_never_finite(name):
    """jit cannot raise: the bad batch elements are NaN / +-inf; the good one stays exact."""
    good = np.array([0.3, -1.0, 2.0])
    cols = [good, np.full(3, -INF), np.array([0.0, np.nan, 1.0]), np.array([0.0, INF, 1.0])]
    lp = np.stack(cols, axis=1)
    lq = np.zeros_like(lp)
    fn = CHECKED[name]
    out = np.asarray(jax.jit(fn)(jnp.asarray(lp), jnp.asarray(lq)))
    assert not np.isfinite(out[1:]).any()
    np.testing.assert_allclose(out[0], np.asarray(fn(good[:, None], np.zeros((3, 1))))[0],
                               rtol=1e-14)  # fmt: skip


@pytest.mark.parametrize(
    "fn", [E.elbo, E.log_marginal, _renyi(0.5), _renyi(2.0), E.cubo, E.vis_model_surrogate]
)
def test_all_minus_inf_under_jit_is_minus_inf_with_zero_gradient(fn):
    v, (gp, gq) = _jax(fn, np.full(5, -INF), np.zeros(5), jit=True)
    assert v == -INF
    np.testing.assert_array_equal(gp, np.zeros(5))  # the ELBO had 0.2 each
    np.testing.assert_array_equal(gq, np.zeros(5))


@pytest.mark.parametrize("run", BOTH)
def test_some_zero_weights_documented_values(run):
    """A -inf particle: weight 0 for alpha < 1 (exact finite value); -inf with zero gradient for
    the ELBO and alpha > 1."""
    lp = np.array([-INF, 0.0, math.log(2.0)])
    lq = np.zeros(3)
    r2 = 1.0 + math.sqrt(2.0)
    v, (gp, gq) = run(_renyi(0.5), lp, lq)
    assert float(v) == pytest.approx(2 * (math.log(r2) - math.log(3)), rel=1e-15)
    np.testing.assert_allclose(gp, [0.0, 1 / r2, math.sqrt(2) / r2], rtol=1e-15)
    v, (gp, _) = run(E.log_marginal, lp, lq)
    assert float(v) == pytest.approx(math.log(3 / 3), abs=1e-15)  # log((0 + 1 + 2) / 3) = 0
    np.testing.assert_allclose(gp, [0.0, 1 / 3, 2 / 3], rtol=1e-15)
    for fn in (E.elbo, _renyi(1.0), _renyi(2.0), _renyi(1.0 + 1e-4)):
        v, (gp, gq) = run(fn, lp, lq)
        assert float(v) == -INF
        np.testing.assert_array_equal(gp, np.zeros(3))
    v, (g,) = run(lambda x: E.weights.is_ess(x), lp)
    assert float(v) == pytest.approx(9 / 5, rel=1e-14)  # 1 / ((1/3)^2 + (2/3)^2)
    assert np.isfinite(g).all() and g[0] == 0.0


def test_log_variance_refuses_a_zero_weight():
    with pytest.raises(NonFiniteError, match="1 of the 3 log weights.*are -inf.*Drop those"):
        E.log_variance(np.array([-INF, 0.0, 1.0]), np.zeros(3))


def test_check_log_weights_along_another_axis():
    lw = np.array([[0.0, 1.0], [-INF, -INF]])  # particles on axis 1: the second row is all -inf
    E.check_log_weights(lw)  # along axis 0 each column has a finite entry
    with pytest.raises(NonFiniteError, match="every particle"):
        E.weights.is_ess(lw, axis=1)


# ---- item 4: DReG with zero-weight particles --------------------------------------------------
@pytest.mark.parametrize("run", BOTH)
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_dreg_zero_weight_particles_drop_out_exactly(run, alpha, rng):
    lp = rng.normal(size=9)
    lq = rng.normal(size=9)
    lpm = rng.normal(size=9)
    dead = np.array([1, 4, 7])
    lp[dead] = -INF
    lpm[dead] = -INF
    keep = np.setdiff1d(np.arange(9), dead)

    def fn(p, q, m):
        return E.renyi_dreg_surrogate(p, q, alpha, log_p_model=m)

    v, (gp, gq, gm) = run(fn, lp, lq, lpm)
    _, (kp, kq, km) = run(fn, lp[keep], lq[keep], lpm[keep])
    lw = (lp - lq)[keep]
    eps = 1 - alpha
    assert float(v) == pytest.approx((logsumexp(eps * lw) - math.log(9)) / eps, rel=1e-14)
    w = np.exp(eps * lw - logsumexp(eps * lw))
    coef = alpha * w + (1 - alpha) * w**2
    for full, kept, ref in ((gp, kp, coef), (gq, kq, -coef), (gm, km, w - coef)):
        np.testing.assert_array_equal(full[dead], 0.0)
        np.testing.assert_allclose(full[keep], kept, rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose(full[keep], ref, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("run", BOTH)
def test_dreg_zero_weight_at_alpha_above_one_is_minus_inf_without_gradient(run):
    lp = np.array([-INF, 0.0, 1.0])
    v, (gp, gq) = run(lambda p, q: E.renyi_dreg_surrogate(p, q, 2.0), lp, np.zeros(3))
    assert float(v) == -INF
    np.testing.assert_array_equal(gp, np.zeros(3))


# ---- item 5: VIMCO with zero-weight particles -------------------------------------------------
@pytest.mark.parametrize("run", BOTH)
def test_vimco_signal_with_a_zero_weight_particle(run):
    lw = np.array([-INF, 0.0, math.log(2.0)])
    L = 2 * (math.log(1 + math.sqrt(2)) - math.log(3))
    expected = np.array([
        L - 2 * (math.log(2**0.25 + 1 + math.sqrt(2)) - math.log(3)),  # its own: mean log 2 / 2
        L - (math.log(2) - 2 * math.log(3)),  # others: the -inf one makes the mean -inf
        L + 2 * math.log(3),
    ])  # fmt: skip
    np.testing.assert_allclose(expected, vimco_signals(lw, 0.5), rtol=1e-14)
    conv = jnp.asarray if run is _jax else torch.tensor
    v, (g,) = run(lambda q: E.score_surrogate(conv(lw), q, 0.5), np.array([-1.0, -0.5, -2.0]))
    assert float(v) == 0.0
    np.testing.assert_allclose(g, expected, rtol=1e-13)
    assert expected[0] < 0  # the zero-weight value is made less likely


@pytest.mark.parametrize("run", BOTH)
def test_vimco_only_positive_weight_gets_plain_reinforce(run):
    lw = np.array([-INF, 1.0])
    conv = jnp.asarray if run is _jax else torch.tensor
    _, (g,) = run(lambda q: E.score_surrogate(conv(lw), q, 0.5), np.zeros(2))
    # k = 0: baseline with log w_0 := 1 is 1, L = 1 - 2 log 2; k = 1: baseline -inf -> 0
    np.testing.assert_allclose(g, [-2 * math.log(2), 1 - 2 * math.log(2)], rtol=1e-14)
    np.testing.assert_allclose(g, vimco_signals(lw, 0.5), rtol=1e-14)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_vimco_zero_weight_at_alpha_one_or_more_carries_no_gradient(alpha):
    lw = torch.tensor([-INF, 0.0, 1.0])
    lq = torch.zeros(3, requires_grad=True)
    (g,) = torch.autograd.grad(E.score_surrogate(lw, lq, alpha), lq)
    np.testing.assert_array_equal(g.numpy(), np.zeros(3))


def test_leave_one_out_has_no_nan_with_a_zero_weight():
    lw = np.array([[-INF, 0.0], [0.0, -INF], [1.0, 2.0]])
    loo = E.leave_one_out_bounds(lw, 0.5)
    assert not np.isnan(loo).any()
    # column 0, particle 0: log w_0 := (0 + 1) / 2
    ref = (logsumexp(0.5 * np.array([0.5, 0.0, 1.0])) - math.log(3)) / 0.5
    assert float(loo[0, 0]) == pytest.approx(ref, rel=1e-15)
    # particle 1: the mean of the others (-inf, 1) is -inf; the bound of (-inf, -inf, 1)
    assert float(loo[1, 0]) == pytest.approx(1.0 - 2 * math.log(3), rel=1e-15)
