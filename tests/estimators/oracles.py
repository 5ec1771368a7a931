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


def renyi_value(lw: np.ndarray, alpha: float) -> float:
    """The Renyi bound of one batch element (``alpha != 1``), zero weights included."""
    eps = 1.0 - alpha
    return float((logsumexp(eps * lw) - math.log(len(lw))) / eps)


def _vr_weights(lw: np.ndarray, alpha: float) -> np.ndarray:
    eps = 1.0 - alpha
    return np.exp(eps * lw - logsumexp(eps * lw))


def truncated_normal_dreg(z, loc, scale, alpha, cut):
    """Loss value and DReG gradient ``(d/dloc, d/dscale)`` of ``-L_alpha`` for the model
    ``z ~ N(0, 1)`` with zero density below ``cut`` and the guide ``N(loc, scale)``, computed on
    the particles ``z >= cut`` only (the others have zero weight):
    ``coef = alpha w + (1 - alpha) w^2``, ``w = softmax((1 - alpha) log w)``,
    ``d log w / dz = -z + (z - loc) / scale^2``, ``dz/dloc = 1``, ``dz/dscale = (z - loc)/scale``.
    """
    from scipy.stats import norm

    z = np.asarray(z)
    live = z[z >= cut]
    lw = norm.logpdf(live) - norm.logpdf(live, loc, scale)
    value = -renyi_value(np.concatenate([lw, np.full(len(z) - len(live), -np.inf)]), alpha)
    w = _vr_weights(lw, alpha)
    coef = alpha * w + (1 - alpha) * w**2
    dlw = -live + (live - loc) / scale**2
    return value, -np.sum(coef * dlw), -np.sum(coef * dlw * (live - loc) / scale)


def categorical_vimco(log_p, k, p, alpha, normalised):
    """Loss value and gradient ``d/dp`` of ``-(L_alpha + VIMCO score term)`` for a guide
    ``Categorical(p)`` that drew ``k`` (``log_p``: the model's log density per draw, ``-inf``
    allowed). ``d log q(k) / dp_j = [k = j] / p_j``, minus 1 where the distribution normalises
    ``p`` (torch): ``d/dp_j = -sum_s (signal_s - w_s) d log q(k_s) / dp_j``."""
    lw = log_p - np.log(p[k])
    w = _vr_weights(lw, alpha)
    signal = vimco_signals(lw, alpha)
    assert np.isfinite(signal).all() and (signal[np.isneginf(lw)] < 0).all()
    dlogq = np.stack([(k == j) / p[j] - float(normalised) for j in range(len(p))])
    return -renyi_value(lw, alpha), -(dlogq * (signal - w)).sum(axis=1)
