r"""Overflow-free reductions with finite gradients, shared by the estimators.

Each helper is written against the array API (numpy, torch, jax) and uses the *where trick*: an
input that would make a derivative ``inf * 0`` (``sqrt`` at 0, ``log`` at 0, ``0 * (-inf)``) is
replaced by a harmless value *before* the operation, and the result is put back with ``where``, so
the value is exact and the gradient is finite (zero at the replaced entries) in torch and jax.
"""

from __future__ import annotations

import math

from .._backend import Array, namespace, stop_gradient

__all__ = ["lse", "mean", "sqrt0", "weighted_sum", "power_mean", "mean_log_w"]


def lse(x: Array, axis: int = 0, keepdims: bool = False) -> Array:
    r""":math:`\log\sum_s e^{x_s}` along ``axis``: the finite maximum is shifted out (detached: the
    value does not depend on it), and an all-``-inf`` slice gives ``-inf`` with a zero gradient
    (``torch.logsumexp`` and ``jax.nn.logsumexp`` give NaN there). NaN propagates."""
    xp = namespace(x)
    m = xp.max(x, axis=axis, keepdims=True)
    m = stop_gradient(xp.where(xp.isfinite(m), m, 0.0))
    s = xp.sum(xp.exp(x - m), axis=axis, keepdims=True)
    empty = s == 0.0
    out = xp.where(empty, -math.inf, m + xp.log(xp.where(empty, 1.0, s)))
    return out if keepdims else xp.squeeze(out, axis=axis)


def mean(x: Array, axis: int = 0) -> Array:
    r""":math:`\sum_s x_s / S`: no partial sum exceeds :math:`\max_s|x_s|`, so a float32 mean of
    values near ``3e38`` does not overflow (``mean`` sums first)."""
    xp = namespace(x)
    return xp.sum(x / x.shape[axis], axis=axis)


def sqrt0(x: Array) -> Array:
    r""":math:`\sqrt{x}` for ``x >= 0`` with gradient 0 (not ``inf``) at ``x = 0``."""
    xp = namespace(x)
    zero = x == 0.0
    return xp.where(zero, 0.0, xp.sqrt(xp.where(zero, 1.0, x)))


def weighted_sum(coef: Array, x: Array, axis: int = 0) -> Array:
    r""":math:`\sum_s c_s x_s` where a particle with :math:`c_s = 0` contributes exactly 0 to the
    value and to the gradient even if :math:`x_s = \pm\infty` (zero weight, ``log p = -inf``)."""
    xp = namespace(coef, x)
    return xp.sum(coef * xp.where(coef != 0.0, x, 0.0), axis=axis)


def power_mean(log_w: Array, eps: float) -> Array:
    r"""Log power mean :math:`\frac1\epsilon\big[\log\frac1S\sum_s e^{\epsilon\log w_s}\big]`,
    ``eps != 0``, over axis 0, evaluated as

    .. math:: r + \frac1\epsilon\Big[\log\sum_s e^{\epsilon(\log w_s - r)} - \log S\Big],
              \qquad r = \max_s \log w_s\ (\epsilon > 0),\ \min_s \log w_s\ (\epsilon < 0),

    so every exponent is :math:`\le 0`: no overflow even where :math:`\epsilon\log w` itself would
    (float32 ``log w = 3e38`` with :math:`\epsilon = 2`). ``r`` is detached (the value does not
    depend on it), so the gradient is :math:`\mathrm{softmax}(\epsilon\log w)`.

    Zero weights: for :math:`\epsilon > 0` a particle with ``log w = -inf`` has weight 0 (value and
    gradient); for :math:`\epsilon < 0` it makes :math:`w^\epsilon = \infty` and the value
    ``-inf``, with a zero gradient. ``+inf`` / NaN entries give ``+inf`` (:math:`\epsilon > 0`) or
    NaN, never a finite number.
    """
    xp = namespace(log_w)
    S = log_w.shape[0]
    finish = None
    if eps < 0.0:
        log_w, finish = _without_zero_weights(log_w)
        ref = xp.min(log_w, axis=0)
    else:
        ref = xp.max(log_w, axis=0)
    ref = stop_gradient(xp.where(xp.isfinite(ref), ref, 0.0))
    out = ref + (lse(eps * (log_w - ref), axis=0) - math.log(S)) / eps
    return out if finish is None else finish(out)


def mean_log_w(log_w: Array) -> Array:
    r""":math:`\frac1S\sum_s\log w_s` over axis 0 (the ELBO): ``-inf`` with a zero gradient where
    a particle has ``log w = -inf``, NaN where one is NaN or ``+inf``."""
    log_w, finish = _without_zero_weights(log_w)
    return finish(mean(log_w, axis=0))


def _without_zero_weights(log_w: Array):
    """``(log_w with its -inf entries replaced by 0, finish)``: ``finish(out)`` sets ``-inf`` in
    the batch elements that had a ``-inf`` particle and NaN in those with a NaN or ``+inf`` one,
    so an objective that such a particle makes ``-inf`` gets that value with a zero gradient."""
    xp = namespace(log_w)
    dead_entry = log_w == -math.inf
    dead = xp.any(dead_entry, axis=0)
    poisoned = xp.any(xp.isnan(log_w) | (log_w == math.inf), axis=0)

    def finish(out: Array) -> Array:
        return xp.where(poisoned, math.nan, xp.where(dead, -math.inf, out))

    return xp.where(dead_entry, 0.0, log_w), finish
