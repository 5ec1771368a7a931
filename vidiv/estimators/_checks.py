"""Input checks shared by the estimators (explicit errors, never ``assert``)."""

from __future__ import annotations

import numpy as np

from .._backend import Array, framework
from ..errors import InvalidArgumentError, NonFiniteError


def is_traced(x: Array) -> bool:
    """True for jax tracers (values unknown at trace time: checks must be skipped)."""
    if framework(x) != "jax":
        return False
    import jax

    return isinstance(x, jax.core.Tracer)


def check_pair(log_p: Array, log_q: Array, min_particles: int = 1) -> None:
    """``log_p`` and ``log_q`` must share a shape ``(S, *batch)`` with ``S >= min_particles``."""
    sp, sq = tuple(log_p.shape), tuple(log_q.shape)
    if sp != sq:
        raise InvalidArgumentError(
            f"log_p has shape {sp} but log_q has shape {sq}; both must be (S, *batch) with the "
            "particles on axis 0 (one log density per particle)."
        )
    if len(sp) == 0:
        raise InvalidArgumentError(
            "log_p and log_q are scalars; pass one value per particle, shape (S, *batch), "
            "e.g. log_p[None] for a single particle."
        )
    if sp[0] < min_particles:
        raise InvalidArgumentError(
            f"got {sp[0]} particle(s) on axis 0 but this estimator needs at least "
            f"{min_particles}; draw more samples from the guide."
        )


def _to_numpy(x: Array) -> np.ndarray:
    if framework(x) == "torch":
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_log_weights(log_w: Array, name: str = "log weights", axis: int = 0) -> None:
    """Raise :class:`NonFiniteError` for NaN or ``+inf`` entries, or a batch element whose log
    weights are all ``-inf`` along the particle ``axis`` (no particle has positive weight). A
    no-op under ``jax.jit`` (the estimators then return NaN / ``+-inf`` there, never a finite
    number)."""
    if is_traced(log_w):
        return
    lw = np.moveaxis(_to_numpy(log_w), axis, 0) if np.ndim(log_w) else _to_numpy(log_w)
    if np.isnan(lw).any():
        n = int(np.isnan(lw).sum())
        raise NonFiniteError(
            f"{name} contain {n} NaN value(s) out of {lw.size}. Check the data for NaN and the "
            "model for invalid parameters (e.g. a negative scale); the guide's initial scale may "
            "also be too wide for the model's support."
        )
    if np.isposinf(lw).any():
        raise NonFiniteError(
            f"{name} contain +inf: the model density is infinite at a guide sample (a degenerate "
            "likelihood, e.g. a zero scale). Bound the model's scale parameters away from zero."
        )
    if lw.ndim and lw.shape[0] and np.isneginf(lw).all(axis=0).any():
        raise NonFiniteError(
            f"all {name} are -inf (every particle has zero weight): the guide only proposes values "
            "outside the model's support. Check that the guide's support matches the model's "
            "(e.g. a positive site needs a positive guide) or start the guide closer to the data."
        )


def check_no_zero_weights(log_w: Array, name: str, who: str) -> None:
    """Raise :class:`NonFiniteError` if any log weight is ``-inf``, for estimators (``who``) that
    are infinite at a zero-weight particle (after :func:`check_log_weights`). A no-op under jit."""
    if is_traced(log_w):
        return
    lw = _to_numpy(log_w)
    n = int(np.isneginf(lw).sum())
    if n:
        raise NonFiniteError(
            f"{n} of the {lw.size} {name} are -inf (particles with zero weight, outside the "
            f"model's support), which makes {who} infinite. Drop those particles first (as "
            "LogVariance does: vidiv.paths.filter.kept_mask), move the guide inside the model's "
            "support, or use an objective that gives them zero weight (renyi_bound with "
            "alpha < 1, log_marginal)."
        )
