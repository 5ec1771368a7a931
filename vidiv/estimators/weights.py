r"""Self-normalised importance weights, importance-sampling ESS and the IS estimate of log Z.

Example
-------
>>> import numpy as np
>>> from vidiv.estimators import weights
>>> round(float(weights.is_ess(np.zeros(100))), 9)
100.0
"""

from __future__ import annotations

from typing import NamedTuple

from .._backend import Array, log_num, namespace, softmax, stop_gradient
from ._checks import check_log_weights
from ._math import lse, sqrt0

__all__ = ["normalized", "is_ess", "log_z", "LogZ"]

# Bad input, for every function here: NaN or +inf log weights, or a slice along ``axis`` whose
# log weights are all -inf, raise NonFiniteError (a -inf entry otherwise has weight 0). Under
# jax.jit nothing is raised and those slices give NaN (``log_z``: -inf with a NaN ``se``).


def normalized(log_w: Array, axis: int = 0) -> Array:
    r"""Self-normalised weights :math:`\bar w_s = w_s / \sum_t w_t` (softmax of ``log_w``).

    NaN / ``+inf`` / all ``-inf`` along ``axis`` raise :class:`~vidiv.errors.NonFiniteError`.
    """
    check_log_weights(log_w, "normalized: log weights", axis=axis)
    return softmax(log_w, axis=axis)


def is_ess(log_w: Array, axis: int = 0) -> Array:
    r"""Importance-sampling effective sample size :math:`1/\sum_s \bar w_s^2` (Kong 1992),
    between 1 (one particle holds all the weight) and S (equal weights), computed as
    :math:`\exp(-\log\sum_s e^{2(\log w_s - \log\sum_t w_t)})` (no overflow).

    NaN / ``+inf`` / all ``-inf`` along ``axis`` raise :class:`~vidiv.errors.NonFiniteError`
    (under ``jax.jit``: NaN); a ``-inf`` entry is a zero weight.
    """
    check_log_weights(log_w, "is_ess: log weights", axis=axis)
    xp = namespace(log_w)
    lw = log_w - lse(log_w, axis=axis, keepdims=True)
    return xp.exp(-lse(2.0 * lw, axis=axis))


class LogZ(NamedTuple):
    """IS estimate of ``log p(x)`` and its delta-method standard error."""

    log_z: Array
    se: Array


def log_z(log_w: Array, axis: int = 0) -> LogZ:
    r"""IS estimate :math:`\log\hat Z = \log\frac1S\sum_s w_s` with standard error
    :math:`\mathrm{se} = \frac{\mathrm{sd}(w)}{\sqrt S\,\bar w}` (delta method on
    :math:`\log\hat Z`; computed on max-shifted weights, so it never overflows).

    Equal weights give ``se = 0`` with a zero gradient (the square root is taken only where the
    variance is positive; :math:`\sqrt{\cdot}` has an infinite derivative at 0). One particle:
    ``se = inf``. NaN / ``+inf`` / all ``-inf`` along ``axis`` raise
    :class:`~vidiv.errors.NonFiniteError` (under ``jax.jit``: ``log_z`` NaN or ``-inf``, ``se``
    NaN).
    """
    check_log_weights(log_w, "log_z: log weights", axis=axis)
    xp = namespace(log_w)
    S = log_w.shape[axis]
    value = lse(log_w, axis=axis) - log_num(S)
    shift = xp.max(log_w, axis=axis, keepdims=True)
    shift = stop_gradient(xp.where(xp.isfinite(shift), shift, 0.0))  # se does not depend on it
    w = xp.exp(log_w - shift)
    mean = xp.mean(w, axis=axis)
    if S > 1:
        var = xp.sum((w - xp.expand_dims(mean, axis=axis)) ** 2, axis=axis) / (S - 1)
        se = sqrt0(var / S) / mean
    else:
        se = xp.full_like(mean, float("inf"))
    return LogZ(value, se)
