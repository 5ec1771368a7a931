r"""PSIS-reweighted posterior moments, and how far the raw draws from q are from them.

With draws :math:`z_s \sim q` and Pareto-smoothed, self-normalised weights :math:`\bar w_s`
(:func:`vidiv.diagnostics.psis_log_weights` of :math:`\log p(x, z_s) - \log q(z_s)`), each scalar
component :math:`\theta` of the posterior has

* raw moments :math:`m = \frac1S\sum_s \theta_s`, :math:`s^2 = \frac1{S-1}\sum_s(\theta_s - m)^2`;
* PSIS-reweighted moments :math:`\mu = \sum_s \bar w_s \theta_s`,
  :math:`\sigma^2 = \sum_s \bar w_s (\theta_s - \mu)^2 / (1 - \sum_s \bar w_s^2)` (self-normalised
  importance sampling, with the reliability-weights correction that makes equal weights give
  the ``ddof=1`` sd;
  consistent for the posterior moments whenever :math:`\hat k < 0.7`: Vehtari et al. 2024);
* the disagreement ``mean_shift`` :math:`= |m - \mu| / \sigma` and ``sd_ratio``
  :math:`= s / \sigma`, the same scale as :func:`vidiv.diagnostics.compare_to_reference` uses
  against reference draws;
* their delta-method Monte Carlo standard errors (Owen 2013, ch. 9):
  :math:`\mathrm{se}(\mu)^2 \approx \sum_s \bar w_s^2 (\theta_s - \mu)^2` and
  :math:`\mathrm{se}(\log\sigma)^2 \approx \frac14 \sum_s \bar w_s^2
  ((\theta_s - \mu)^2 - \sigma^2)^2 / \sigma^4`, reported as ``mean_shift_se``
  :math:`= \mathrm{se}(\mu)/\sigma` and ``log_sd_ratio_se``.

Draws with zero weight (outside the model's support) count in the raw moments and not in the
reweighted ones.

Example
-------
>>> import numpy as np
>>> from vidiv.diagnostics import to_datatree, reweighted_summary
>>> rng = np.random.default_rng(0)
>>> z = 3.0 * rng.normal(size=4000)                  # q = N(0, 3^2), posterior N(1, 1)
>>> log_q = -0.5 * (z / 3.0) ** 2 - np.log(3.0)
>>> dt = to_datatree({"z": z}, log_p=-0.5 * (z - 1.0) ** 2, log_q=log_q)
>>> row = reweighted_summary(dt).loc["z"]
>>> [round(float(row[c]), 1) for c in ("mean_psis", "sd_psis", "sd_ratio")]
[1.0, 1.0, 3.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import InvalidArgumentError
from .names import require_tree

__all__ = ["reweighted_summary", "MomentCheck", "moment_check"]


def _components(dt: xr.DataTree, log_w: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
    """Component names and a (S, n_components) float matrix of the posterior draws.

    With the draws' log weights ``log_w``, raise :class:`~vidiv.errors.NonFiniteError` when a
    draw of positive weight holds NaN or +-inf (zero-weight draws may hold impossible values).
    """
    from .reference import _component_names, _draws_from_tree, check_finite_draws

    draws = _draws_from_tree(dt, "dt")
    if log_w is not None:
        keep = np.isfinite(np.asarray(log_w, dtype=float).reshape(-1))
        check_finite_draws(
            {k: v[keep] if v.shape[0] == keep.size else v for k, v in draws.items()},
            "posterior (at draws of positive importance weight)",
            "The guide or a deterministic site produced invalid values: check the guide's "
            "scales and support, or drop the variable from the tree first, e.g. "
            "dt['posterior'] = dt['posterior'].to_dataset().drop_vars(name).",
        )
    names, cols = [], []
    for name, arr in draws.items():
        if arr.dtype.kind not in "biuf":
            continue
        flat = arr.reshape(arr.shape[0], -1).astype(float)
        names += _component_names(name, arr.shape[1:])
        cols.append(flat)
    if not cols:
        return [], np.zeros((0, 0))
    return names, np.concatenate(cols, axis=1)


def _log_weights(dt: xr.DataTree) -> np.ndarray:
    from .psis import psis_log_weights

    stats = dt["sample_stats"] if "sample_stats" in dt.children else None
    if stats is None or "log_p" not in stats.data_vars or "log_q" not in stats.data_vars:
        raise InvalidArgumentError(
            "reweighting needs sample_stats log_p and log_q (importance weights); this result has "
            "no log q (e.g. particles): there is nothing to reweight with."
        )
    with np.errstate(invalid="ignore"):
        lw = np.asarray(stats["log_p"].values, float) - np.asarray(stats["log_q"].values, float)
    return psis_log_weights(lw.reshape(-1))[0]


def _table(theta: np.ndarray, log_w: np.ndarray) -> dict[str, np.ndarray]:
    S = theta.shape[0]
    w = np.exp(log_w)[:, None]
    ok = w[:, 0] > 0
    with np.errstate(all="ignore"):
        mean = theta.mean(axis=0)
        sd = theta.std(axis=0, ddof=1) if S > 1 else np.full(theta.shape[1], np.nan)
        th = np.where(ok[:, None], theta, 0.0)  # zero-weight draws may hold impossible values
        mu = (w * th).sum(axis=0)
        dev2 = np.where(ok[:, None], (th - mu) ** 2, 0.0)
        var = (w * dev2).sum(axis=0) / max(1.0 - float((w**2).sum()), 1e-300)
        sigma = np.sqrt(var)
        se_mu = np.sqrt((w**2 * dev2).sum(axis=0))
        se_log_sigma = 0.5 * np.sqrt((w**2 * np.where(ok[:, None], (dev2 - var) ** 2, 0.0))
                                     .sum(axis=0)) / var
        shift = np.abs(mean - mu) / sigma
        ratio = sd / sigma
        shift_se = se_mu / sigma
    same = (sigma == 0) & (np.nan_to_num(sd) == 0)  # constant component: no disagreement
    shift = np.where(same, 0.0, shift)
    ratio = np.where(same, 1.0, ratio)
    return {"mean": mean, "sd": sd, "mean_psis": mu, "sd_psis": sigma, "mean_shift": shift,
            "sd_ratio": ratio, "mean_shift_se": np.where(same, 0.0, shift_se),
            "log_sd_ratio_se": np.where(same, 0.0, se_log_sigma)}


def reweighted_summary(dt: xr.DataTree):
    """PSIS-reweighted posterior means and sds next to the raw ones, per scalar component.

    Parameters
    ----------
    dt : DataTree from ``to_datatree`` with ``sample_stats`` ``log_p`` and ``log_q``.

    Returns
    -------
    pandas.DataFrame indexed by component (``theta[0]``, ...), columns ``mean, sd`` (raw draws
    from q), ``mean_psis, sd_psis`` (PSIS-reweighted: use these when ``diagnose`` says "use
    reweighted"), ``mean_shift = |mean - mean_psis| / sd_psis``, ``sd_ratio = sd / sd_psis`` and
    their Monte Carlo standard errors ``mean_shift_se``, ``log_sd_ratio_se`` (see the module
    docstring for the formulas). The reweighted moments are reliable only when k-hat < 0.7.
    Components carry the model's names (``"enc/z[0]"`` for a site stored as ``"enc.z"``).

    Raises
    ------
    NonFiniteError
        for NaN or +inf log weights, or NaN / +-inf draws of positive weight (naming the
        variable and the number of such draws).
    InvalidArgumentError
        for a ``dt`` that is not a DataTree with a posterior, or without ``log_q``.
    """
    import pandas as pd

    require_tree(dt, "reweighted_summary")
    log_w = _log_weights(dt)
    names, theta = _components(dt, log_w)
    table = _table(theta, log_w)
    return pd.DataFrame(table, index=pd.Index(names, name="parameter"))


@dataclass(frozen=True)
class MomentCheck:
    """Worst raw-vs-reweighted disagreement over the components (see :func:`moment_check`)."""

    max_mean_shift: float  # max_j |m_j - mu_j| / sigma_j
    mean_shift_se: float  # its Monte Carlo s.e.
    worst_sd_ratio: float  # s_j / sigma_j furthest from 1 (on the log scale)
    log_sd_ratio_se: float
    worst_parameter: str  # the component with the largest excess over the tolerances
    excess: float  # > 0: beyond the tolerance (in units of the tolerance), with the margin


def moment_check(names, theta, log_w, mean_tol: float, sd_range: tuple[float, float],
                 z: float, z_sd: float | None = None) -> MomentCheck:
    """Compare raw and PSIS-reweighted moments; ``excess > 0`` when some component's
    ``mean_shift + z se`` exceeds ``mean_tol`` or ``sd_ratio`` (widened by ``z_sd`` s.e. on the
    log scale; ``z`` when not given) leaves ``sd_range``."""
    z_sd = z if z_sd is None else z_sd
    if theta.size == 0:
        return MomentCheck(0.0, 0.0, 1.0, 0.0, "", -math.inf)
    t = _table(theta, log_w)
    lo, hi = math.log(sd_range[0]), math.log(sd_range[1])
    with np.errstate(all="ignore"):
        log_r = np.log(t["sd_ratio"])
        ex_mean = (t["mean_shift"] + z * t["mean_shift_se"]) / mean_tol - 1.0
        ex_sd = np.maximum((log_r + z_sd * t["log_sd_ratio_se"]) / hi,
                           (log_r - z_sd * t["log_sd_ratio_se"]) / lo) - 1.0
    excess = np.where(np.isnan(ex_mean), np.inf, ex_mean)
    excess = np.maximum(excess, np.where(np.isnan(ex_sd), np.inf, ex_sd))
    j = int(np.argmax(excess))
    jm = int(np.nanargmax(np.where(np.isfinite(t["mean_shift"]), t["mean_shift"], np.inf)))
    js = int(np.nanargmax(np.where(np.isfinite(log_r), np.abs(log_r), np.inf)))
    return MomentCheck(
        max_mean_shift=float(t["mean_shift"][jm]),
        mean_shift_se=float(t["mean_shift_se"][jm]),
        worst_sd_ratio=float(t["sd_ratio"][js]),
        log_sd_ratio_se=float(t["log_sd_ratio_se"][js]),
        worst_parameter=str(names[j]),
        excess=float(excess[j]),
    )
