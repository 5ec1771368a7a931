r"""Pareto-smoothed importance sampling (PSIS) diagnostic for a variational approximation.

With draws :math:`z_s \sim q` and log importance ratios
:math:`\log w_s = \log p(x, z_s) - \log q(z_s)`, the shape parameter :math:`\hat k` of a
generalised Pareto distribution fitted to the largest ratios tells how heavy the right tail of
the weights is (Yao, Vehtari, Simpson & Gelman 2018, "Yes, but did it work?"; Vehtari et al.
2024, "Pareto smoothed importance sampling"):

* :math:`\hat k < 0.5`: the weights have finite variance, q covers the posterior well;
* :math:`\hat k < \min(1 - 1/\log_{10} S,\ 0.7)`: usable with S draws (PSIS estimates converge);
* otherwise: q misses posterior mass (typically it is too narrow); do not trust it.

The fit is ArviZ's: ``arviz_stats.base.array_stats.psislw(-log_w, r_eff=1.0)``. arviz-stats
smooths the right tail of the *negated* input (it was written for log-likelihoods), hence the
minus sign; ``r_eff=1`` because variational draws are independent.

Constant log weights (q equal to the posterior up to the normalising constant, common in
conjugate tests) have no tail to fit: :func:`psis_khat` returns ``-inf`` for them instead of
raising. Weights whose spread is below ``1e-10`` (relative to their magnitude) count as constant.
(``-inf`` is also what a point mass gives: :func:`vidiv.diagnostics.diagnose` reads it as "q is
the posterior" only when log q is a density; see :mod:`vidiv.diagnostics.report`.)

Numerical guard. ArviZ fits the tail on :math:`w_s / \max_s w_s = \exp(\log w_s - \max \log w)`.
When the tail's log weights spread over more than ~700 nats (e.g. ``-chisquare(26) * 1e5``),
those ratios underflow to 0, the fit divides by zero and ArviZ returns the prior's value
(k-hat ~ 0.035: "good"). Such a tail is heavier than any Pareto fit can resolve (the k-hat
grows with the spread: 1.4 at spread ~1e1, 132 at ~1e3), so :func:`psis_log_weights` returns
``k-hat = +inf`` for it, with the raw self-normalised weights. A tail made of ties (the largest
weights take two or three distinct values, e.g. a discrete guide) has no Pareto shape either:
its k-hat is ``NaN`` ("undefined"), never a number that looks good.

Example
-------
>>> import numpy as np
>>> from vidiv.diagnostics import psis_khat
>>> rng = np.random.default_rng(0)
>>> z = 0.5 * rng.normal(size=2000)                 # q = N(0, 0.5^2) is narrower than p = N(0, 1)
>>> log_w = -0.5 * z**2 + 0.5 * (z / 0.5) ** 2      # log p - log q up to a constant
>>> psis_khat(log_w) > 0.7
True
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidArgumentError, NonFiniteError

__all__ = ["psis_khat", "psis_log_weights", "khat_threshold", "tail_status", "MIN_DRAWS"]

#: fewest draws for which a k-hat is computed (the Pareto tail needs at least 5 points, and
#: the tail is ~3 sqrt(S) long)
MIN_DRAWS = 10

_CONSTANT_TOL = 1e-10


def khat_threshold(num_draws: int) -> float:
    r"""Sample-size dependent k-hat threshold :math:`\min(1 - 1/\log_{10} S, 0.7)` used by ArviZ."""
    from ..errors import check_num_particles

    num_draws = check_num_particles(num_draws, minimum=0, name="num_draws")
    if num_draws <= 10:
        return 0.0
    return float(min(1.0 - 1.0 / math.log10(num_draws), 0.7))


def float_array(x, name: str) -> np.ndarray:
    """``x`` (numpy, torch or jax) as a float array; strings, objects or ragged lists raise
    :class:`~vidiv.errors.InvalidArgumentError` naming ``name``."""
    from .datatree import _to_numpy

    return _to_numpy(name, x).astype(float)


def _as_log_weights(log_w, name: str = "log_w") -> np.ndarray:
    lw = float_array(log_w, name)
    if lw.ndim == 2 and 1 in lw.shape:
        lw = lw.reshape(-1)
    if lw.ndim != 1:
        raise InvalidArgumentError(
            f"{name} must be one-dimensional (one log weight per draw), got shape {lw.shape}; "
            f"flatten chains and draws first, e.g. {name}.reshape(-1)."
        )
    if lw.shape[0] < MIN_DRAWS:
        raise InvalidArgumentError(
            f"{name} has {lw.shape[0]} draw(s); the Pareto k-hat needs at least {MIN_DRAWS} "
            "(and is only reliable with a few hundred): draw more samples from the guide, "
            "e.g. num_samples=1000."
        )
    if np.isnan(lw).any():
        raise NonFiniteError(
            f"{name} contain {int(np.isnan(lw).sum())} NaN value(s) out of {lw.size}: log p or "
            "log q is NaN at some guide draws. Check the data for NaN and the model for invalid "
            "parameter values (e.g. a negative scale) at the guide's draws."
        )
    if np.isposinf(lw).any():
        raise NonFiniteError(
            f"{name} contain +inf: log q is -inf (or log p is +inf) at some guide draws, so the "
            "guide proposes values it gives zero density. Check the guide's support and scales."
        )
    if np.isneginf(lw).all():
        raise NonFiniteError(
            f"all {name} are -inf: every guide draw lies outside the model's support. Make the "
            "guide's support match the model's (e.g. a positive site needs a positive guide)."
        )
    return lw


def _is_constant(lw: np.ndarray) -> bool:
    finite = lw[np.isfinite(lw)]
    if finite.size != lw.size:
        return False
    spread = float(np.max(finite) - np.min(finite))
    return spread <= _CONSTANT_TOL * max(1.0, float(np.max(np.abs(finite))))


def _tail_size(num_draws: int) -> int:
    # arviz-stats' rule for r_eff = 1 (Vehtari et al. 2024): min(S / 5, 3 sqrt(S))
    return int(np.floor(3 * num_draws**0.5)) if num_draws > 225 else num_draws // 5


def tail_status(log_w) -> str:
    """How the Pareto tail of finite log weights ``log_w`` (shape (S,)) can be fitted.

    ``"ok"``; ``"flat"`` (the largest weights are all equal: bounded weights, k-hat -inf);
    ``"ties"`` (fewer than 3/4 of the tail exceeds the cutoff: too few distinct weights for a
    Pareto fit, k-hat undefined); ``"underflow"`` (the tail spans more than double precision
    resolves relative to the largest weight: k-hat +inf).
    """
    lw = np.sort(np.asarray(log_w, dtype=float))
    m = _tail_size(lw.size)
    if m < 5:
        return "ok"
    tail, cutoff = lw[-m:], lw[-m - 1]
    if tail[-1] - tail[0] < np.finfo(float).tiny:
        return "flat"
    iq = int(m / 4 + 0.5) - 1  # the quartile ArviZ's fit divides by
    if tail[iq] <= cutoff:
        return "ties"
    top = tail[-1]
    exceed = np.exp(tail[iq] - top) - np.exp(cutoff - top)
    if not exceed >= np.finfo(float).tiny:
        return "underflow"
    return "ok"


def psis_log_weights(log_w) -> tuple[np.ndarray, float]:
    """Pareto-smoothed, self-normalised log weights and the k-hat of one set of draws.

    Parameters
    ----------
    log_w : array of shape (S,)
        ``log p(x, z_s) - log q(z_s)`` for ``z_s ~ q`` (any additive constant is irrelevant).

    Returns
    -------
    (log_weights, khat): the smoothed log weights (``logsumexp == 0``) and k-hat (``-inf`` for
    constant log weights, for which the smoothed weights are uniform; ``+inf`` when the tail
    underflows double precision and ``NaN`` for a tail of ties, both with the raw
    self-normalised weights).

    Examples
    --------
    >>> import numpy as np
    >>> lw = -np.random.default_rng(0).chisquare(26, 2000) * 1e5   # one draw carries all weight
    >>> psis_log_weights(lw)[1]
    inf
    """
    lw = _as_log_weights(log_w)
    if _is_constant(lw):
        return np.full(lw.shape, -math.log(lw.shape[0])), -math.inf
    from arviz_stats.base import array_stats

    # zero weights (log_w = -inf) stay zero; arviz-stats sees them as +inf "log-likelihoods"
    finite = np.isfinite(lw)
    if finite.sum() < MIN_DRAWS:
        raise InvalidArgumentError(
            f"only {int(finite.sum())} draw(s) have positive importance weight; the Pareto "
            f"k-hat needs at least {MIN_DRAWS}. The guide puts most draws outside the model's "
            "support: fix the guide's support or start it closer to the posterior."
        )
    # the raw self-normalised weights; zero-weight draws keep weight zero
    raw = np.full(lw.shape, -math.inf)
    raw[finite] = lw[finite] - np.logaddexp.reduce(lw[finite])
    status = tail_status(lw[finite])
    if status in ("underflow", "ties"):
        return raw, (math.inf if status == "underflow" else math.nan)
    try:
        with np.errstate(all="ignore"):
            smoothed, khat = array_stats.psislw(-lw[finite], r_eff=1.0)
    except ValueError as err:
        if "same" in str(err):  # every tail value identical: flat tail, bounded weights
            return raw, -math.inf  # (was uniform over all draws, zero-weight ones included)
        if "n_draws_tail" in str(err):  # < 25 draws: the tail fit needs >= 5 of them
            return raw, math.nan
        raise
    if not np.isfinite(khat):  # a degenerate fit the checks above did not foresee
        return raw, math.inf
    out = np.full(lw.shape, -math.inf)
    out[finite] = smoothed
    return out, float(khat)


def psis_khat(log_w) -> float:
    """Pareto k-hat of the importance ratios ``log_w = log p - log q`` (shape ``(S,)``).

    Equals ``arviz_stats.base.array_stats.psislw(-log_w, r_eff=1.0)[1]``; ``-inf`` for constant
    log weights (q equal to the posterior, or a point mass), ``+inf`` when the tail underflows
    double precision, ``NaN`` for a tail of ties or fewer than 25 draws. Raises
    :class:`~vidiv.errors.VidivError` for fewer than 10 draws, NaN or ``+inf`` entries, or
    all ``-inf``.
    """
    return psis_log_weights(log_w)[1]
