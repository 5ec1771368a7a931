r"""``diagnose(dt)``: is this variational approximation good enough, in numbers and in words.

The verdict is a promise about the raw draws from q: a fit called ``"good"`` or ``"usable"`` has
every parameter's mean within 0.25 posterior sd and its sd within [0.8, 1.25] of the posterior's.
It reads every number the report prints -- PSIS k-hat (Vehtari et al. 2024), IS-ESS, the sandwich
width CUBO - ELBO, the share of zero weights, the raw vs PSIS-reweighted moments -- and whether q
is a point mass; the rule and the reasons for its thresholds are in
:mod:`vidiv.diagnostics.verdict`. Verdicts: ``"good"``, ``"usable"``, ``"use reweighted"`` (the raw
draws are off, the PSIS-reweighted moments of :func:`~vidiv.diagnostics.reweighted_summary` are
not), ``"point estimate"`` (Delta / AutoDelta or identical draws), ``"do not trust"`` and
``"unavailable"`` (no log q: use :func:`vidiv.diagnostics.ksd`).

Example
-------
>>> import numpy as np
>>> from vidiv.diagnostics import diagnose, to_datatree
>>> rng = np.random.default_rng(0)
>>> z = rng.normal(size=1000)                        # q = N(0, 1) is the posterior N(0, 1)
>>> report = diagnose(to_datatree({"z": z}, log_p=-0.5 * z**2, log_q=-0.5 * z**2))
>>> report.verdict
'good'
>>> lw = -rng.chisquare(26, 2000) * 1e5              # one draw holds all the weight
>>> diagnose(to_datatree({"z": rng.normal(size=2000)}, log_p=lw, log_q=np.zeros(2000))).verdict
'do not trust'
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

from ..errors import InvalidArgumentError
from .evidence import _fmt, evidence_summary
from .names import original_names, require_tree
from .verdict import MEAN_TOL, MIN_WEIGHTED, SD_RATIO, Evidence, verdict_for

__all__ = ["Report", "diagnose", "verdict_for"]

_NAN = float("nan")


@dataclass(frozen=True)
class Report:
    """Numbers and verdict of :func:`diagnose`; every field is an attribute.

    ``sandwich_holds`` is 1 when ``elbo <= log_z_reference <= cubo`` (if a reference log Z was
    given) or ``elbo <= log_z <= cubo`` (the IS estimate; always true for finite estimates, by
    Jensen's inequality); ``sandwich_width = cubo - elbo`` is 0 only when q is the posterior.
    ``max_mean_shift`` / ``worst_sd_ratio`` / ``worst_parameter``: the largest disagreement of
    the raw draws with their PSIS-reweighted moments (see
    :func:`vidiv.diagnostics.reweighted_summary`); ``point_mass_sites``: comma-separated latent
    sites where q is a point mass.
    """

    num_draws: int
    khat: float
    khat_threshold: float
    is_ess: float
    elbo: float
    log_z: float
    log_z_se: float
    cubo: float
    log_z_reference: float
    sandwich_holds: bool
    sandwich_width: float
    verdict: str
    message: str
    objective: str = "unknown"
    backend: str = "unknown"
    num_weighted: int = 0
    zero_weight_share: float = 0.0
    max_mean_shift: float = _NAN
    worst_sd_ratio: float = _NAN
    worst_parameter: str = ""
    point_mass_sites: str = ""

    def _rows(self) -> list[tuple[str, str]]:
        ess_frac = self.is_ess / self.num_draws if self.num_draws else _NAN
        if self.verdict == "point estimate":
            na = "n/a: q is a point mass (log q is not a density)"
            return [("draws", str(self.num_draws)), ("point mass at", self.point_mass_sites),
                    ("Pareto k-hat", na), ("IS-ESS", na), ("IS log Z", na),
                    ("verdict", self.verdict.upper())]
        khat = _fmt(self.khat, 3)
        if self.khat == math.inf:
            khat = "inf  (tail beyond double precision: one draw holds the weight)"
        elif math.isnan(self.khat) and not math.isnan(self.is_ess):
            khat = "undefined  (too few draws, or the largest weights are ties)"
        else:
            khat += f"  (good < 0.5, usable < {self.khat_threshold:.2f})"
        rows = [
            ("draws", str(self.num_draws)),
            ("Pareto k-hat", khat),
            ("IS-ESS", f"{self.is_ess:.1f}  ({100 * ess_frac:.1f}% of draws)"),
        ]
        if self.zero_weight_share > 0:
            rows.append(("zero-weight draws", f"{100 * self.zero_weight_share:.1f}%  "
                         f"({self.num_weighted} of {self.num_draws} carry weight)"))
        rows += [
            ("ELBO", _fmt(self.elbo)),
            ("IS log Z", f"{_fmt(self.log_z)} +/- {_fmt(self.log_z_se)}"),
            ("CUBO (chi^2)", _fmt(self.cubo)),
        ]
        if not math.isnan(self.log_z_reference):
            rows.append(("reference log Z", _fmt(self.log_z_reference)))
        rows += [
            ("ELBO <= log Z <= CUBO", "holds" if self.sandwich_holds else "VIOLATED"),
            ("CUBO - ELBO", _fmt(self.sandwich_width)),
        ]
        if not math.isnan(self.max_mean_shift):
            rows.append(("raw vs PSIS moments",
                         f"mean shift <= {self.max_mean_shift:.2f} sd, worst sd ratio "
                         f"{self.worst_sd_ratio:.2f}  (tolerance {MEAN_TOL}, "
                         f"[{SD_RATIO[0]}, {SD_RATIO[1]}]; worst: {self.worst_parameter})"))
        rows.append(("verdict", self.verdict.upper()))
        return rows

    def __str__(self) -> str:
        rows = self._rows()
        width = max(len(k) for k, _ in rows)
        head = f"vidiv diagnostics (objective: {self.objective}, backend: {self.backend})"
        lines = [head, "-" * len(head)]
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        lines += ["", self.message]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = {"good": "#1a7f37", "usable": "#9a6700"}.get(self.verdict, "#cf222e")
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self._rows()
        )
        return (
            "<div><table><caption>vidiv diagnostics "
            f"({html.escape(self.objective)}, {html.escape(self.backend)})</caption>{cells}"
            f"</table><p style='color:{colour}'><b>{html.escape(self.verdict)}</b>: "
            f"{html.escape(self.message)}</p></div>"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def to_dataframe(self, name: str | None = None):
        """One-row ``pandas.DataFrame`` (index ``name`` or the objective), one column per field;
        ``pandas.concat`` several to compare runs."""
        import pandas as pd

        return pd.DataFrame([self.to_dict()], index=[name or self.objective])


def _flat(dt: xr.DataTree, var: str) -> np.ndarray | None:
    if "sample_stats" not in dt.children or var not in dt["sample_stats"].data_vars:
        return None
    return np.asarray(dt["sample_stats"][var].values, dtype=float).reshape(-1)


def _sites_attr(dt: xr.DataTree, key: str) -> tuple[str, ...] | None:
    value = dt.attrs.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(s for s in value.split(",") if s)
    return tuple(str(s) for s in np.atleast_1d(value))


def _degenerate_sites(dt: xr.DataTree) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """(point-mass sites, other collapsed continuous sites, log q is a density)."""
    discrete = set(_sites_attr(dt, "discrete_sites") or ())
    deterministic = set(_sites_attr(dt, "deterministic_sites") or ())
    recorded = _sites_attr(dt, "point_mass_sites")
    post = dt["posterior"] if "posterior" in dt.children else None
    continuous, identical = [], []
    for name, da in (post.data_vars.items() if post is not None else ()):
        name = str(name)
        arr = np.asarray(da.values)
        if arr.dtype.kind in "biu":
            discrete.add(name)
        if name in discrete or name in deterministic or arr.dtype.kind not in "f":
            continue
        continuous.append(name)
        flat = arr.reshape(-1, *arr.shape[2:]) if arr.ndim >= 2 else arr.reshape(-1)
        if flat.shape[0] > 1 and np.all(flat == flat[:1]):
            identical.append(name)
    point_mass = list(recorded or ())
    if continuous and len(identical) == len(continuous):  # every continuous site is frozen
        point_mass += [s for s in identical if s not in point_mass]
    collapsed = tuple(s for s in identical if s not in point_mass)
    density = bool(int(dt.attrs.get("log_q_density", 1))) and not discrete and not point_mass
    model_name = original_names(dt)  # report the model's names ("a/b", stored as "a.b")
    return (tuple(model_name.get(s, s) for s in point_mass),
            tuple(model_name.get(s, s) for s in collapsed), density)


def _too_few(dt, lw, ref, objective, backend, ev_sites) -> Report:
    """Report for fewer than 10 draws, or fewer than 10 with positive weight."""
    from ..estimators import weights as _weights

    S = lw.shape[0]
    finite = np.isfinite(lw)
    with np.errstate(all="ignore"):
        if finite.any():
            lz = _weights.log_z(lw)
            log_z, se = float(lz.log_z), float(lz.se)
            ess = float(_weights.is_ess(lw))
            cubo = float(0.5 * (np.logaddexp.reduce(2 * lw) - math.log(S)))
        else:
            log_z, se, ess, cubo = -math.inf, _NAN, 0.0, -math.inf
        elbo = float(np.mean(lw))
    pm, collapsed, density = ev_sites
    ev = Evidence(is_ess=ess, num_weighted=int(finite.sum()),
                  zero_weight_share=float(1 - finite.mean()), point_mass_sites=pm,
                  identical_sites=collapsed, log_q_density=density)
    verdict, message = verdict_for(_NAN, S, ev)
    return Report(S, _NAN, _NAN, ess, elbo, log_z, se, cubo, ref, False, cubo - elbo, verdict,
                  message, objective, backend, num_weighted=int(finite.sum()),
                  zero_weight_share=float(1 - finite.mean()), point_mass_sites=",".join(pm))


def _reference_log_z(value) -> float:
    """``log_z_reference`` as a float (NaN for ``None``); refuses anything but a finite number."""
    if value is None:
        return _NAN
    try:
        if isinstance(value, bool | str | bytes):
            raise TypeError
        ref = float(value)
    except (TypeError, ValueError):
        ref = None
    if ref is None or not math.isfinite(ref):
        raise InvalidArgumentError(
            f"log_z_reference must be a finite number (an independent value of log p(x)) or "
            f"None, got {value!r}; leave it out when no reference value is known."
        )
    return ref


def diagnose(dt: xr.DataTree, log_z_reference: float | None = None) -> Report:
    """PSIS k-hat, IS-ESS, ELBO, IS log Z +/- s.e., CUBO, the evidence sandwich, the raw vs
    PSIS-reweighted moments and a verdict (rule: :mod:`vidiv.diagnostics.verdict`).

    Parameters
    ----------
    dt : DataTree from ``to_datatree`` (needs ``sample_stats`` with ``log_p`` and ``log_q``;
        without ``log_q`` every number is NaN and the verdict is ``"unavailable"``). The root
        attrs ``point_mass_sites`` / ``log_q_density`` that the adapters' ``to_datatree`` record
        mark point-mass (Delta) guides; draws that are all identical are detected here too.
    log_z_reference : float, optional
        An independent value of log p(x) (exact, or from another method) to check the sandwich
        ``ELBO <= log Z <= CUBO`` against.

    Returns
    -------
    Report. Never raises for too few (weighted) draws: that is a ``"do not trust"`` report.
    Sites are named as in the model (``"enc/z"``, stored as ``"enc.z"``: see
    :mod:`vidiv.diagnostics.names`).

    Raises
    ------
    NonFiniteError
        for NaN or +inf log weights, or NaN / +-inf posterior draws of positive weight (a bug
        in the model or guide, not a verdict).
    InvalidArgumentError
        when ``dt`` is not a DataTree with a posterior group (the message says how to build
        one) or ``log_z_reference`` is not a finite number.
    """
    from .psis import psis_log_weights
    from .reweight import _components, moment_check
    from .verdict import MARGIN_Z, MARGIN_Z_SD

    require_tree(dt, "diagnose")
    objective = str(dt.attrs.get("objective", "unknown"))
    backend = str(dt.attrs.get("backend", "unknown"))
    ref = _reference_log_z(log_z_reference)
    log_p, log_q = _flat(dt, "log_p"), _flat(dt, "log_q")
    if log_p is None or log_q is None:
        n = int(dt["posterior"].sizes.get("draw", 0))
        verdict, message = verdict_for(_NAN, n)
        return Report(n, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, ref, False, _NAN, verdict,
                      message, objective, backend)
    sites = _degenerate_sites(dt)
    if log_p.shape == log_q.shape:
        with np.errstate(invalid="ignore"):
            lw = log_p - log_q
        clean = not (np.isnan(lw).any() or np.isposinf(lw).any())
        if clean and (lw.size < MIN_WEIGHTED or np.isfinite(lw).sum() < MIN_WEIGHTED):
            return _too_few(dt, lw, ref, objective, backend, sites)
    s = evidence_summary(log_p, log_q)
    target = s.log_z if math.isnan(ref) else ref
    holds = bool(s.elbo <= target <= s.cubo)
    log_w = psis_log_weights(log_p - log_q)[0]
    names, theta = _components(dt, log_w)
    mc = moment_check(names, theta, log_w, MEAN_TOL, SD_RATIO, MARGIN_Z, MARGIN_Z_SD)
    pm, collapsed, density = sites
    ev = Evidence(is_ess=s.is_ess, sandwich_width=s.cubo - s.elbo, num_weighted=s.num_weighted,
                  zero_weight_share=s.zero_weight_share, point_mass_sites=pm,
                  identical_sites=collapsed, log_q_density=density, moment_excess=mc.excess,
                  max_mean_shift=mc.max_mean_shift, worst_sd_ratio=mc.worst_sd_ratio,
                  worst_parameter=mc.worst_parameter)
    verdict, message = verdict_for(s.khat, s.num_draws, ev)
    if not math.isnan(ref) and not holds:
        message += (
            f" The reference log Z {ref:.3f} lies outside [ELBO, CUBO] = [{s.elbo:.3f}, "
            f"{s.cubo:.3f}]: either the reference is for a different model (normalising "
            "constants) or the CUBO estimate is biased low by heavy-tailed weights."
        )
    return Report(
        num_draws=s.num_draws,
        khat=s.khat,
        khat_threshold=s.khat_threshold,
        is_ess=s.is_ess,
        elbo=s.elbo,
        log_z=s.log_z,
        log_z_se=s.log_z_se,
        cubo=s.cubo,
        log_z_reference=ref,
        sandwich_holds=holds,
        sandwich_width=s.cubo - s.elbo,
        verdict=verdict,
        message=message,
        objective=objective,
        backend=backend,
        num_weighted=s.num_weighted,
        zero_weight_share=s.zero_weight_share,
        max_mean_shift=mc.max_mean_shift,
        worst_sd_ratio=mc.worst_sd_ratio,
        worst_parameter=mc.worst_parameter,
        point_mass_sites=",".join(pm),
    )
