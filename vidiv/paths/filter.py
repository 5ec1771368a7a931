r"""Filtering of non-finite particles for log-variance losses (sde_sampler's ``max_rnd`` mask).

A particle (a trajectory for a diffusion guide, a latent draw for any other guide) is *kept* when
its log ratio :math:`f=\mathrm{rnd}=\log q-\log p` is finite and below ``max_rnd`` (1e8 in Richter
& Berner's log-variance configs). With :math:`K` the kept set and :math:`n=|K|\ge 2`,

.. math:: L = \frac{1}{n-1}\sum_{s\in K}\big(f_s-\bar f_K\big)^2,\qquad
          \bar f_K=\frac1n\sum_{s\in K}f_s,

the unbiased variance over the kept particles; dropped particles contribute nothing to the value
and exactly nothing to the gradient: their ``log p`` and ``log q`` are replaced by 0 with
``where`` *before* any arithmetic, so no ``inf - inf`` or ``NaN * 0`` reaches the backward pass of
this function (a model whose log density has a NaN *derivative* at a dropped point can still
poison its own parameters' gradient upstream; the diffusion drift guards its input, see
:func:`~vidiv.paths.control_value`). The count of dropped particles is returned so that users see
it. Everything is written with ``where`` (no boolean indexing), so it is jit-able with a fixed
shape. Outside ``jax.jit`` fewer than two kept particles raise :class:`NonFiniteError`; under jit
the loss is NaN with a zero gradient instead (NumPyro's ``stable_update`` then skips the step).

Example
-------
>>> import numpy as np
>>> loss = path_log_variance(np.zeros(4), np.array([0.0, 2.0, np.nan, 1e9]))
>>> float(loss.loss), int(loss.num_dropped), int(loss.num_kept)
(2.0, 2, 2)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._backend import Array, namespace, stop_gradient
from ..errors import InvalidArgumentError, NonFiniteError

__all__ = [
    "kept_mask",
    "path_log_variance",
    "PathLoss",
    "check_trajectories",
    "check_max_rnd",
    "MAX_RND",
]

MAX_RND = 1e8


class PathLoss(NamedTuple):
    """Log-variance over kept particles, number dropped, number kept (per batch element)."""

    loss: Array
    num_dropped: Array
    num_kept: Array


def check_max_rnd(max_rnd: float) -> float:
    """Validate the filter threshold: a positive number (``math.inf`` drops only non-finite
    particles), returned as a ``float``."""
    try:
        value = float(max_rnd)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0.0:  # NaN fails too
        raise InvalidArgumentError(
            f"max_rnd must be a positive number (particles with log q - log p >= max_rnd are "
            f"dropped), got {max_rnd!r}; the default is {MAX_RND:g}, math.inf drops only "
            "non-finite particles."
        )
    return value


def kept_mask(log_p: Array, log_q: Array, max_rnd: float = MAX_RND) -> Array:
    """Boolean mask of particles with a finite ``rnd = log q - log p < max_rnd``."""
    xp = namespace(log_p, log_q)
    rnd = stop_gradient(log_q - log_p)
    return xp.isfinite(rnd) & (rnd < max_rnd)


def _is_traced(x: Array) -> bool:
    from ..estimators._checks import is_traced

    return is_traced(x)


def _to_numpy(x: Array) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _breakdown(rnd: np.ndarray, max_rnd: float) -> str:
    parts = [
        (np.isnan(rnd), "NaN"),
        (np.isposinf(rnd), "+inf (e.g. log p = -inf: outside the model's support)"),
        (np.isneginf(rnd), "-inf (log q = -inf or log p = +inf)"),
        (np.isfinite(rnd) & (rnd >= max_rnd), f"finite but >= max_rnd={max_rnd:g}"),
    ]
    return ", ".join(f"{int(m.sum())} {label}" for m, label in parts if m.any())


def check_trajectories(
    mask: Array,
    name: str = "trajectories",
    *,
    min_kept: int = 1,
    rnd: Array | None = None,
    max_rnd: float = MAX_RND,
) -> None:
    """Raise :class:`NonFiniteError` when fewer than ``min_kept`` particles are kept in some batch
    element (a no-op under ``jax.jit``). ``rnd`` (``log q - log p``) adds a breakdown of why."""
    if _is_traced(mask):
        return
    m = _to_numpy(mask).astype(bool)
    if not m.ndim or not m.shape[0]:
        return
    kept = m.sum(axis=0)
    if not (kept < min_kept).any():
        return
    S = m.shape[0]
    why = _breakdown(_to_numpy(rnd), max_rnd) if rnd is not None else "NaN, inf or >= max_rnd"
    head = (f"all {S} {name} are non-finite" if (kept == 0).any() else
            f"only {int(kept.min())} of {S} {name} are finite, but the variance needs "
            f"{min_kept}; the others are non-finite")
    raise NonFiniteError(
        f"{head} (log q - log p: {why}). Check the model's log density "
        "at the guide's samples (a guide wider than the model's support, NaN data or parameters); "
        "if the guide diverged, lower the learning rate or clip gradients; for a diffusion guide "
        "use more Euler steps or a smaller SDE scale. More particles make a few bad ones harmless."
    )


def path_log_variance(
    log_p: Array, log_q: Array, max_rnd: float = MAX_RND, name: str = "trajectories"
) -> PathLoss:
    """Unbiased variance over particles (axis 0) of ``log q - log p`` restricted to the kept
    particles (:func:`kept_mask`), with the number dropped and kept. Raises
    :class:`NonFiniteError` (naming ``name``) if fewer than two are kept, outside jit; under jit
    the loss is NaN with a zero gradient instead."""
    xp = namespace(log_p, log_q)
    mask = kept_mask(log_p, log_q, max_rnd)
    check_trajectories(mask, name, min_kept=2, rnd=stop_gradient(log_q - log_p), max_rnd=max_rnd)
    zero = xp.zeros_like(log_q)
    # sanitise the inputs first: a dropped entry never takes part in any arithmetic below
    f = xp.where(mask, log_q, zero) - xp.where(mask, log_p, zero)
    n = xp.sum(xp.astype(mask, log_q.dtype), axis=0)
    n_safe = xp.where(n >= 2, n, xp.full_like(n, 2.0))
    mean = xp.sum(f, axis=0) / n_safe
    centred = xp.where(mask, f - mean, zero)
    value = xp.sum(centred * centred, axis=0) / (n_safe - 1.0)
    loss = xp.where(n >= 2, value, xp.full_like(value, float("nan")))
    num_kept = xp.sum(xp.astype(mask, xp.int32), axis=0)
    return PathLoss(loss, mask.shape[0] - num_kept, num_kept)
