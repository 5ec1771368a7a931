"""to_datatree: groups, dims, attrs, netCDF round trip, ArviZ functions run on it, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from vidiv.diagnostics import psis_khat, to_datatree
from vidiv.errors import VidivError
from vidiv.estimators import cubo, elbo, weights


def _tree(rng, S=400, J=3, N=6, **extra):
    theta = rng.normal(size=(S, J))
    mu = rng.normal(size=S)
    log_q = -0.5 * (theta**2).sum(1) - 0.5 * mu**2
    log_p = log_q + 0.3 * rng.normal(size=S)
    y = rng.normal(size=N)
    loglik = -0.5 * (y[None, :] - mu[:, None]) ** 2
    kw = dict(
        log_likelihood={"y": loglik},
        observed={"y": y},
        losses=np.linspace(10.0, 1.0, 50),
        khat_trace=[(25, 0.8), (50, 0.4)],
        dims={"theta": ["school"], "y": ["obs_id"]},
        coords={"school": ["a", "b", "c"]},
        attrs={"objective": "Trace_ELBO", "backend": "pyro", "vectorized": True, "note": None},
    )
    kw.update(extra)
    return to_datatree({"theta": theta, "mu": mu}, log_p, log_q, **kw), log_p, log_q


def test_groups_dims_and_attrs(rng):
    dt, log_p, log_q = _tree(rng)
    assert set(dt.children) == {
        "posterior", "sample_stats", "log_likelihood", "observed_data", "optimization"
    }
    assert dict(dt["posterior"]["theta"].sizes) == {"chain": 1, "draw": 400, "school": 3}
    assert list(dt["posterior"]["school"].values) == ["a", "b", "c"]
    assert dt["log_likelihood"]["y"].dims == ("chain", "draw", "obs_id")
    assert dt["observed_data"]["y"].dims == ("obs_id",)
    np.testing.assert_array_equal(
        dt["sample_stats"]["log_weight"].values[0], log_p - log_q
    )
    assert dt["optimization"]["loss"].dims == ("step",)
    np.testing.assert_array_equal(dt["optimization"]["khat_step"].values, [25, 50])
    a = dt.attrs
    assert a["objective"] == "Trace_ELBO" and a["backend"] == "pyro"
    assert a["vectorized"] == 1 and a["note"] == "none"  # bool -> int, None -> "none"
    assert a["num_draws"] == 400
    for key in ("vidiv_version", "arviz_base_version", "arviz_stats_version", "xarray_version"):
        assert isinstance(a[key], str)
    lw = log_p - log_q
    assert a["khat"] == psis_khat(lw)
    assert a["is_ess"] == pytest.approx(float(weights.is_ess(lw)), rel=1e-12)
    lz = weights.log_z(lw)
    assert a["log_z"] == pytest.approx(float(lz.log_z), rel=1e-12)
    assert a["log_z_se"] == pytest.approx(float(lz.se), rel=1e-12)
    assert a["elbo"] == pytest.approx(float(elbo(log_p, log_q)), rel=1e-12)
    assert a["cubo"] == pytest.approx(float(cubo(log_p, log_q)), rel=1e-12)


def test_netcdf_round_trip_is_identical(rng, tmp_path):
    pytest.importorskip("h5py", reason="netCDF4 files need h5py (h5netcdf backend)")
    dt, _, _ = _tree(rng)
    path = tmp_path / "vi.nc"
    dt.to_netcdf(path)
    back = xr.open_datatree(path).load()
    xr.testing.assert_identical(dt, back)


def test_arviz_summary_and_loo_approximate_posterior_run(rng):
    import arviz_stats as azs

    dt, _, _ = _tree(rng)
    summary = azs.summary(dt, kind="stats")
    assert list(summary.index) == ["theta[a]", "theta[b]", "theta[c]", "mu"]
    assert summary.loc["mu", "mean"] == pytest.approx(dt["posterior"]["mu"].values.mean(), abs=0.01)
    loo = azs.loo_approximate_posterior(
        dt, log_p=dt["sample_stats"]["log_p"], log_q=dt["sample_stats"]["log_q"], pointwise=True
    )
    assert np.isfinite(loo.elpd)
    assert loo.pareto_k.shape == (6,)


def test_particles_without_log_q(rng):
    dt = to_datatree({"x": rng.normal(size=(50, 2))}, log_p=rng.normal(size=50))
    assert list(dt["sample_stats"].data_vars) == ["log_p"]
    assert "khat" not in dt.attrs and "optimization" not in dt.children


def test_constant_weights_store_minus_inf_khat(rng, tmp_path):
    lq = rng.normal(size=100)
    dt = to_datatree({"x": rng.normal(size=100)}, lq + 2.0, lq)
    assert dt.attrs["khat"] == -math.inf
    assert dt.attrs["is_ess"] == pytest.approx(100.0)
    assert dt.attrs["log_z"] == pytest.approx(2.0)


def test_bad_input(rng):
    with pytest.raises(VidivError, match=r"log_q has shape \(99,\) but the samples have S=100"):
        to_datatree({"x": rng.normal(size=100)}, rng.normal(size=100), rng.normal(size=99))
    with pytest.raises(VidivError, match=r"samples\['b'\] has shape \(7,\)"):
        to_datatree({"a": np.zeros(8), "b": np.zeros(7)})
    with pytest.raises(VidivError, match="non-empty dict"):
        to_datatree({})
    with pytest.raises(VidivError, match=r"log_likelihood\['y'\] has shape \(3, 4\)"):
        to_datatree({"a": np.zeros(8)}, log_likelihood={"y": np.zeros((3, 4))})
    with pytest.raises(VidivError, match="coords\\['school'\\] has 2 entries"):
        to_datatree({"a": np.zeros((8, 3))}, dims={"a": ["school"]}, coords={"school": [1, 2]})
    with pytest.raises(VidivError, match=r"khat_trace has shape \(3,\)"):
        to_datatree({"a": np.zeros(8)}, khat_trace=[1.0, 2.0, 3.0])
