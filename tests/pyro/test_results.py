"""vidiv.pyro.to_datatree / model_scores on closed-form models: exact log weights, k-hat catches
a bad mean-field fit, the evidence sandwich, plate dims, ArviZ interop."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
import xarray as xr
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
from scipy.stats import multivariate_normal
from torch.distributions import transform_to

import vidiv.pyro as vp
from tests.closed_form import conjugate_normal, correlated_gaussian
from tests.pyro.models import linear_gaussian_model
from vidiv.diagnostics import diagnose, ksd
from vidiv.errors import ModelStructureError

vectorizable_model = linear_gaussian_model  # (X * z).sum(-1): broadcasts over draws


def matmul_model(lg):
    """The same model written ``X @ z``, which does not broadcast over a particle plate."""
    m0, P0, X, y = (torch.as_tensor(a) for a in (lg.m0, lg.P0, lg.X, lg.y))

    def model():
        z = pyro.sample("z", dist.MultivariateNormal(m0, P0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(X @ z, lg.sigma), obs=y)

    return model


def set_param(name, value):
    """Write a constrained value into the param store (through the unconstrained leaf)."""
    store = pyro.get_param_store()
    leaf = pyro.param(name).unconstrained()
    with torch.no_grad():
        leaf.copy_(transform_to(store._constraints[name]).inv(torch.as_tensor(value)))


def full_rank_guide(model, mean, cov):
    guide = AutoMultivariateNormal(model)
    guide()
    L = np.linalg.cholesky(cov)
    set_param("AutoMultivariateNormal.loc", mean)
    set_param("AutoMultivariateNormal.scale", np.diag(L).copy())
    set_param("AutoMultivariateNormal.scale_tril", L / np.diag(L)[:, None])
    return guide


def mean_field_guide(model, lg):
    """AutoNormal at the KL(q||p) optimum: exact mean, precision diag(Lambda)."""
    guide = AutoNormal(model)
    guide()
    set_param("AutoNormal.locs.z", lg.post_mean)
    set_param("AutoNormal.scales.z", 1.0 / np.sqrt(np.diag(np.linalg.inv(lg.post_cov))))
    return guide


@pytest.mark.parametrize("vectorized", [True, False])
def test_log_weights_are_exact(vectorized):
    lg = correlated_gaussian(0.9)
    model = vectorizable_model(lg) if vectorized else matmul_model(lg)
    cov = 0.95**2 * lg.post_cov
    guide = full_rank_guide(model, lg.post_mean, cov)
    if vectorized:
        dt = vp.to_datatree(model, guide, num_samples=200)
    else:  # X @ z does not broadcast over draws: one trace per draw, with a warning
        with pytest.warns(UserWarning, match="do not vectorise"):
            dt = vp.to_datatree(model, guide, num_samples=200)
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
    assert dt.attrs["backend"] == "pyro" and dt.attrs["guide"] == "AutoMultivariateNormal"


def test_full_rank_fit_of_correlated_posterior_has_small_khat():
    lg = correlated_gaussian(0.9)
    model = vectorizable_model(lg)
    guide = full_rank_guide(model, lg.post_mean, 0.95**2 * lg.post_cov)  # slightly narrow
    report = diagnose(vp.to_datatree(model, guide, num_samples=1000))
    assert report.khat < 0.5
    assert report.verdict == "good"


def test_mean_field_on_rho_099_is_caught():
    lg = correlated_gaussian(0.99)
    model = vectorizable_model(lg)
    guide = mean_field_guide(model, lg)
    report = diagnose(vp.to_datatree(model, guide, num_samples=20000), log_z_reference=lg.log_z)
    assert report.khat > 0.7
    assert report.verdict == "do not trust"
    assert report.elbo < lg.log_z


def test_conjugate_sandwich_and_is_log_z():
    lg = conjugate_normal()
    model = vectorizable_model(lg)
    guide = full_rank_guide(model, lg.post_mean, 1.2**2 * lg.post_cov)  # slightly inflated
    report = diagnose(vp.to_datatree(model, guide, num_samples=2000), log_z_reference=lg.log_z)
    assert report.elbo < lg.log_z < report.cubo
    assert report.sandwich_holds
    assert abs(report.log_z - lg.log_z) < 3 * report.log_z_se


J = 4
Y = torch.tensor([28.0, 8.0, -3.0, 7.0])
SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0])


def schools():
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfNormal(5.0))
    with pyro.plate("school", J):
        theta = pyro.sample("theta", dist.Normal(mu, tau))
        pyro.deterministic("theta_sq", theta**2)
        pyro.sample("y", dist.Normal(theta, SIGMA), obs=Y)


def test_plate_dims_round_trip_and_arviz(tmp_path):
    import arviz_stats as azs

    guide = AutoNormal(schools)
    dt = vp.to_datatree(schools, guide, num_samples=300, losses=np.arange(5.0),
                        objective="Trace_ELBO")
    assert dt["posterior"]["theta"].dims == ("chain", "draw", "school")
    assert dt["posterior"]["theta_sq"].dims == ("chain", "draw", "school")
    np.testing.assert_allclose(dt["posterior"]["theta_sq"], dt["posterior"]["theta"] ** 2)
    assert dt["posterior"]["mu"].dims == ("chain", "draw")
    assert (dt["posterior"]["tau"].values > 0).all()
    assert dt["log_likelihood"]["y"].dims == ("chain", "draw", "school")
    np.testing.assert_array_equal(dt["observed_data"]["y"].values, Y.numpy())
    assert "y" not in dt["posterior"] and "theta_sq" not in dt["log_likelihood"]
    assert dt.attrs["objective"] == "Trace_ELBO" and dt.attrs["pyro_version"] == pyro.__version__
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
        loc = pyro.param("loc", torch.zeros(2))
        scale = pyro.param("scale", torch.ones(2), constraint=dist.constraints.positive)
        pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    lg = conjugate_normal()
    dt = vp.to_datatree(vectorizable_model(lg), guide, num_samples=100)
    z = dt["posterior"]["z"].values[0]
    np.testing.assert_allclose(
        dt["sample_stats"]["log_q"].values[0], -0.5 * (z**2).sum(1) - math.log(2 * math.pi)
    )


def test_subsampled_plate_is_rejected():
    def model():
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 100, subsample_size=10):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=torch.zeros(10))

    with pytest.raises(ModelStructureError, match="subsampled to 10 of 100"):
        vp.to_datatree(model, AutoNormal(model), num_samples=20)


def test_model_scores_are_the_exact_posterior_score_and_feed_ksd():
    lg = correlated_gaussian(0.9)
    model = linear_gaussian_model(lg)
    rng = np.random.default_rng(0)
    z = rng.multivariate_normal(lg.post_mean, lg.post_cov, size=300)
    points, scores = vp.model_scores(model, {"z": z})
    np.testing.assert_allclose(points["z"], z)  # real support: u = z
    expected = -(z - lg.post_mean) @ np.linalg.inv(lg.post_cov)
    np.testing.assert_allclose(scores["z"], expected, rtol=1e-8, atol=1e-8)
    good = ksd(points, scores)
    shifted = vp.model_scores(model, {"z": z + 1.0})
    assert ksd(*shifted) > 2 * good


def test_model_scores_on_a_positive_site_include_the_jacobian():
    def model():
        pyro.sample("s", dist.Gamma(3.0, 2.0))

    s = np.array([0.5, 1.0, 2.0])
    points, scores = vp.model_scores(model, {"s": s})
    np.testing.assert_allclose(points["s"], np.log(s))
    # u = log s: log p(u) = 3 u - 2 e^u + const, so the score is 3 - 2 s
    np.testing.assert_allclose(scores["s"], 3.0 - 2.0 * s, rtol=1e-10)


def test_auto_delta_fit_is_reported_as_a_point_estimate():
    """Issue 14: constant weights from a Delta guide are not "q equals the posterior"."""
    from pyro.infer.autoguide import AutoDelta

    pyro.clear_param_store()
    lg = conjugate_normal()
    model = vectorizable_model(lg)
    guide = AutoDelta(model)
    guide()
    set_param("AutoDelta.z", lg.post_mean)  # the MAP (= posterior mean here)
    dt = vp.to_datatree(model, guide, num_samples=200)
    assert dt.attrs["point_mass"] == 1 and dt.attrs["point_mass_sites"] == "z"
    assert dt.attrs["log_q_density"] == 0
    report = diagnose(dt)
    assert report.verdict == "point estimate"
    assert "no posterior uncertainty" in report.message
    # AutoMultivariateNormal places its draws through Delta sites too: not a point mass
    full = vp.to_datatree(model, full_rank_guide(model, lg.post_mean, lg.post_cov),
                          num_samples=200)
    assert full.attrs["point_mass"] == 0 and full.attrs["log_q_density"] == 1
    assert diagnose(full).verdict == "good"
