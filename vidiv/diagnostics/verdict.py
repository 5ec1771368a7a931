r"""The verdict of :func:`vidiv.diagnostics.diagnose`: a promise about the raw draws from q.

**The promise.** A fit called ``"good"`` or ``"usable"`` has, for every scalar parameter, a raw
mean within ``MEAN_TOL = 0.25`` posterior sd of the posterior mean and a raw sd within
``SD_RATIO = [0.8, 1.25]`` of the posterior sd (the scale of
:func:`vidiv.diagnostics.compare_to_reference`). The posterior moments are not known, so the
rule checks every piece of evidence that the importance weights :math:`w_s = p(x, z_s)/q(z_s)`
give, in this order (S draws; the first that fails decides):

==================  ==========================================================================
verdict             when (and why)
==================  ==========================================================================
``unavailable``     no log q (particles: use :func:`~vidiv.diagnostics.ksd`), or 10 <= S < 25
                    (too few draws for the Pareto tail fit; k-hat is NaN)
``point estimate``  some latent site is a point mass (Delta / AutoDelta, or all S draws of a
                    continuous site are identical): log q is not a density, the weights carry no
                    information about posterior uncertainty and constant weights mean nothing
``do not trust``    fewer than ``MIN_WEIGHTED = 10`` draws have positive weight (or S < 10);
                    ``k-hat >= 0.7`` or k-hat +inf (tail beyond double precision: one draw
                    holds the weight) -- Yao et al. 2018, Vehtari et al. 2024: PSIS estimates
                    do not converge; k-hat above the sample-size threshold
                    :math:`\min(1 - 1/\log_{10} S, 0.7)` (draw more); IS-ESS below
                    ``MIN_ESS = 100`` (the reweighted means then have Monte Carlo error above
                    0.1 sd, so the 0.25-sd check below cannot be made; the 100-draw floor is
                    Vehtari et al. 2021's for reliable MCSEs); more than ``MAX_ZERO_SHARE =
                    0.5`` of the draws outside the model's support
``use reweighted``  the evidence above holds but the raw moments disagree with the
                    PSIS-reweighted ones beyond the promise: for some parameter
                    :math:`|m - \mu|/\sigma + z\,\mathrm{se} > 0.25` or
                    :math:`s/\sigma` leaves [0.8, 1.25] by more than z s.e. on the log scale
                    (``MARGIN_Z = 1`` for means, ``MARGIN_Z_SD = 2`` for sds; formulas in
                    :mod:`vidiv.diagnostics.reweight`). With
                    k-hat < 0.7 the reweighted moments converge (Vehtari et al. 2024): use
                    :func:`~vidiv.diagnostics.reweighted_summary`, not the raw draws
``good``            k-hat < 0.5 (or -inf: constant weights from a continuous q with
                    non-degenerate draws, i.e. q is the posterior), IS-ESS >= ``GOOD_ESS_FRACTION
                    = 0.1`` of S, CUBO - ELBO <= ``GOOD_MAX_GAP = 2`` nats, at most
                    ``GOOD_MAX_ZERO_SHARE = 1 %`` zero weights
``usable``          otherwise (k-hat < the threshold, or undefined for a tail of ties, e.g. a
                    discrete guide; or constant weights of a discrete guide)
==================  ==========================================================================

Why those "good" bounds: CUBO - log Z-hat :math:`= \frac12 \log(S/\mathrm{ESS})` and log Z-hat -
ELBO estimates KL(q || p), so an ESS fraction below 10 % (chi^2(p || q) > 9) or a sandwich wider
than 2 nats says q differs from the posterior by more than its marginal moments show; the fit
keeps "usable" when the moments pass, so the bounds only decide between the two labels.

**What the promise rests on.** The moment check compares the raw draws with Monte Carlo
estimates, so a fit within a fraction of a standard error of the bounds can pass. Measured
(seeded, S = 1000; ``tests/diagnostics/test_verdict.py``): q = N(0, r^2) for p = N(0, 1) is
"good" or "usable" in 0 of 100 seeds at r = 0.75 and 1 of 100 at r = 0.78 (2.5 % inside the
0.8 bound), and in 56 of 100 at r = 0.85 and 99 at r = 0.9, where it is within the promise (the
others say "use reweighted", whose reweighted moments are right); a mean shift of 0.27 sd passes
in 0 of 100 seeds, one of 0.15 sd in all (0.23 sd, inside the promise, in 1: the margin makes
the check conservative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["verdict_for", "Evidence", "MEAN_TOL", "SD_RATIO", "MIN_ESS", "MIN_WEIGHTED",
           "GOOD_ESS_FRACTION", "GOOD_MAX_GAP", "GOOD_MAX_ZERO_SHARE", "MAX_ZERO_SHARE",
           "MARGIN_Z", "MARGIN_Z_SD"]

MEAN_TOL = 0.25
SD_RATIO = (0.8, 1.25)
MIN_ESS = 100.0
MIN_WEIGHTED = 10
GOOD_ESS_FRACTION = 0.1
GOOD_MAX_GAP = 2.0
GOOD_MAX_ZERO_SHARE = 0.01
MAX_ZERO_SHARE = 0.5
MARGIN_Z = 1.0
#: the sd check's margin is wider: for a q narrower than the posterior the reweighted sd is
#: itself biased low and noisy (seeded study, q = N(0, r^2) vs p = N(0, 1), S = 1000: with a
#: margin of 1 s.e. r = 0.78 passed in 6 of 100 seeds, with 2 in 1 of 100, r = 0.75 in none)
MARGIN_Z_SD = 2.0


@dataclass(frozen=True)
class Evidence:
    """Everything besides k-hat that the verdict reads (defaults: no evidence against q)."""

    is_ess: float = math.nan
    sandwich_width: float = 0.0
    num_weighted: int | None = None
    zero_weight_share: float = 0.0
    point_mass_sites: tuple[str, ...] = ()
    identical_sites: tuple[str, ...] = ()
    log_q_density: bool = True
    moment_excess: float = -math.inf
    max_mean_shift: float = 0.0
    worst_sd_ratio: float = 1.0
    worst_parameter: str = ""


def _draws_needed(khat: float) -> int:
    # smallest S with 1 - 1/log10(S) > khat
    return int(math.floor(10 ** (1.0 / (1.0 - khat)))) + 1


_RICHER = ("use a richer guide (full-rank, flow), a mass-covering objective (ChiSquaredVIS, "
           "AlphaDivergence with alpha < 1), or MCMC.")


def _names(sites) -> str:
    return ", ".join(repr(s) for s in sites[:5]) + (" ..." if len(sites) > 5 else "")


def verdict_for(khat: float, num_draws: int, evidence: Evidence | None = None) -> tuple[str, str]:
    """(verdict, advice in plain words) for a k-hat from ``num_draws`` draws and the rest of the
    ``evidence`` (see the module docstring for the rule and its thresholds).

    Examples
    --------
    >>> verdict_for(0.3, 1000)[0]
    'good'
    >>> verdict_for(0.3, 1000, Evidence(is_ess=40.0))[0]
    'do not trust'
    """
    from .psis import khat_threshold

    ev = evidence or Evidence()
    S = int(num_draws)
    thr = khat_threshold(S)
    weighted = S if ev.num_weighted is None else int(ev.num_weighted)
    if ev.point_mass_sites:
        return "point estimate", (
            f"q is a point mass at {_names(ev.point_mass_sites)} (a Delta / AutoDelta guide, or "
            "draws that are all identical): a point estimate (e.g. MAP) that carries no "
            "posterior uncertainty. "
            "Its importance weights, k-hat and IS log Z say nothing about the posterior (log q is "
            "not a density). Fit a guide with a scale (AutoNormal, AutoMultivariateNormal) for "
            "posterior summaries."
        )
    if ev.identical_sites:
        return "do not trust", (
            f"all {S} draws of {_names(ev.identical_sites)} are identical: q has collapsed to a "
            "point there (a frozen or degenerate fit), so its sd is 0 and its weights measure "
            "nothing. Check the guide's scales and the optimiser; " + _RICHER
        )
    if S < MIN_WEIGHTED or weighted < MIN_WEIGHTED:
        return "do not trust", (
            f"only {weighted} of {S} draws carry importance weight (fewer than {MIN_WEIGHTED}): "
            "nothing can be estimated from them. The guide puts its draws outside the model's "
            "support or far from the posterior: fix the guide's support, start it closer to the "
            "posterior, or draw more samples."
        )
    if math.isnan(khat) and S < 25:
        return "unavailable", (
            f"Only {S} draws: the Pareto tail fit behind k-hat needs at least 25 "
            "(5 in the tail). Draw more samples from q (a few hundred or more)."
        )
    if math.isnan(khat) and math.isnan(ev.is_ess):
        return "unavailable", (
            "No log q(z) for these draws (e.g. particles), so there are no importance weights: "
            "use vidiv.diagnostics.ksd with the model's scores to measure the fit."
        )
    if khat == math.inf:
        return "do not trust", (
            "k-hat is infinite: the largest importance weights span more orders of magnitude "
            "than double precision resolves, so one draw holds essentially all the weight "
            f"(IS-ESS {ev.is_ess:.1f} of {S}). q is far from the posterior: "
            "do not trust posterior summaries from q or its log Z estimate; " + _RICHER
        )
    if khat >= 0.7:
        return "do not trust", (
            f"k-hat {khat:.2f} >= 0.7: the importance weights have too heavy a tail, so q misses "
            "posterior mass (it is typically too narrow or misses correlations). Do not trust "
            "posterior summaries from q or its log Z estimate: " + _RICHER
        )
    if khat >= thr:
        return "do not trust", (
            f"k-hat {khat:.2f} is below 0.7 but above the threshold {thr:.2f} for S = "
            f"{S} draws: the estimate is not reliable with so few draws. Draw more "
            f"(at least {_draws_needed(khat)}) and diagnose again."
        )
    if not math.isnan(ev.is_ess) and ev.is_ess < MIN_ESS:
        return "do not trust", (
            f"IS-ESS {ev.is_ess:.1f} < {MIN_ESS:.0f}: too few effective draws to check q's "
            "moments against the reweighted ones (their Monte Carlo error exceeds 0.1 sd). "
            f"Draw more samples (about {math.ceil(MIN_ESS * S / max(ev.is_ess, 1e-300))} at this "
            "ESS fraction), or " + _RICHER
        )
    if ev.zero_weight_share > MAX_ZERO_SHARE:
        return "do not trust", (
            f"{100 * ev.zero_weight_share:.0f}% of the draws fall outside the model's support "
            "(zero importance weight): the guide's support does not match the model's."
        )
    if ev.moment_excess > 0:
        return "use reweighted", (
            f"the raw draws from q disagree with their PSIS-reweighted moments at "
            f"{ev.worst_parameter!r} (largest mean shift {ev.max_mean_shift:.2f} sd, worst sd "
            f"ratio q / reweighted {ev.worst_sd_ratio:.2f}; the tolerance is {MEAN_TOL} sd and "
            f"[{SD_RATIO[0]}, {SD_RATIO[1]}]): posterior summaries from the raw draws are off. "
            "Use the PSIS-reweighted moments (vidiv.diagnostics.reweighted_summary(dt)), or fit "
            "a closer q."
        )
    exact = khat == -math.inf and weighted == S
    if exact and not ev.log_q_density:
        return "usable", (
            "The importance weights are constant, but log q is not a density (a discrete guide): "
            "q is proportional to the posterior on the values it drew, and the weights cannot "
            "see values q never proposes. Summaries from the draws are usable."
        )
    if exact:
        return "good", (
            "The importance weights are constant: q equals the posterior (up to the "
            "normalising constant). Posterior summaries and the IS log Z are exact up to Monte "
            "Carlo error."
        )
    frac = ev.is_ess / S if not math.isnan(ev.is_ess) else 1.0
    weak = []
    if math.isnan(khat):
        weak.append("k-hat is undefined (the largest weights are ties, e.g. a discrete guide)")
    elif khat >= 0.5:
        weak.append(f"k-hat {khat:.2f} is in [0.5, {thr:.2f})")
    if frac < GOOD_ESS_FRACTION:
        weak.append(f"IS-ESS is {100 * frac:.1f}% of the draws (< {100 * GOOD_ESS_FRACTION:.0f}%)")
    if ev.sandwich_width > GOOD_MAX_GAP:
        weak.append(f"CUBO - ELBO = {ev.sandwich_width:.2f} > {GOOD_MAX_GAP:.0f} nats")
    if ev.zero_weight_share > GOOD_MAX_ZERO_SHARE:
        weak.append(f"{100 * ev.zero_weight_share:.1f}% of the draws have zero weight")
    if not weak:
        return "good", (
            f"k-hat {khat:.2f} < 0.5, IS-ESS {100 * frac:.0f}% of draws, and the raw moments agree "
            "with the PSIS-reweighted ones: q covers the posterior. Summaries from the draws and "
            "the IS estimate of log Z can be trusted."
        )
    return "usable", (
        "; ".join(weak) + ": q is usable but rough (its raw moments agree with the "
        "PSIS-reweighted ones within tolerance). Prefer PSIS-reweighted estimates over raw "
        "draws and check them against a reference; a richer guide (e.g. full-rank) or a "
        "mass-covering objective (ChiSquaredVIS, AlphaDivergence with alpha < 1) would "
        "tighten the fit."
    )
