"""The 50-D many-well of sde_sampler ``mw_50d`` (5 double wells, separation 2, 45 Gaussian dims):
normalising constant, mode labels, shapes and backends, and the benchmark's exact sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidiv.paths import targets

SQ2 = math.sqrt(2.0)


def _signs(k):
    """The 32 sign patterns as +-1 rows; row k has bit i set where coordinate i is positive."""
    bits = (np.arange(k)[:, None] >> np.arange(5)) & 1
    return 2.0 * bits - 1.0


def test_log_z_against_trapezoid_and_closed_form_gaussian():
    xs = np.linspace(-7.0, 7.0, 400_001)
    z1 = np.trapezoid(np.exp(-((xs**2 - 2.0) ** 2)), xs)
    expected = 5 * math.log(z1) + 22.5 * math.log(2 * math.pi)
    assert targets.multi_well_log_z() == pytest.approx(expected, abs=1e-9)
    assert targets.multi_well_log_z() == pytest.approx(42.81724, abs=1e-4)
    # the 5-D many-well of the other benchmark target is the special case d = n_wells
    assert targets.multi_well_log_z(5, 5, 4.0) == pytest.approx(5 * targets.double_well_log_z(4.0))


def test_log_z_by_importance_sampling_in_50d():
    # proposal: 0.5 N(-sqrt2, 0.45^2) + 0.5 N(sqrt2, 0.45^2) per double-well coordinate,
    # N(0, 1.05^2) on the Gaussian ones (chi^2 + 1 ~ 4.4 in all: s.e. ~ 0.003 at 400k draws)
    from scipy.special import logsumexp

    rng = np.random.default_rng(0)
    n, s_w, s_g = 400_000, 0.45, 1.05
    centre = SQ2 * rng.choice([-1.0, 1.0], size=(n, 5))
    wells = centre + s_w * rng.standard_normal((n, 5))
    gauss = s_g * rng.standard_normal((n, 45))
    comp = np.stack([-0.5 * ((wells - m) / s_w) ** 2 for m in (-SQ2, SQ2)])
    log_q_w = logsumexp(comp, axis=0) - math.log(2 * s_w * math.sqrt(2 * math.pi))
    log_q_g = -0.5 * (gauss / s_g) ** 2 - math.log(s_g * math.sqrt(2 * math.pi))
    x = np.concatenate([wells, gauss], 1)
    log_w = targets.many_well_50d_log_prob(x) - log_q_w.sum(-1) - log_q_g.sum(-1)
    m = log_w.max()
    w = np.exp(log_w - m)
    est = m + math.log(w.mean())
    se = math.sqrt(w.var() / n) / w.mean()
    assert se < 0.01
    assert est == pytest.approx(targets.multi_well_log_z(), abs=4 * se)
    # a wrong Gaussian constant (e.g. normalised Gaussian dims, log Z = 5 log z1) is far off
    assert abs(est - 5 * targets.double_well_log_z(2.0)) > 40


def test_values_at_modes_barrier_and_gaussian_dims():
    x = np.zeros((32, 50))
    x[:, :5] = SQ2 * _signs(32)
    np.testing.assert_allclose(targets.many_well_50d_log_prob(x), 0.0, atol=1e-12)
    assert float(targets.many_well_50d_log_prob(np.zeros(50))) == pytest.approx(-20.0)
    y = x[:1].copy()
    y[0, 5:] = 1.0  # 45 Gaussian coordinates at 1 cost 45/2
    y[0, 0] = 0.0  # one coordinate on the barrier costs delta^2 = 4
    assert float(targets.many_well_50d_log_prob(y)[0]) == pytest.approx(-22.5 - 4.0)


def test_mode_labels_follow_the_double_well_signs_only():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 50)) * 3.0
    x[:, :5] = _signs(32) * (0.1 + rng.random((32, 5)))
    np.testing.assert_array_equal(targets.multi_well_mode(x), np.arange(32))
    x[:, 5:] *= -1.0  # flipping the Gaussian coordinates changes nothing
    np.testing.assert_array_equal(targets.multi_well_mode(x), np.arange(32))
    assert targets.multi_well_mode(x).shape == (32,)
    assert targets.multi_well_mode(x.reshape(4, 8, 50)).shape == (4, 8)


def test_shapes_and_backends_agree():
    import jax
    import jax.numpy as jnp
    import torch

    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 50))
    ref = targets.many_well_50d_log_prob(x)
    assert ref.shape == (3, 4)
    np.testing.assert_allclose(ref[1, 2], targets.many_well_50d_log_prob(x[1, 2]), rtol=1e-14)
    j = jax.jit(targets.many_well_50d_log_prob)(jnp.asarray(x, dtype=jnp.float32))
    np.testing.assert_allclose(np.asarray(j), ref, rtol=1e-5)
    t = targets.many_well_50d_log_prob(torch.as_tensor(x))
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-12)
    # the score of the 45 Gaussian dims is -x, of the wells -4 x (x^2 - 2)
    g = np.asarray(jax.grad(lambda v: targets.many_well_50d_log_prob(v))(jnp.asarray(x[0, 0])))
    np.testing.assert_allclose(g[5:], -x[0, 0, 5:], rtol=1e-5)
    w = x[0, 0, :5]
    np.testing.assert_allclose(g[:5], -4 * w * (w**2 - 2), rtol=1e-5)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="d = 50"):
        targets.many_well_50d_log_prob(np.zeros((2, 49)))
    with pytest.raises(ValueError, match="n_wells"):
        targets.multi_well_log_prob(np.zeros((2, 3)), n_wells=5)
    with pytest.raises(ValueError, match="n_wells"):
        targets.multi_well_log_z(4, 5)
    with pytest.raises(ValueError, match="n_wells"):
        targets.multi_well_mode(np.zeros((2, 3)))


def test_benchmark_exact_sampler_matches_moments_and_mode_shares():
    from benchmarks.paths import TARGETS, _exact

    lp, d, log_z, k, _ = TARGETS["many_well_50d"]
    assert d == 50 and k == 32 and log_z == targets.multi_well_log_z()
    x = _exact("many_well_50d", np.random.default_rng(3), 64_000)
    assert x.shape == (64_000, 50)
    xs = np.linspace(-6.0, 6.0, 200_001)
    p = np.exp(-((xs**2 - 2.0) ** 2))
    m2 = np.trapezoid(xs**2 * p, xs) / np.trapezoid(p, xs)  # E x^2 of a double-well coordinate
    np.testing.assert_allclose((x[:, :5] ** 2).mean(0), m2, atol=0.03)
    np.testing.assert_allclose(x[:, 5:].var(0), 1.0, atol=0.03)
    assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) < 0.02
    share = np.bincount(targets.multi_well_mode(x), minlength=32) / x.shape[0]
    np.testing.assert_allclose(share, 1 / 32, atol=0.004)
    # the exact draws score as the target: E log p under p beats a shifted copy
    assert lp(x).mean() > lp(x + 0.5).mean()


def test_report_table_includes_the_50d_rows(capsys):
    from benchmarks.paths import main

    main(["--table"])
    rows = [r for r in capsys.readouterr().out.splitlines() if "many-well-50" in r]
    assert sum("| 32/32 |" in r for r in rows) == 4  # PIS/VP x LV/KL
    assert sum("Welch" in r or "abs_dlogz" in r for r in rows) == 2  # the LV-KL tests
    main(["--table", "--results", "paths_mw50_wide"])  # a variant's own results file
    assert "many-well-50 (mw_50d) | PIS | KL | 3 |" in capsys.readouterr().out
