"""Bad input to the diagnostics: '/' in names, NaN reference or posterior draws, wrong types,
empty or mis-shaped arrays. Each case raises a named VidivError subclass saying what to do, or
gives the finite result."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr

from vidiv.diagnostics import (
    compare_to_reference,
    diagnose,
    guide_attrs,
    khat_threshold,
    ksd,
    plot,
    psis_khat,
    reweighted_summary,
    to_datatree,
)
from vidiv.errors import InvalidArgumentError, NonFiniteError


def _normal_fit(rng, names=("enc/z",), S=1000, scale=1.0):
    """q = N(0, scale^2) per site for the posterior N(0, 1): exact log weights."""
    draws = {n: scale * rng.normal(size=(S, 2)) for n in names}
    log_p = sum(-0.5 * (v**2).sum(1) for v in draws.values())
    log_q = sum(-0.5 * ((v / scale) ** 2).sum(1) - 2 * math.log(scale) for v in draws.values())
    return draws, log_p, log_q


# -- item 1: '/' in site and plate names ---------------------------------------------------


def test_slash_names_are_stored_with_a_dot_and_the_renaming_recorded(rng, tmp_path):
    draws, log_p, log_q = _normal_fit(rng)
    dt = to_datatree(
        draws, log_p, log_q,
        log_likelihood={"y/obs": rng.normal(size=(1000, 3))}, observed={"y/obs": np.ones(3)},
        dims={"enc/z": ["layer/unit"], "y/obs": ["data/i"]},
        attrs={"point_mass_sites": "", "deterministic_sites": "enc/z"},
    )
    assert list(dt["posterior"].data_vars) == ["enc.z"]
    assert dt["posterior"]["enc.z"].dims == ("chain", "draw", "layer.unit")
    assert dt["log_likelihood"]["y.obs"].dims == ("chain", "draw", "data.i")
    assert json.loads(dt.attrs["renamed_sites"]) == {
        "enc/z": "enc.z", "y/obs": "y.obs", "layer/unit": "layer.unit", "data/i": "data.i"
    }
    assert dt.attrs["deterministic_sites"] == "enc.z"  # site lists name the stored variables
    pytest.importorskip("h5py", reason="netCDF4 files need h5py (h5netcdf backend)")
    dt.to_netcdf(tmp_path / "slash.nc")  # no '/' left for HDF5 to choke on
    back = xr.open_datatree(tmp_path / "slash.nc").load()
    xr.testing.assert_identical(dt, back)


def test_slash_names_diagnose_like_the_same_fit_without_them(rng):
    draws, log_p, log_q = _normal_fit(rng, names=("enc/z",), scale=0.6)  # too narrow
    slash = diagnose(to_datatree(draws, log_p, log_q))
    plain = diagnose(to_datatree({"enc_z": draws["enc/z"]}, log_p, log_q))
    assert slash.verdict == plain.verdict and slash.verdict not in ("good", "usable")
    assert slash.khat == plain.khat and slash.max_mean_shift == plain.max_mean_shift
    assert slash.worst_parameter == plain.worst_parameter.replace("enc_z", "enc/z")


def test_slash_names_in_reports_and_reference_use_the_model_names(rng):
    draws, log_p, log_q = _normal_fit(rng)
    dt = to_datatree(draws, log_p, log_q)
    assert list(reweighted_summary(dt).index) == ["enc/z[0]", "enc/z[1]"]
    ref = rng.normal(size=(4000, 2))
    by_model_name = compare_to_reference(dt, {"enc/z": ref})
    by_stored_name = compare_to_reference(dt, {"enc.z": ref}, var_names=["enc.z"])
    assert list(by_model_name.index) == ["enc/z[0]", "enc/z[1]"]
    assert by_model_name.equals(by_stored_name)
    assert np.isfinite(by_model_name.to_numpy()).all()
    as_tree = compare_to_reference(dt, to_datatree({"enc/z": ref}))  # renamed on both sides
    assert as_tree.equals(by_model_name)


def test_slash_point_mass_site_is_reported_by_its_model_name(rng):
    mu = np.full(200, 2.2)
    dt = to_datatree({"enc/mu": mu}, log_p=rng.normal(size=200), log_q=np.zeros(200),
                     attrs=guide_attrs({"enc/mu": mu}, delta_sites=["enc/mu"]))
    report = diagnose(dt)
    assert report.verdict == "point estimate"
    assert report.point_mass_sites == "enc/mu" and "'enc/mu'" in report.message


def test_slash_name_next_to_its_dotted_spelling_is_refused(rng):
    with pytest.raises(InvalidArgumentError, match=r"site name 'a/b' holds a '/'.*already a "
                       r"site of that name\. Rename one.*'a_b'"):
        to_datatree({"a/b": np.zeros(5), "a.b": np.zeros(5)})


# -- item 3: NaN in reference draws ----------------------------------------------------------


def test_reference_with_nan_draws_is_refused_by_parameter_and_count(rng):
    dt = to_datatree({"theta": rng.normal(size=(100, 3)), "mu": rng.normal(size=100)})
    theta = rng.normal(size=(500, 3))
    theta[[3, 7, 7, 9], [1, 1, 2, 1]] = np.nan  # 3 draws, components 1 and 2
    with pytest.raises(NonFiniteError, match=r"reference draws of 'theta' hold NaN: 3 of 500 "
                       r"draws \(at theta\[1\], theta\[2\]\).*Drop those draws"):
        compare_to_reference(dt, {"theta": theta, "mu": rng.normal(size=500)})
    mu = rng.normal(size=500)
    mu[0] = np.inf
    with pytest.raises(NonFiniteError, match=r"reference draws of 'mu' hold \+-inf: 1 of 500"):
        compare_to_reference(dt, {"mu": mu})
    # a NaN variable left out by var_names does not matter
    ok = compare_to_reference(dt, {"theta": theta, "mu": rng.normal(size=500)}, var_names=["mu"])
    assert np.isfinite(ok.to_numpy()).all()


def test_nan_vi_draws_and_unusable_reference_arrays_are_named(rng):
    theta = rng.normal(size=(100, 2))
    theta[5, 0] = np.nan
    dt = to_datatree({"theta": theta})
    with pytest.raises(NonFiniteError, match=r"VI posterior draws of 'theta' hold NaN: 1 of 100"):
        compare_to_reference(dt, {"theta": rng.normal(size=(50, 2))})
    good = to_datatree({"mu": rng.normal(size=100)})
    with pytest.raises(InvalidArgumentError, match=r"no variable in common.*'mu' was skipped "
                       r"\(dtype float64, shape \(\)"):
        compare_to_reference(good, {"mu": 1.0})
    with pytest.raises(InvalidArgumentError, match=r"var_names must be a list.*\['mu'\]"):
        compare_to_reference(good, {"mu": rng.normal(size=10)}, var_names="mu")


# -- item 4: wrong types say how to build a DataTree -------------------------------------------


@pytest.mark.parametrize("fn", [diagnose, reweighted_summary,
                                lambda x: compare_to_reference(x, {}), plot])
def test_wrong_type_says_how_to_build_a_datatree(rng, fn):
    with pytest.raises(InvalidArgumentError) as info:
        fn({"z": rng.normal(size=100)})
    msg = str(info.value)
    assert "expects an xarray.DataTree of variational results, got dict" in msg
    assert "A dict of draws is not enough: wrap it in a tree first" in msg
    for how in ("vidiv.pyro.to_datatree(model, guide", "vidiv.numpyro.to_datatree(model, guide, "
                "svi_result.params", ".to_datatree(...) method of a MirroredSVGD driver",
                "vidiv.diagnostics.to_datatree(samples, log_p=..., log_q=...)"):
        assert how in msg


def test_one_group_or_a_dataset_is_refused_with_the_fix(rng):
    z = rng.normal(size=100)
    dt = to_datatree({"z": z}, log_p=-0.5 * z**2, log_q=-0.5 * z**2)
    with pytest.raises(InvalidArgumentError, match=r"needs a DataTree with a 'posterior' group.*"
                       r"group '/sample_stats' of a tree: pass the root"):
        diagnose(dt["sample_stats"])  # was an "unavailable" report
    with pytest.raises(InvalidArgumentError, match="one group of a tree: pass the whole tree"):
        diagnose(dt["posterior"].to_dataset())
    for bad in (float("nan"), math.inf, "0.5"):
        with pytest.raises(InvalidArgumentError, match="log_z_reference must be a finite number"):
            diagnose(dt, log_z_reference=bad)


# -- item 5: the rest of the audit -------------------------------------------------------------


def test_nan_posterior_draws_of_positive_weight_are_refused(rng):
    z = rng.normal(size=(500, 2))
    z[[10, 20], 1] = np.nan
    lw = -0.5 * (np.nan_to_num(z) ** 2).sum(1)
    dt = to_datatree({"z": z}, log_p=lw, log_q=lw)  # was "use reweighted" with NaN moments
    for fn in (diagnose, reweighted_summary):
        with pytest.raises(NonFiniteError, match=r"posterior \(at draws of positive importance "
                           r"weight\) draws of 'z' hold NaN: 2 of 500 draws \(at z\[1\]\)"):
            fn(dt)
    # draws outside the support (zero weight) may hold anything: a report, pointing to the
    # reweighted moments (which leave them out), never "good" from NaN raw moments
    log_p = lw.copy()
    log_p[[10, 20]] = -np.inf
    dt = to_datatree({"z": z}, log_p=log_p, log_q=lw)
    report = diagnose(dt)
    assert report.num_weighted == 498 and report.verdict == "use reweighted"
    assert np.isfinite(reweighted_summary(dt)[["mean_psis", "sd_psis"]].to_numpy()).all()


def test_zero_weight_draws_keep_zero_weight_when_the_others_are_constant():
    from vidiv.diagnostics import psis_log_weights

    lw = np.zeros(500)
    lw[:2] = -np.inf  # two draws outside the support (they had weight 1/500 each)
    smoothed, khat = psis_log_weights(lw)
    assert khat == -math.inf
    np.testing.assert_array_equal(np.exp(smoothed[:2]), 0.0)
    np.testing.assert_allclose(np.exp(smoothed[2:]), 1 / 498)


def test_datatree_refuses_empty_draws_and_dims_given_as_a_string(rng):
    with pytest.raises(InvalidArgumentError, match=r"S >= 1; samples\['a'\] has shape \(0, 3\)"):
        to_datatree({"a": np.zeros((0, 3))})
    with pytest.raises(InvalidArgumentError, match=r"dims\['a'\] must be a list.*\['school'\]"):
        to_datatree({"a": np.zeros((8, 3))}, dims={"a": "school"})  # was dims s, c, h, ...
    with pytest.raises(InvalidArgumentError, match=r"samples\['a'\] has dtype <U1"):
        to_datatree({"a": np.array(["x"] * 8)})


def test_numeric_inputs_of_psis_and_ksd(rng):
    with pytest.raises(InvalidArgumentError, match="log_w has dtype <U3"):
        psis_khat(np.array(["1.0"] * 20))
    with pytest.raises(InvalidArgumentError, match="could not be converted.*of one shape"):
        psis_khat([[1.0, 2.0], [3.0]])
    with pytest.raises(InvalidArgumentError, match=r"num_draws must be an integer >= 0"):
        khat_threshold(1000.5)
    assert khat_threshold(np.int64(1000)) == pytest.approx(2 / 3)
    x = rng.normal(size=(50, 2))
    for bad in (float("nan"), 0.0, -1.0, "1", math.inf):
        with pytest.raises(InvalidArgumentError, match="bandwidth must be a finite number > 0"):
            ksd(x, -x, bandwidth=bad)  # NaN gave a NaN KSD
    with pytest.raises(InvalidArgumentError, match=r"beta must lie in \(-1, 0\).*got 'a'"):
        ksd(x, -x, beta="a")
    with pytest.raises(InvalidArgumentError, match=r"shape \(50, 0\): no coordinates"):
        ksd(np.zeros((50, 0)), np.zeros((50, 0)))  # was 0.0
    with pytest.raises(InvalidArgumentError, match="kernel must be 'imq' or 'rbf'"):
        ksd(x, -x, kernel="gauss")
    with pytest.raises(InvalidArgumentError, match=r"samples\['a'\] has dtype <U1"):
        ksd({"a": np.array(["x"] * 5)}, {"a": np.zeros(5)})
    assert math.isfinite(ksd(x, -x, bandwidth=np.float32(2.0)))


def test_plot_refuses_unknown_names_missing_folders_and_nan_reference(rng, tmp_path):
    dt = to_datatree({"enc/mu": rng.normal(size=100)})
    with pytest.raises(InvalidArgumentError, match=r"\['nope'\] not in the posterior, whose "
                       r"variables are \['enc.mu'\]"):
        plot(dt, var_names=["nope"], path=tmp_path / "p.png")
    with pytest.raises(InvalidArgumentError, match="does not exist; create it first"):
        plot(dt, path=tmp_path / "missing" / "p.png")
    ref = rng.normal(size=100)
    ref[0] = np.nan
    pytest.importorskip("arviz_plots")
    pytest.importorskip("matplotlib")
    with pytest.raises(NonFiniteError, match=r"reference draws of 'enc/mu' hold NaN: 1 of 100"):
        plot(dt, reference={"enc/mu": ref}, var_names=["enc/mu"], path=tmp_path / "p.png")
