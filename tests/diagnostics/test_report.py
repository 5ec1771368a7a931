"""diagnose/Report on closed-form cases: the evidence sandwich, IS log Z, verdicts, rendering."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from tests.closed_form import conjugate_normal, correlated_gaussian
from vidiv.diagnostics import Report, diagnose, to_datatree
from vidiv.errors import NonFiniteError, VidivError


def _gaussian_fit(lg, cov, S, seed):
    """Draws from q = N(post_mean, cov) with exact log p(x, z) and log q(z)."""
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal(lg.post_mean, cov, size=S)
    log_q = multivariate_normal(lg.post_mean, cov).logpdf(z)
    return to_datatree({"z": z}, lg.log_joint(z), log_q, attrs={"objective": "test"})


def test_sandwich_contains_exact_log_z_and_is_estimate_within_3_se():
    lg = conjugate_normal()
    dt = _gaussian_fit(lg, 1.2**2 * lg.post_cov, S=2000, seed=0)  # slightly too wide q
    r = diagnose(dt, log_z_reference=lg.log_z)
    assert r.elbo < lg.log_z < r.cubo
    assert r.sandwich_holds
    assert abs(r.log_z - lg.log_z) < 3 * r.log_z_se
    assert 0 < r.log_z_se < 0.05
    assert r.khat < 0.5 and r.verdict == "good"
    assert r.is_ess > 0.5 * r.num_draws


def test_bad_mean_field_fit_is_flagged():
    lg = correlated_gaussian(0.99)
    mf_cov = np.diag(1.0 / np.diag(np.linalg.inv(lg.post_cov)))  # KL(q||p) optimum, diag
    r = diagnose(_gaussian_fit(lg, mf_cov, S=20000, seed=0), log_z_reference=lg.log_z)
    assert r.khat > 0.7
    assert r.verdict == "do not trust"
    assert "richer guide" in r.message
    assert r.elbo < lg.log_z  # the ELBO is still a lower bound


def test_verdict_asks_for_more_draws_between_thresholds():
    from vidiv.diagnostics.report import verdict_for

    verdict, message = verdict_for(0.62, 100)  # threshold for S=100 is 0.5
    assert verdict == "do not trust"
    assert "at least 429" in message  # 10**(1/(1-0.62)) = 428.1
    assert verdict_for(0.62, 1000)[0] == "usable"
    assert verdict_for(-math.inf, 1000)[0] == "good"


def test_exact_q_gives_minus_inf_khat_and_zero_width(rng):
    lg = conjugate_normal()
    dt = _gaussian_fit(lg, lg.post_cov, S=500, seed=1)
    r = diagnose(dt)
    assert r.khat == -math.inf and r.verdict == "good"
    assert r.log_z == pytest.approx(lg.log_z, abs=1e-9)
    assert r.sandwich_width == pytest.approx(0.0, abs=1e-9)
    assert r.is_ess == pytest.approx(500.0)


def test_report_renders_as_text_html_and_dataframe():
    lg = conjugate_normal()
    r = diagnose(_gaussian_fit(lg, 1.1**2 * lg.post_cov, S=300, seed=2))
    text = str(r)
    for label in ("Pareto k-hat", "IS-ESS", "ELBO", "IS log Z", "CUBO", "verdict", "GOOD"):
        assert label in text
    assert f"{r.log_z:.3f} +/- {r.log_z_se:.3f}" in text
    html = r._repr_html_()
    assert html.startswith("<div><table>") and "Pareto k-hat" in html
    df = r.to_dataframe()
    assert df.shape == (1, len(Report.__dataclass_fields__))
    assert df.loc["test", "khat"] == r.khat and df.loc["test", "verdict"] == "good"


def test_particles_without_log_q_are_unavailable(rng):
    r = diagnose(to_datatree({"x": rng.normal(size=(64, 2))}))
    assert r.verdict == "unavailable" and math.isnan(r.khat) and r.num_draws == 64
    assert "ksd" in r.message


def test_bad_input(rng):
    with pytest.raises(VidivError, match="expects an xarray.DataTree"):
        diagnose({"log_p": np.zeros(3)})
    lq = rng.normal(size=50)
    lp = lq.copy()
    lp[3] = np.nan
    with pytest.raises(NonFiniteError, match="1 NaN"):
        diagnose(to_datatree({"x": rng.normal(size=50)}, lp, lq))
    # too few draws is an answer, not an error (issue 14): see test_verdict.py
    r = diagnose(to_datatree({"x": rng.normal(size=5)}, rng.normal(size=5), np.zeros(5)))
    assert r.verdict == "do not trust" and "fewer than 10" in r.message
