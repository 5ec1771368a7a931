"""vidiv.numpyro.to_datatree / model_scores on closed-form models: exact log weights, k-hat
catches a bad mean-field fit, the evidence sandwich, plate dims, ArviZ interop."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr
from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
from scipy.stats import multivariate_normal

import vidiv.numpyro as vn
from tests.closed_form import conjugate_normal, correlated_gaussian
from tests.numpyro.models import linear_gaussian_model
from vidiv.diagnostics import diagnose, ksd
from vidiv.errors import ModelStructureError, VidivError

KEY = jax.random.PRNGKey(0)


def full_rank(lg, cov):
    model = linear_gaussian_model(lg)
    params = {"auto_loc": jnp.asarray(lg.post_mean),
              "auto_scale_tril": jnp.asarray(np.linalg.cholesky(cov))}
    return model, AutoMultivariateNormal(model), params


def test_log_weights_are_exact():
    lg = correlated_gaussian(0.9)
    cov = 0.95**2 * lg.post_cov
    model, guide, params = full_rank(lg, cov)
    dt = vn.to_datatree(model, guide, params, rng_key=KEY, num_samples=200)
    z = dt["posterior"]["z"].values[0]
    np.testing.assert_allclose(dt["sample_stats"]["log_p"].values[0], lg.log_joint(z), rtol=1e-10)
    np.testing.assert_allclose(
        dt["sample_stats"]["log_q"].values[0],
        multivariate_normal(lg.post_mean, cov).logpdf(z),
        rtol=1e-10,
    )
    resid = lg.y[None, :] - z @ lg.X.T
    np.testing.assert_allclose(
        dt["log_likelihood"]["y"].values[0],
        -0.5 * (resid / lg.sigma) ** 2 - math.log(lg.sigma) - 0.5 * math.log(2 * math.pi),
        rtol=1e-10,
    )
    assert dt["log_likelihood"]["y"].dims == ("chain", "draw", "data")
    assert dt.attrs["backend"] == "numpyro" and dt.attrs["guide"] == "AutoMultivariateNormal"
    # same key, same draws
    again = vn.to_datatree(model, guide, params, rng_key=KEY, num_samples=200)
    np.testing.assert_array_equal(again["posterior"]["z"].values, dt["posterior"]["z"].values)


def test_full_rank_fit_of_correlated_posterior_has_small_khat():
    lg = correlated_gaussian(0.9)
    model, guide, params = full_rank(lg, 0.95**2 * lg.post_cov)
    report = diagnose(vn.to_datatree(model, guide, params, rng_key=KEY, num_samples=1000))
    assert report.khat < 0.5
    assert report.verdict == "good"


def test_mean_field_on_rho_099_is_caught():
    lg = correlated_gaussian(0.99)
    model = linear_gaussian_model(lg)
    params = {  # KL(q||p) optimum of the mean-field family: exact mean, precision diag(Lambda)
        "z_auto_loc": jnp.asarray(lg.post_mean),
        "z_auto_scale": jnp.asarray(1.0 / np.sqrt(np.diag(np.linalg.inv(lg.post_cov)))),
    }
    dt = vn.to_datatree(model, AutoNormal(model), params, rng_key=KEY, num_samples=20000)
    report = diagnose(dt, log_z_reference=lg.log_z)
    assert report.khat > 0.7
    assert report.verdict == "do not trust"
    assert report.elbo < lg.log_z


def test_conjugate_sandwich_and_is_log_z():
    lg = conjugate_normal()
    model, guide, params = full_rank(lg, 1.2**2 * lg.post_cov)
    dt = vn.to_datatree(model, guide, params, rng_key=KEY, num_samples=2000)
    report = diagnose(dt, log_z_reference=lg.log_z)
    assert report.elbo < lg.log_z < report.cubo
    assert report.sandwich_holds
    assert abs(report.log_z - lg.log_z) < 3 * report.log_z_se


J = 4
Y = jnp.array([28.0, 8.0, -3.0, 7.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0])


def schools():
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(5.0))
    with numpyro.plate("school", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.deterministic("theta_sq", theta**2)
        numpyro.sample("y", dist.Normal(theta, SIGMA), obs=Y)


def test_plate_dims_round_trip_and_arviz(tmp_path):
    import arviz_stats as azs

    guide = AutoNormal(schools)
    params = {  # AutoNormal parameters (locs in unconstrained space: tau's is log tau)
        "mu_auto_loc": jnp.array(4.0), "mu_auto_scale": jnp.array(3.0),
        "tau_auto_loc": jnp.array(1.0), "tau_auto_scale": jnp.array(0.5),
        "theta_auto_loc": jnp.full(J, 4.0), "theta_auto_scale": jnp.full(J, 4.0),
    }
    dt = vn.to_datatree(schools, guide, params, rng_key=KEY, num_samples=300,
                        losses=np.arange(5.0), objective="Trace_ELBO")
    for var in ("theta", "theta_sq"):
        assert dt["posterior"][var].dims == ("chain", "draw", "school")
    np.testing.assert_allclose(dt["posterior"]["theta_sq"], dt["posterior"]["theta"] ** 2)
    assert dt["posterior"]["mu"].dims == ("chain", "draw")
    assert (dt["posterior"]["tau"].values > 0).all()
    assert dt["log_likelihood"]["y"].dims == ("chain", "draw", "school")
    np.testing.assert_array_equal(dt["observed_data"]["y"].values, np.asarray(Y))
    assert dt.attrs["numpyro_version"] == numpyro.__version__
    pytest.importorskip("h5py")
    dt.to_netcdf(tmp_path / "schools.nc")
    xr.testing.assert_identical(dt, xr.open_datatree(tmp_path / "schools.nc").load())
    assert set(azs.summary(dt, kind="stats").index) >= {"mu", "tau", "theta[0]", "theta[3]"}
    loo = azs.loo_approximate_posterior(
        dt, log_p=dt["sample_stats"]["log_p"], log_q=dt["sample_stats"]["log_q"], pointwise=True
    )
    assert loo.pareto_k.shape == (J,) and np.isfinite(loo.elpd)


def test_custom_guide_function():
    def guide():
        loc = numpyro.param("loc", jnp.zeros(2))
        scale = numpyro.param("scale", jnp.ones(2), constraint=dist.constraints.positive)
        numpyro.sample("z", dist.Normal(loc, scale).to_event(1))

    lg = conjugate_normal()
    params = {"loc": jnp.zeros(2), "scale": jnp.ones(2)}
    dt = vn.to_datatree(linear_gaussian_model(lg), guide, params, rng_key=KEY, num_samples=100)
    z = dt["posterior"]["z"].values[0]
    np.testing.assert_allclose(
        dt["sample_stats"]["log_q"].values[0], -0.5 * (z**2).sum(1) - math.log(2 * math.pi)
    )


def test_subsampled_plate_and_bad_params_are_rejected():
    def model():
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", 100, subsample_size=10):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=jnp.zeros(10))

    params = {"mu_auto_loc": jnp.array(0.0), "mu_auto_scale": jnp.array(1.0)}
    with pytest.raises(ModelStructureError, match="subsampled to 10 of 100"):
        vn.to_datatree(model, AutoNormal(model), params, rng_key=KEY, num_samples=20)
    with pytest.raises(VidivError, match="params must be the dict"):
        vn.to_datatree(model, AutoNormal(model), None, rng_key=KEY)


def test_model_scores_are_the_exact_posterior_score_and_feed_ksd():
    lg = correlated_gaussian(0.9)
    model = linear_gaussian_model(lg)
    z = np.random.default_rng(0).multivariate_normal(lg.post_mean, lg.post_cov, size=300)
    points, scores = vn.model_scores(model, {"z": z})
    np.testing.assert_allclose(points["z"], z)
    expected = -(z - lg.post_mean) @ np.linalg.inv(lg.post_cov)
    np.testing.assert_allclose(scores["z"], expected, rtol=1e-8, atol=1e-8)
    good = ksd(points, scores)
    assert ksd(*vn.model_scores(model, {"z": z + 1.0})) > 2 * good


def test_model_scores_on_a_positive_site_include_the_jacobian():
    def model():
        numpyro.sample("s", dist.Gamma(3.0, 2.0))

    s = np.array([0.5, 1.0, 2.0])
    points, scores = vn.model_scores(model, {"s": s})
    np.testing.assert_allclose(points["s"], np.log(s))
    np.testing.assert_allclose(scores["s"], 3.0 - 2.0 * s, rtol=1e-10)  # d/du of 3u - 2e^u


def test_auto_delta_fit_is_reported_as_a_point_estimate():
    """Issue 14: constant weights from a Delta guide are not "q equals the posterior"."""
    from numpyro.infer.autoguide import AutoDelta

    lg = conjugate_normal()
    model = linear_gaussian_model(lg)
    params = {"z_auto_loc": jnp.asarray(lg.post_mean)}  # the MAP (= posterior mean here)
    dt = vn.to_datatree(model, AutoDelta(model), params, rng_key=KEY, num_samples=200)
    assert dt.attrs["point_mass"] == 1 and dt.attrs["point_mass_sites"] == "z"
    assert dt.attrs["log_q_density"] == 0
    report = diagnose(dt)
    assert report.verdict == "point estimate"
    assert "no posterior uncertainty" in report.message
    # AutoMultivariateNormal samples its sites through Deltas too: not a point mass
    model, guide, params = full_rank(lg, lg.post_cov)
    full = vn.to_datatree(model, guide, params, rng_key=KEY, num_samples=200)
    assert full.attrs["point_mass"] == 0 and full.attrs["log_q_density"] == 1
    assert diagnose(full).verdict == "good"
