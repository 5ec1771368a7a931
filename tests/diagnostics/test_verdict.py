"""The verdict is a promise: no fit whose raw means are off by > 0.25 posterior sd, or whose sd
ratio leaves [0.8, 1.25], is "good" or "usable" (issue 14, defect 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from tests.closed_form import conjugate_normal
from vidiv.diagnostics import diagnose, psis_khat, reweighted_summary, to_datatree
from vidiv.diagnostics.psis import psis_log_weights, tail_status
from vidiv.diagnostics.verdict import Evidence, verdict_for


def _gaussian_fit(lg, mean, cov, S, seed, attrs=None):
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal(mean, cov, size=S)
    log_q = multivariate_normal(mean, cov).logpdf(z)
    return to_datatree({"z": z}, lg.log_joint(z), log_q, attrs=attrs)


def test_log_weights_spread_beyond_double_precision_give_infinite_khat_and_do_not_trust():
    rng = np.random.default_rng(0)
    lw = -rng.chisquare(26, 2000) * 1e5
    assert tail_status(lw) == "underflow"
    assert psis_khat(lw) == math.inf  # ArviZ's fit returns 0.0347 here
    dt = to_datatree({"z": rng.normal(size=2000)}, log_p=lw, log_q=np.zeros(2000))
    r = diagnose(dt)
    assert r.verdict == "do not trust"
    assert r.khat == math.inf
    assert r.is_ess == pytest.approx(1.0, abs=1e-6)
    assert r.sandwich_width > 1e6
    assert "k-hat is infinite" in r.message
    assert "inf  (tail beyond double precision" in str(r)
    # the smoothed weights are the raw ones: one draw holds all the weight
    smoothed, _ = psis_log_weights(lw)
    assert np.exp(smoothed).max() == pytest.approx(1.0)
    # moderate spreads still get ArviZ's (large) k-hat
    assert psis_khat(-np.random.default_rng(0).chisquare(26, 2000) * 100) > 100


def test_tail_of_ties_has_undefined_khat_not_a_good_one():
    lw = np.r_[np.zeros(1900), np.full(100, 1.0)]  # two weight levels (a discrete guide)
    assert tail_status(lw) == "ties"
    assert math.isnan(psis_khat(lw))


def test_exact_posterior_is_good_and_its_reweighted_moments_equal_the_raw_ones():
    lg = conjugate_normal()
    dt = _gaussian_fit(lg, lg.post_mean, lg.post_cov, S=1000, seed=1)
    r = diagnose(dt)
    assert r.khat == -math.inf and r.verdict == "good"
    assert r.max_mean_shift == pytest.approx(0.0, abs=1e-9)
    assert r.worst_sd_ratio == pytest.approx(1.0, abs=1e-9)


def test_slightly_wide_q_at_the_exact_mean_stays_good():
    """The guard cannot make everything bad: q = N(mean, 1.1^2 Sigma) is within the promise."""
    lg = conjugate_normal()
    r = diagnose(_gaussian_fit(lg, lg.post_mean, 1.1**2 * lg.post_cov, S=2000, seed=2))
    assert r.verdict == "good", r.message
    assert r.khat < 0.5 and r.is_ess > 0.8 * r.num_draws
    assert r.max_mean_shift < 0.1 and 1.0 < r.worst_sd_ratio < 1.2


def test_too_wide_q_with_means_off_says_use_reweighted():
    """q twice as wide and 1 sd off in every coordinate: k-hat < 0 (bounded weights), yet the raw
    means are off; the PSIS-reweighted moments recover the posterior's."""
    lg = conjugate_normal()
    mean = lg.post_mean + 1.0 * lg.post_sd
    dt = _gaussian_fit(lg, mean, 2.0**2 * lg.post_cov, S=4000, seed=3)
    r = diagnose(dt)
    assert r.khat < 0.5  # the old verdict: "good"
    assert r.verdict == "use reweighted"
    assert "reweighted" in r.message and "reweighted_summary" in r.message
    assert r.max_mean_shift > 0.9 and r.worst_sd_ratio > 1.7
    table = reweighted_summary(dt)
    np.testing.assert_allclose(table["mean_psis"], lg.post_mean, atol=0.1 * lg.post_sd.max())
    np.testing.assert_allclose(table["sd_psis"], lg.post_sd, rtol=0.1)
    np.testing.assert_allclose(table["sd_ratio"], table["sd"] / table["sd_psis"])
    assert "raw vs PSIS moments" in str(r)
    # the smoothed weights are stored: weighted means from them are the reweighted ones
    w = np.exp(dt["sample_stats"]["psis_log_weight"].values[0])
    np.testing.assert_allclose(w @ dt["posterior"]["z"].values[0], table["mean_psis"])


