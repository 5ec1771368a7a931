r"""Self-normalised importance weights, importance-sampling ESS and the IS estimate of log Z.

Example
-------
>>> import numpy as np
>>> from vidiv.estimators import weights
>>> float(weights.is_ess(np.zeros(100)))
100.0
"""

from __future__ import annotations

from typing import NamedTuple

from .._backend import Array, log_num, logsumexp, namespace, softmax

__all__ = ["normalized", "is_ess", "log_z", "LogZ"]


def normalized(log_w: Array, axis: int = 0) -> Array:
    r"""Self-normalised weights :math:`\bar w_s = w_s / \sum_t w_t` (softmax of ``log_w``)."""
    return softmax(log_w, axis=axis)


def is_ess(log_w: Array, axis: int = 0) -> Array:
    r"""Importance-sampling effective sample size :math:`1/\sum_s \bar w_s^2` (Kong 1992),
    between 1 (one particle holds all the weight) and S (equal weights)."""
    xp = namespace(log_w)
    lw = log_w - logsumexp(log_w, axis=axis, keepdims=True)
    return xp.exp(-logsumexp(2.0 * lw, axis=axis))


class LogZ(NamedTuple):
    """IS estimate of ``log p(x)`` and its delta-method standard error."""

    log_z: Array
    se: Array


def log_z(log_w: Array, axis: int = 0) -> LogZ:
    r"""IS estimate :math:`\log\hat Z = \log\frac1S\sum_s w_s` with standard error
    :math:`\mathrm{se} = \frac{\mathrm{sd}(w)}{\sqrt S\,\bar w}` (delta method on
    :math:`\log\hat Z`; computed on max-shifted weights, so it never overflows)."""
    xp = namespace(log_w)
    S = log_w.shape[axis]
    value = logsumexp(log_w, axis=axis) - log_num(S)
    shift = xp.max(log_w, axis=axis, keepdims=True)
    shift = xp.where(xp.isfinite(shift), shift, 0.0)
    w = xp.exp(log_w - shift)
    mean = xp.mean(w, axis=axis)
    if S > 1:
        var = xp.sum((w - xp.expand_dims(mean, axis=axis)) ** 2, axis=axis) / (S - 1)
        se = xp.sqrt(var / S) / mean
    else:
        se = xp.full_like(mean, float("inf"))
    return LogZ(value, se)
