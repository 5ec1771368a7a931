"""Trajectory filter, benchmark targets (normalisation) and bad input of the path core."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidiv.errors import InvalidArgumentError, NonFiniteError, VidivError
from vidiv.paths import (
    check_estimator,
    check_num_steps,
    estimator_scope,
    kept_mask,
    make_sde,
    path_log_variance,
    resolve_estimator,
    targets,
)


def test_path_log_variance_drops_nonfinite_and_huge():
    log_q = np.array([0.3, np.nan, 1.2, np.inf, 2e8, -0.4, -np.inf])
    log_p = np.zeros(7)
    out = path_log_variance(log_p, log_q)
    kept = np.array([0.3, 1.2, -0.4])
    assert float(out.loss) == pytest.approx(kept.var(ddof=1), abs=1e-14)
    assert int(out.num_dropped) == 4 and int(out.num_kept) == 3
    np.testing.assert_array_equal(kept_mask(log_p, log_q),
                                  [True, False, True, False, False, True, False])


def test_path_log_variance_all_nonfinite_raises():
    with pytest.raises(NonFiniteError, match="all 3 trajectories are non-finite"):
        path_log_variance(np.zeros(3), np.array([np.nan, np.inf, 1e9]))


def test_path_log_variance_matches_plain_variance_and_jits():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    lp, lq = rng.standard_normal(16), rng.standard_normal(16)
    ref = np.var(lq - lp, ddof=1)
    assert float(path_log_variance(lp, lq).loss) == pytest.approx(ref, rel=1e-12)
    jitted = jax.jit(lambda a, b: path_log_variance(a, b).loss)
    lp = jnp.asarray(lp)
    assert float(jitted(lp, jnp.asarray(lq))) == pytest.approx(ref, rel=1e-12)
    # gradient wrt log_q is 2 (f - mean)/(S-1) on kept entries and exactly 0 on dropped ones
    lq2 = lq.copy()
    lq2[3] = np.nan
    g = jax.grad(lambda b: path_log_variance(lp, b).loss)(jnp.asarray(lq2))
    keep = np.arange(16) != 3
    f = (lq2 - np.asarray(lp))[keep]
    np.testing.assert_allclose(np.asarray(g)[keep], 2 * (f - f.mean()) / (f.size - 1), atol=1e-12)
    assert float(g[3]) == 0.0


def _integrate_2d(logp, lim, n=801):
    g = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    vals = np.exp(logp(np.stack([xx, yy], -1)))
    return np.trapezoid(np.trapezoid(vals, g, axis=1), g)


def test_targets_are_normalised():
    assert _integrate_2d(targets.gmm_grid_log_prob, 9.0) == pytest.approx(1.0, abs=1e-8)
    g = np.linspace(-8, 8, 20001)[:, None]
    assert np.trapezoid(np.exp(targets.bimodal_1d_log_prob(g)), g[:, 0]) == pytest.approx(1.0)
    # the funnel in 2-D: x0 ~ N(0, 3^2), x1 | x0 ~ N(0, exp(x0/2)^2)
    x0 = np.linspace(-20, 20, 4001)
    inner = np.array([
        np.trapezoid(np.exp(targets.funnel_log_prob(
            np.stack([np.full(4001, a), np.linspace(-60, 60, 4001) * math.exp(a / 2) / 10], -1)
        )), np.linspace(-60, 60, 4001) * math.exp(a / 2) / 10) for a in x0[::40]
    ])
    assert np.trapezoid(inner, x0[::40]) == pytest.approx(1.0, abs=1e-4)
    # many-well: product structure, log Z = d * log z1
    lz1 = targets.double_well_log_z(4.0)
    xs = np.linspace(-6, 6, 200001)
    z1 = np.trapezoid(np.exp(-((xs**2 - 4) ** 2)), xs)
    assert lz1 == pytest.approx(math.log(z1), abs=1e-10)
    pts = np.array([[2.0, -2.0, 2.0, 2.0, -2.0]])
    assert float(targets.many_well_log_prob(pts)[0]) == 0.0
    assert int(targets.many_well_mode(pts)[0]) == 1 + 4 + 8


def test_gmm_mode_helper():
    idx, near = targets.gmm_grid_mode(np.array([[5.1, -4.9], [2.5, 2.5], [0.0, 0.0]]))
    assert idx.tolist()[0] == 6 and idx.tolist()[2] == 4
    assert near.tolist() == [True, False, True]


def test_bad_input_messages():
    with pytest.raises(InvalidArgumentError, match="unknown sde 'ou'"):
        make_sde("ou")
    with pytest.raises(InvalidArgumentError, match=r"num_steps must be an integer >= 1, got 0"):
        check_num_steps(0)
    with pytest.raises(InvalidArgumentError, match="num_steps must be an integer"):
        check_num_steps(2.5)
    with pytest.raises(InvalidArgumentError, match="sigma must be a finite positive number"):
        make_sde("pis", sigma=-1.0)
    with pytest.raises(InvalidArgumentError, match="bad sde_kwargs"):
        make_sde("vp", sigma=1.0)
    with pytest.raises(VidivError, match="estimator must be 'auto', 'lv'"):
        check_estimator("rkl")
    with pytest.raises(InvalidArgumentError, match="needs 'lv' or 'kl'"):
        with estimator_scope("auto"):
            pass


def test_estimator_scope_nests_and_resets():
    assert resolve_estimator("auto") == "kl"
    assert resolve_estimator("auto", values_detached=True) == "lv"
    assert resolve_estimator("kl", values_detached=True) == "kl"
    with estimator_scope("kl"):
        assert resolve_estimator("auto", values_detached=True) == "kl"
    with estimator_scope("lv"):
        assert resolve_estimator("auto") == "lv"
        assert resolve_estimator("kl") == "kl"
        with estimator_scope("kl"):
            assert resolve_estimator("auto") == "kl"
        assert resolve_estimator("auto") == "lv"
    assert resolve_estimator("auto") == "kl"


def test_max_rnd_validation_and_one_kept_particle():
    from vidiv.paths import check_max_rnd

    assert check_max_rnd(1e8) == 1e8 and math.isinf(check_max_rnd(math.inf))
    for bad in (0.0, -1.0, float("nan"), "x"):
        with pytest.raises(InvalidArgumentError, match="max_rnd must be a positive number"):
            check_max_rnd(bad)
    with pytest.raises(NonFiniteError, match=r"only 1 of 3 trajectories are finite, but the "
                       r"variance needs 2;.*1 NaN, 1 \+inf"):
        path_log_variance(np.zeros(3), np.array([0.5, np.nan, np.inf]))


def test_one_kept_particle_under_jit_gives_nan_loss_and_zero_gradient():
    import jax
    import jax.numpy as jnp

    fn = jax.jit(jax.value_and_grad(lambda b: path_log_variance(jnp.zeros(3), b).loss))
    value, grad = fn(jnp.array([0.5, jnp.nan, jnp.inf]))
    assert np.isnan(float(value)) and np.all(np.asarray(grad) == 0.0)


def test_diverged_trajectory_has_exactly_zero_gradient():
    """A trajectory that starts (or becomes) non-finite is dropped, and the drift network's
    gradient is that of the loss over the other trajectories: the network sees a sanitised state,
    so no 0 * inf = NaN reaches the weights."""
    import jax
    import jax.numpy as jnp

    from vidiv.paths import control_value, mlp_shapes, rollout, time_features

    d, B, N = 2, 6, 8
    sde = make_sde("pis")
    sched = sde.schedule(N)
    rng = np.random.default_rng(4)
    params = [jnp.asarray(0.3 * rng.standard_normal(s)) for s in mlp_shapes(d + 9, (8,), d)]
    xi = jnp.asarray(rng.standard_normal((N, B, d)))
    x0 = jnp.zeros((B, d)).at[2, 0].set(jnp.nan).at[4, 1].set(jnp.inf)

    def loss(params, x0, xi):
        def control(x, t):
            return control_value(params, None, x, time_features(jnp.asarray(t), sde.T))

        out = rollout(control, x0, xi, sched, "lv")
        log_q = out.running + out.ito + sde.log_p_ref(out.x, N)
        log_p = -0.5 * jnp.sum(out.x**2, axis=-1)
        return path_log_variance(log_p, log_q)

    g, aux = jax.grad(lambda p: (loss(p, x0, xi).loss, loss(p, x0, xi)), has_aux=True)(params)
    assert int(aux.num_dropped) == 2
    keep = np.array([0, 1, 3, 5])
    g_kept = jax.grad(lambda p: loss(p, x0[keep], xi[:, keep]).loss)(params)
    for a, b in zip(g, g_kept, strict=True):
        assert np.isfinite(np.asarray(a)).all()
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
