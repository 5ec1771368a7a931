r"""Kernel Stein discrepancy (KSD) of a sample against a target known through its score.

For a target density p with score :math:`s(x) = \nabla \log p(x)` and a kernel k, the Stein
kernel is (Liu, Lee & Jordan 2016; Chwialkowski et al. 2016; Gorham & Mackey 2017)

.. math::
    k_p(x, y) = s(x)^\top s(y)\, k(x, y) + s(x)^\top \nabla_y k(x, y)
              + s(y)^\top \nabla_x k(x, y) + \operatorname{tr} \nabla_x \nabla_y k(x, y),

and we return the V-statistic :math:`\mathrm{KSD} = \big(\frac{1}{n^2}\sum_{i,j}
k_p(x_i, x_j)\big)^{1/2}` (always >= 0; biased upwards by :math:`O(1/\sqrt n)` even on exact
samples, so it decreases with n for exact draws and levels off for a biased sample). Only the
score is needed, never the normalising constant, so it measures the quality of particle methods
(SVGD, mirrored SVGD) that have no density q.

Kernels (:math:`r = x - y`):

* ``"imq"`` (default, recommended by Gorham & Mackey 2017: the KSD then detects
  non-convergence): :math:`k = (c^2 + \lVert r\rVert^2)^{\beta}`, :math:`\beta = -1/2`,
  ``bandwidth`` = c (default 1);
* ``"rbf"``: :math:`k = \exp(-\lVert r\rVert^2 / (2h^2))`, ``bandwidth`` = h (default: the
  median pairwise distance).

Cost: O(n^2 d) time and O(n^2) memory (no n x n x d array). For constrained parameters compute
it in unconstrained coordinates: ``vidiv.pyro.model_scores`` / ``vidiv.numpyro.model_scores``
return the unconstrained points and the scores there, ready for ``ksd(*model_scores(...))``.

Example
-------
>>> import numpy as np
>>> from vidiv.diagnostics import ksd
>>> x = np.random.default_rng(0).normal(size=(500, 2))
>>> exact = ksd(x, -x)                    # the score of N(0, I) is -x
>>> shifted = ksd(x + 1.0, -(x + 1.0))    # the same draws moved by 1
>>> exact < shifted
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from ..errors import InvalidArgumentError, NonFiniteError
from .psis import float_array

__all__ = ["ksd", "ModelScores"]


class ModelScores(NamedTuple):
    """Unconstrained draws and the model's scores there (``vidiv.pyro.model_scores`` and
    ``vidiv.numpyro.model_scores`` return it), so that ``ksd(*scores)`` works."""

    points: dict
    scores: dict


def _flatten(name: str, x: Any, keys: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    if isinstance(x, Mapping):
        keys = list(x) if keys is None else keys
        missing = [k for k in keys if k not in x]
        if missing:
            raise InvalidArgumentError(
                f"{name} lacks the site(s) {missing}; samples and scores must have the same keys."
            )
        parts = []
        for k in keys:
            a = float_array(x[k], f"{name}[{k!r}]")
            parts.append(a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1))
        n = {p.shape[0] for p in parts}
        if len(n) != 1:
            raise InvalidArgumentError(
                f"the sites of {name} have different numbers of draws {sorted(n)}; every site "
                "needs the draws on axis 0."
            )
        return np.concatenate(parts, axis=1), keys
    a = float_array(x, name)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise InvalidArgumentError(
            f"{name} must have shape (n, d) (or (n,) for d=1, or a dict of (n, *shape)), got "
            f"shape {a.shape}."
        )
    return a, keys or []


def _real(value: Any) -> float:
    """``value`` as a float; NaN for what is not a real number (strings, bools, arrays)."""
    if isinstance(value, bool | str | bytes) or np.ndim(value) != 0:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _median_bandwidth(sq: np.ndarray) -> float:
    iu = np.triu_indices(sq.shape[0], k=1)
    med = float(np.median(np.sqrt(sq[iu]))) if iu[0].size else 1.0
    return med if med > 0 else 1.0


def ksd(
    samples: Any,
    scores: Any,
    kernel: str = "imq",
    bandwidth: float | None = None,
    beta: float = -0.5,
) -> float:
    """Kernel Stein discrepancy (V-statistic, square-rooted) of ``samples`` w.r.t. the target
    whose score at each sample is ``scores``.

    Parameters
    ----------
    samples, scores : arrays (n, d) (or (n,)), or dicts site -> (n, *shape) with the same keys
        ``scores[i] = grad log p(samples[i])``.
    kernel : ``"imq"`` or ``"rbf"``.
    bandwidth : IMQ constant c (default 1) or RBF length scale h (default median distance).
    beta : IMQ exponent, in (-1, 0) (default -1/2).
    """
    if kernel not in ("imq", "rbf"):
        raise InvalidArgumentError(f"kernel must be 'imq' or 'rbf', got {kernel!r}.")
    x, keys = _flatten("samples", samples)
    s, _ = _flatten("scores", scores, keys if isinstance(scores, Mapping) else None)
    if x.shape != s.shape:
        raise InvalidArgumentError(
            f"samples have shape {x.shape} but scores have shape {s.shape}; pass one score "
            "vector (the gradient of log p) per sample."
        )
    if x.shape[0] < 2:
        raise InvalidArgumentError(f"ksd needs at least 2 samples, got {x.shape[0]}.")
    if x.shape[1] == 0:
        raise InvalidArgumentError(
            f"samples have shape {x.shape}: no coordinates to measure. Pass the draws with the "
            "parameters on axis 1 (or a dict of sites with at least one element each)."
        )
    if bandwidth is not None:
        given, bandwidth = bandwidth, _real(bandwidth)
        if not (math.isfinite(bandwidth) and bandwidth > 0):
            raise InvalidArgumentError(
                f"bandwidth must be a finite number > 0 (the IMQ constant c or the RBF length "
                f"scale h), got {given!r}; leave it out for the default (c = 1; h = the median "
                "distance)."
            )
    if kernel == "imq" and not -1.0 < _real(beta) < 0.0:
        raise InvalidArgumentError(
            f"beta must lie in (-1, 0) for the IMQ kernel, got {beta!r}; the default -0.5 is "
            "the one Gorham & Mackey (2017) recommend."
        )
    if not (np.isfinite(x).all() and np.isfinite(s).all()):
        raise NonFiniteError(
            "samples or scores contain NaN/inf: the model's log density is not differentiable "
            "at some samples (outside its support?). Remove or fix those particles."
        )
    n, d = x.shape
    xx = np.einsum("ij,ij->i", x, x)
    sq = np.maximum(xx[:, None] + xx[None, :] - 2.0 * x @ x.T, 0.0)  # ||x_i - x_j||^2
    ss = s @ s.T  # s_i . s_j
    sx = s @ x.T  # s_i . x_j
    dsx = np.diag(sx)
    # (s_i - s_j) . (x_i - x_j) = s_i.x_i - s_i.x_j - s_j.x_i + s_j.x_j
    cross = dsx[:, None] - sx - sx.T + dsx[None, :]
    if kernel == "imq":
        c, beta = (1.0 if bandwidth is None else bandwidth), _real(beta)
        u = c * c + sq
        k = u**beta
        # s_i.grad_y k + s_j.grad_x k = 2 beta u^(beta-1) (s_j - s_i).(x_i - x_j)
        grad_terms = -2.0 * beta * u ** (beta - 1.0) * cross
        trace = -2.0 * beta * d * u ** (beta - 1.0) - 4.0 * beta * (beta - 1.0) * u ** (
            beta - 2.0
        ) * sq
    else:  # rbf
        h = _median_bandwidth(sq) if bandwidth is None else bandwidth
        h2 = h * h
        k = np.exp(-sq / (2.0 * h2))
        grad_terms = k * cross / h2
        trace = k * (d / h2 - sq / (h2 * h2))
    kp = ss * k + grad_terms + trace
    return float(np.sqrt(max(float(kp.mean()), 0.0)))