def test_constant_weights_from_a_delta_guide_are_a_point_estimate():
    lg = conjugate_normal()
    S = 500
    z = np.tile(lg.post_mean, (S, 1))  # AutoDelta at the posterior mode
    lp = lg.log_joint(z)
    attrs = {"point_mass": 1, "point_mass_sites": "z", "log_q_density": 0}
    r = diagnose(to_datatree({"z": z}, lp, np.zeros(S), attrs=attrs))
    assert r.verdict == "point estimate"
    assert "no posterior uncertainty" in r.message
    assert r.point_mass_sites == "z"
    assert "IS log Z" in str(r) and "n/a" in str(r)
    # the same draws without the attrs: identical draws are detected
    assert diagnose(to_datatree({"z": z}, lp, np.zeros(S))).verdict == "point estimate"


def test_one_collapsed_site_is_not_trusted():
    rng = np.random.default_rng(4)
    S = 400
    a, b = rng.normal(size=S), np.full(S, 0.3)
    dt = to_datatree({"a": a, "b": b}, -0.5 * a**2, -0.5 * a**2)
    r = diagnose(dt)
    assert r.verdict == "do not trust" and "'b' are identical" in r.message


def test_fewer_than_10_weighted_draws_return_a_do_not_trust_report():
    rng = np.random.default_rng(5)
    lw = np.full(2000, -np.inf)
    lw[:7] = rng.normal(size=7)
    r = diagnose(to_datatree({"z": rng.normal(size=2000)}, log_p=lw, log_q=np.zeros(2000)))
    assert r.verdict == "do not trust"
    assert r.num_weighted == 7 and r.zero_weight_share == pytest.approx(0.9965)
    assert "only 7 of 2000 draws carry importance weight" in r.message
    r5 = diagnose(to_datatree({"z": rng.normal(size=5)}, rng.normal(size=5), np.zeros(5)))
    assert r5.verdict == "do not trust" and "only 5 of 5" in r5.message


@pytest.mark.parametrize(
    ("evidence", "verdict"),
    [
        (Evidence(is_ess=40.0), "do not trust"),  # ESS < 100
        (Evidence(is_ess=900.0, zero_weight_share=0.6), "do not trust"),
        (Evidence(is_ess=900.0, zero_weight_share=0.05), "usable"),
        (Evidence(is_ess=900.0, sandwich_width=3.0), "usable"),
        (Evidence(is_ess=900.0, moment_excess=0.1, worst_parameter="z[0]"), "use reweighted"),
        (Evidence(is_ess=900.0), "good"),
    ],
)
def test_every_printed_number_can_demote_the_verdict(evidence, verdict):
    assert verdict_for(0.3, 1000, evidence)[0] == verdict
    # IS-ESS above 100 but below 10% of the draws: usable, not good
    verdict, message = verdict_for(0.3, 2000, Evidence(is_ess=150.0))
    assert verdict == "usable" and "IS-ESS is 7.5% of the draws" in message


def test_constant_weights_of_a_discrete_guide_are_usable_not_exact():
    ev = Evidence(is_ess=1000.0, log_q_density=False)
    verdict, message = verdict_for(-math.inf, 1000, ev)
    assert verdict == "usable" and "not a density" in message


def _narrow_or_shifted_passes(r: float, shift: float, seeds: int, S: int = 1000) -> int:
    """How many of ``seeds`` fits q = N(shift, r^2) of p = N(0, 1) are called good/usable."""
    from scipy.stats import norm

    passed = 0
    for seed in range(seeds):
        z = np.random.default_rng(seed).normal(shift, r, S)
        dt = to_datatree({"z": z}, norm.logpdf(z), norm.logpdf(z, shift, r))
        passed += diagnose(dt).verdict in ("good", "usable")
    return passed


@pytest.mark.parametrize(
    ("r", "shift", "at_most", "at_least"),
    [
        (0.70, 0.0, 0, 0),  # sd ratio 0.70: outside the promise
        (0.75, 0.0, 0, 0),
        (0.78, 0.0, 1, 0),  # 2.5 % inside the bound: the residual Monte Carlo risk
        (0.90, 0.0, 100, 95),  # within the promise: mostly certified
        (1.0, 0.27, 0, 0),  # mean 0.27 sd off: outside the promise
        (1.0, 0.15, 100, 100),
    ],
)
def test_slightly_narrow_or_shifted_q_is_not_certified(r, shift, at_most, at_least):
    """The narrow-q gap: with a 1-s.e. margin on the sd check, q = N(0, 0.78^2) was "good" in
    6 of 100 seeds (its reweighted sd is biased low and noisy); the sd check's margin is now
    MARGIN_Z_SD = 2 s.e."""
    n = _narrow_or_shifted_passes(r, shift, seeds=100)
    assert at_least <= n <= at_most
