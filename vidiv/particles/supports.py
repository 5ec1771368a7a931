"""Choose a mirror map from a site's support (torch / Pyro and NumPyro constraints alike).

Both hosts name their constraint classes the same way (``_Simplex``, ``_GreaterThan``,
``_Interval``, ``_Real``, ``_IndependentConstraint`` ...), so one duck-typed lookup serves both
adapters; no framework is imported here.

Example:
    >>> from torch.distributions import constraints
    >>> map_for_support(constraints.simplex, "w")
    SimplexEntropic()
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedSupportError
from .mirror import (
    SUPPORTED_SUPPORTS,
    Identity,
    MirrorMap,
    OrderedEntropic,
    PositiveEntropic,
    SimplexEntropic,
    UnitIntervalEntropic,
)

__all__ = ["map_for_support"]


def _all_equal(bound: Any, value: float) -> bool:
    try:
        arr = np.asarray(bound.detach().cpu() if hasattr(bound, "detach") else bound, dtype=float)
    except (TypeError, ValueError):
        return False
    return bool(arr.size > 0 and np.all(arr == value))


def map_for_support(support: Any, site: str) -> MirrorMap:
    """The mirror map for ``support``; raises :class:`UnsupportedSupportError` naming ``site``.

    ``independent(c, n)`` is unwrapped (elementwise maps act on every coordinate).
    """
    base = support
    while hasattr(base, "base_constraint"):
        base = base.base_constraint
    kind = type(base).__name__.lstrip("_")
    if kind == "Simplex":
        return SimplexEntropic()
    if kind in {"Real", "RealVector"}:
        return Identity()
    if kind in {"OrderedVector", "PositiveOrderedVector"}:
        return OrderedEntropic(positive=kind == "PositiveOrderedVector")
    if kind in {"Positive", "GreaterThan", "GreaterThanEq", "Nonnegative"}:
        if _all_equal(getattr(base, "lower_bound", 0.0), 0.0):
            return PositiveEntropic()
    if kind in {"UnitInterval", "Interval"}:
        if _all_equal(getattr(base, "lower_bound", None), 0.0) and _all_equal(
            getattr(base, "upper_bound", None), 1.0
        ):
            return UnitIntervalEntropic()
    listed = "; ".join(SUPPORTED_SUPPORTS)
    raise UnsupportedSupportError(
        f"MirroredSVGD has no mirror map for latent site {site!r} with support {support!r}. "
        f"Supported supports: {listed}. Discrete sites cannot be moved by Stein updates; for "
        "other continuous supports sample an unconstrained or supported variable and transform "
        "it with a deterministic site."
    )
