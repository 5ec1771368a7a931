"""Brute-force numpy oracles for the estimator tests (core and adapters)."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp


def vimco_signals(lw: np.ndarray, alpha: float) -> np.ndarray:
    """VIMCO learning signals ``L - L^(-k)`` of one batch element, one particle at a time:
    ``L^(-k)`` is the Renyi bound with ``lw[k]`` replaced by the mean of the others; a ``-inf``
    baseline (k is the only particle with positive weight) counts as 0 (plain REINFORCE)."""
    eps = 1.0 - alpha

    def bound(x):
        return (logsumexp(eps * x) - math.log(len(x))) / eps

    out = []
    for k in range(len(lw)):
        mod = np.array(lw, dtype=float)
        mod[k] = np.delete(lw, k).mean()
        base = bound(mod)
        out.append(bound(lw) - (base if np.isfinite(base) else 0.0))
    return np.array(out)
