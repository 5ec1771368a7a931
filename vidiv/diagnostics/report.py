r"""``diagnose(dt)``: is this variational approximation good enough, in numbers and in words.

The verdict follows ArviZ's PSIS thresholds (Vehtari et al. 2024) with S draws:

* ``"good"``: :math:`\hat k < 0.5`;
* ``"usable"``: :math:`0.5 \le \hat k < \min(1 - 1/\log_{10} S, 0.7)`;
* ``"do not trust"``: otherwise (with advice to draw more samples when only the sample-size
  threshold is missed, and to change the guide or objective when :math:`\hat k \ge 0.7`);
* ``"unavailable"``: the result has no ``log_q`` (particle methods): use
  :func:`vidiv.diagnostics.ksd` instead.

Example
-------
>>> report = diagnose(dt)              # doctest: +SKIP
>>> print(report)                      # doctest: +SKIP
>>> report.khat, report.verdict        # doctest: +SKIP
>>> report.to_dataframe()              # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

from ..errors import InvalidArgumentError
from .evidence import _fmt, evidence_summary

__all__ = ["Report", "diagnose", "verdict_for"]

_NAN = float("nan")


def _draws_needed(khat: float) -> int:
    # smallest S with 1 - 1/log10(S) > khat
    return int(math.floor(10 ** (1.0 / (1.0 - khat)))) + 1


def verdict_for(khat: float, num_draws: int) -> tuple[str, str]:
    """(verdict, advice in plain words) for a k-hat computed from ``num_draws`` draws."""
    from .psis import khat_threshold

    thr = khat_threshold(num_draws)
    if math.isnan(khat) and num_draws < 25:
        return "unavailable", (
            f"Only {num_draws} draws: the Pareto tail fit behind k-hat needs at least 25 "
            "(5 in the tail). Draw more samples from q (a few hundred or more)."
        )
    if math.isnan(khat):
        return "unavailable", (
            "No log q(z) for these draws (e.g. particles), so there are no importance weights: "
            "use vidiv.diagnostics.ksd with the model's scores to measure the fit."
        )
    if khat == -math.inf:
        return "good", (
            "The importance weights are constant: q equals the posterior (up to the "
            "normalising constant). Posterior summaries and the IS log Z are exact up to Monte "
            "Carlo error."
        )
    if khat < 0.5:
        return "good", (
            f"k-hat {khat:.2f} < 0.5: q covers the posterior, including its tails. Summaries from "
            "the draws and the IS estimate of log Z can be trusted."
        )
    if khat < thr:
        return "usable", (
            f"k-hat {khat:.2f} is in [0.5, {thr:.2f}): q is usable but rough. Prefer "
            "PSIS-reweighted estimates over raw draws from q and check them against a reference; "
            "a richer guide (e.g. full-rank) or a mass-covering objective (ChiSquaredVIS, "
            "AlphaDivergence with alpha < 1) would tighten the fit."
        )
    if khat < 0.7:
        return "do not trust", (
            f"k-hat {khat:.2f} is below 0.7 but above the threshold {thr:.2f} for S = "
            f"{num_draws} draws: the estimate is not reliable with so few draws. Draw more "
            f"(at least {_draws_needed(khat)}) and diagnose again."
        )
    return "do not trust", (
        f"k-hat {khat:.2f} >= 0.7: the importance weights have too heavy a tail, so q misses "
        "posterior mass (it is typically too narrow or misses correlations). Do not trust "
        "posterior summaries from q or its log Z estimate: use a richer guide (full-rank, flow), "
        "a mass-covering objective (ChiSquaredVIS, AlphaDivergence with alpha < 1), or MCMC."
    )


@dataclass(frozen=True)
class Report:
    """Numbers and verdict of :func:`diagnose`; every field is an attribute.

    ``sandwich_holds`` is 1 when ``elbo <= log_z_reference <= cubo`` (if a reference log Z was
    given) or ``elbo <= log_z <= cubo`` (the IS estimate; always true for finite estimates, by
    Jensen's inequality); ``sandwich_width = cubo - elbo`` is 0 only when q is the posterior.
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

    def _rows(self) -> list[tuple[str, str]]:
        ess_frac = self.is_ess / self.num_draws if self.num_draws else _NAN
        rows = [
            ("draws", str(self.num_draws)),
            ("Pareto k-hat", f"{_fmt(self.khat, 3)}  (good < 0.5, usable < "
                             f"{self.khat_threshold:.2f})"),
            ("IS-ESS", f"{self.is_ess:.1f}  ({100 * ess_frac:.1f}% of draws)"),
            ("ELBO", _fmt(self.elbo)),
            ("IS log Z", f"{_fmt(self.log_z)} +/- {_fmt(self.log_z_se)}"),
            ("CUBO (chi^2)", _fmt(self.cubo)),
        ]
        if not math.isnan(self.log_z_reference):
            rows.append(("reference log Z", _fmt(self.log_z_reference)))
        rows += [
            ("ELBO <= log Z <= CUBO", "holds" if self.sandwich_holds else "VIOLATED"),
            ("CUBO - ELBO", _fmt(self.sandwich_width)),
            ("verdict", self.verdict.upper()),
        ]
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


def diagnose(dt: xr.DataTree, log_z_reference: float | None = None) -> Report:
    """PSIS k-hat, IS-ESS, ELBO, IS log Z +/- s.e., CUBO, the evidence sandwich and a verdict.

    Parameters
    ----------
    dt : DataTree from ``to_datatree`` (needs ``sample_stats`` with ``log_p`` and ``log_q``;
        without ``log_q`` every number is NaN and the verdict is ``"unavailable"``).
    log_z_reference : float, optional
        An independent value of log p(x) (exact, or from another method) to check the sandwich
        ``ELBO <= log Z <= CUBO`` against.
    """
    if not isinstance(dt, xr.DataTree):
        raise InvalidArgumentError(
            f"diagnose expects an xarray.DataTree (from vidiv.pyro.to_datatree, "
            f"vidiv.numpyro.to_datatree or vidiv.diagnostics.to_datatree), got {type(dt).__name__}."
        )
    objective = str(dt.attrs.get("objective", "unknown"))
    backend = str(dt.attrs.get("backend", "unknown"))
    ref = _NAN if log_z_reference is None else float(log_z_reference)
    log_p, log_q = _flat(dt, "log_p"), _flat(dt, "log_q")
    if log_p is None or log_q is None:
        n = int(dt["posterior"].sizes.get("draw", 0)) if "posterior" in dt.children else 0
        verdict, message = verdict_for(_NAN, n)
        return Report(n, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, ref, False, _NAN, verdict,
                      message, objective, backend)
    s = evidence_summary(log_p, log_q)
    target = s.log_z if math.isnan(ref) else ref
    holds = bool(s.elbo <= target <= s.cubo)
    verdict, message = verdict_for(s.khat, s.num_draws)
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
    )
