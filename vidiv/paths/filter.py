r"""Filtering of non-finite trajectories for path losses (sde_sampler's ``max_rnd`` mask).

A trajectory is *kept* when its log-RND :math:`\mathrm{rnd}=\log q-\log p` is finite and below
``max_rnd`` (1e8 in Richter & Berner's log-variance configs). Dropped trajectories contribute
nothing to the loss; the count is returned so that users see it. The masked variance is written
with ``where`` (no boolean indexing), so it is jit-able with a fixed shape.

Example
-------
>>> import numpy as np
>>> loss = path_log_variance(np.zeros(4), np.array([0.0, 2.0, np.nan, 1e9]))
>>> float(loss.loss), int(loss.num_dropped)
(2.0, 2)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._backend import Array, namespace, stop_gradient
from ..errors import NonFiniteError

__all__ = ["kept_mask", "path_log_variance", "PathLoss", "check_trajectories", "MAX_RND"]

MAX_RND = 1e8


class PathLoss(NamedTuple):
    """Log-variance over kept trajectories, number dropped, number kept."""

    loss: Array
    num_dropped: Array
    num_kept: Array


def kept_mask(log_p: Array, log_q: Array, max_rnd: float = MAX_RND) -> Array:
    """Boolean mask of trajectories with a finite ``rnd = log q - log p < max_rnd``."""
    xp = namespace(log_p, log_q)
    rnd = stop_gradient(log_q - log_p)
    return xp.isfinite(rnd) & (rnd < max_rnd)


def _is_traced(x: Array) -> bool:
    from ..estimators._checks import is_traced

    return is_traced(x)


def check_trajectories(mask: Array, name: str = "trajectories") -> None:
    """Raise :class:`NonFiniteError` when no trajectory is kept (a no-op under ``jax.jit``)."""
    if _is_traced(mask):
        return
    m = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    if m.ndim and m.shape[0] and (~m).all(axis=0).any():
        raise NonFiniteError(
            f"all {m.shape[0]} {name} are non-finite (log q - log p is NaN, inf or > max_rnd): "
            "the drift or the model diverged. Lower the learning rate, clip gradients, use more "
            "Euler steps, or check the model's log density for NaN."
        )


def path_log_variance(log_p: Array, log_q: Array, max_rnd: float = MAX_RND) -> PathLoss:
    """Unbiased variance over particles (axis 0) of ``log q - log p`` restricted to the kept
    trajectories (:func:`kept_mask`); raises :class:`NonFiniteError` if none is kept (outside
    jit; under jit the loss is NaN instead)."""
    xp = namespace(log_p, log_q)
    mask = kept_mask(log_p, log_q, max_rnd)
    check_trajectories(mask)
    maskf = xp.astype(mask, log_q.dtype)
    f = xp.where(mask, log_q - log_p, xp.zeros_like(log_q))
    n = xp.sum(maskf, axis=0)
    mean = xp.sum(f, axis=0) / n
    centred = xp.where(mask, f - mean, xp.zeros_like(f))
    loss = xp.sum(centred * centred, axis=0) / (n - 1.0)
    num_dropped = mask.shape[0] - xp.sum(xp.astype(mask, xp.int32), axis=0)
    return PathLoss(loss, num_dropped, n)
