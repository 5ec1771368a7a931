"""Diagnostics for variational results, handed to ArviZ (arviz-base / arviz-stats DataTree API).

This is the only part of vidiv that imports ArviZ; it never imports torch or jax (the adapters
``vidiv.pyro`` / ``vidiv.numpyro`` convert their arrays to numpy before calling it).

=========================  =====================================================================
``to_datatree``            draws, log p, log q, log-likelihood, data, loss trace -> DataTree
``diagnose`` / ``Report``  PSIS k-hat, IS-ESS, ELBO, IS log Z +/- s.e., CUBO, sandwich, verdict
``psis_khat``              Pareto k-hat of a vector of log importance ratios
``reweighted_summary``     PSIS-reweighted means/sds next to the raw ones, per component
``compare_to_reference``   per-component error against reference draws (e.g. NUTS)
``ksd``                    kernel Stein discrepancy from samples and model scores
``plot``                   loss / k-hat trace and marginals (needs the ``plots`` extra)
``FitResult``, ``EarlyStop``  the training monitor's result and plateau rule
=========================  =====================================================================

Every function that takes a result refuses anything but a DataTree with a message that says how
to build one; a ``"/"`` in a site or plate name is stored as ``"."`` and the reports speak the
model's names again (:mod:`vidiv.diagnostics.names`).
"""

from __future__ import annotations

from typing import Any

from .datatree import guide_attrs, netcdf_safe_attrs, to_datatree
from .evidence import EvidenceSummary, evidence_summary
from .ksd import ksd
from .monitor import EarlyStop, FitResult
from .psis import khat_threshold, psis_khat, psis_log_weights
from .reference import compare_to_reference
from .report import Report, diagnose
from .reweight import reweighted_summary

__all__ = [
    "to_datatree",
    "diagnose",
    "Report",
    "psis_khat",
    "psis_log_weights",
    "khat_threshold",
    "evidence_summary",
    "EvidenceSummary",
    "compare_to_reference",
    "reweighted_summary",
    "ksd",
    "plot",
    "FitResult",
    "EarlyStop",
    "netcdf_safe_attrs",
    "guide_attrs",
]


def plot(*args: Any, **kwargs: Any):
    """See :func:`vidiv.diagnostics.plots.plot` (imports arviz-plots and matplotlib lazily)."""
    from .plots import plot as _plot

    return _plot(*args, **kwargs)
