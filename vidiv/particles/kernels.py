"""Stein kernels on particles: RBF and IMQ with the median-heuristic bandwidth.

For particles ``x`` of shape ``(P, n)`` every kernel function returns ``(k, grad, h)`` with

* ``k[j, i] = k(x_j, x_i)``                      shape ``(P, P)``
* ``grad[j, i] = ∇_{x_j} k(x_j, x_i)``             shape ``(P, P, n)`` (gradient in the first slot)
* ``h``: the bandwidth used (a 0-d array, gradient stopped).

Kernels (Shi, Liu & Mackey, ICLR 2022, code ``kernel.py``):

* RBF ``k(x, y) = exp(-‖x - y‖² / h)``
* IMQ ``k(x, y) = (1 + ‖x - y‖² / h)^(-1/2)``

Median heuristic: ``h`` = the median of the ``P²`` squared pairwise distances (diagonal zeros
included, no ``/ 2``, no ``log P``); ``h = 1`` when that median is 0 (all particles equal).

The coordinate-wise variants (``coordinate_kernel``) use a separate one-dimensional kernel
per coordinate ``k_a(x_a, y_a)`` with its own median bandwidth; they return ``k`` of shape
``(P, P, n)``. They define the diagonal matrix kernel ``K(x, y) = diag_a k_a(x_a, y_a)`` (the
kernel of Pyro's default ``SVGD(mode="univariate")``).

Example:
    >>> import numpy as np
    >>> k, grad, h = kernel_matrix(np.zeros((3, 2)), "imq")
    >>> float(k[0, 1]), float(h)
    (1.0, 1.0)
"""

from __future__ import annotations

from typing import Any

from .._backend import framework, namespace, stop_gradient

Array = Any

__all__ = ["KERNELS", "pairwise_differences", "median_bandwidth", "kernel_matrix",
           "coordinate_kernel"]

KERNELS = ("imq", "rbf")


def pairwise_differences(x: Array) -> Array:
    """``diff[j, i] = x_j - x_i`` for particles ``x`` of shape ``(P, n)``; shape ``(P, P, n)``."""
    return x[:, None, :] - x[None, :, :]


def median_bandwidth(sq_dists: Array, axes: int = 2) -> Array:
    """Median heuristic over the leading ``axes`` axes (the particle pairs).

    ``sq_dists`` has shape ``(P, P)`` (one bandwidth) or ``(P, P, n)`` (one per coordinate).
    Takes the smallest of the largest half of the ``P²`` values (the upper median), replaces
    0 by 1, and stops gradients.
    """
    xp = namespace(sq_dists)
    m = sq_dists.shape[0] * sq_dists.shape[1]
    flat = xp.reshape(sq_dists, (m,) + tuple(sq_dists.shape[axes:]))
    h = _order_statistic(flat, m - m // 2)
    h = xp.where(h > 0, h, xp.ones_like(h))
    return stop_gradient(h)


def _order_statistic(flat: Array, k: int) -> Array:
    """The ``k``-th smallest (0-based) along axis 0, by selection where the framework has it."""
    fw = framework(flat)
    if fw == "torch":
        return flat.kthvalue(k + 1, dim=0).values
    if fw == "numpy":
        import numpy as np

        return np.partition(flat, k, axis=0)[k, ...]
    return namespace(flat).sort(flat, axis=0)[k, ...]


def _check_kind(kind: str) -> None:
    if kind not in KERNELS:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"kernel must be one of {KERNELS!r}, got {kind!r}; use kernel='imq' (the default of "
            "the mirrored Stein papers) or kernel='rbf'."
        )


def _profile(sq: Array, h: Array, kind: str):
    """Kernel value and the factor c with ∇_x k(x, y) = c (x - y)."""
    xp = namespace(sq)
    if kind == "rbf":
        k = xp.exp(-sq / h)
        return k, (-2.0 / h) * k
    inner = 1.0 + sq / h
    k = 1.0 / xp.sqrt(inner)
    return k, -(k / inner) / h


def kernel_matrix(x: Array, kind: str = "imq", bandwidth: Array | float | None = None):
    """Kernel matrix, its first-slot gradient and the bandwidth for particles ``x`` ``(P, n)``.

    Args:
        x: particles, shape ``(P, n)``.
        kind: ``"imq"`` or ``"rbf"``.
        bandwidth: fixed ``h``; ``None`` uses the median heuristic.

    Returns:
        ``(k, grad, h)`` with ``k`` ``(P, P)``, ``grad[j, i] = ∇_{x_j} k(x_j, x_i)`` ``(P, P, n)``.
    """
    _check_kind(kind)
    xp = namespace(x)
    diff = pairwise_differences(x)
    sq = xp.sum(diff * diff, axis=-1)
    h = median_bandwidth(sq) if bandwidth is None else xp.asarray(bandwidth, dtype=x.dtype)
    k, coef = _profile(sq, h, kind)
    return k, coef[..., None] * diff, h


def coordinate_kernel(x: Array, kind: str = "imq", bandwidth: Array | float | None = None):
    """One kernel per coordinate: ``k[j, i, a] = k_a(x_ja, x_ia)``, each with its own median
    bandwidth (shape ``(n,)``). Returns ``(k, grad, h)``, ``k`` and ``grad`` of shape
    ``(P, P, n)`` with ``grad[j, i, a] = ∂_{x_ja} k_a(x_ja, x_ia)``."""
    _check_kind(kind)
    xp = namespace(x)
    diff = pairwise_differences(x)
    sq = diff * diff
    h = median_bandwidth(sq) if bandwidth is None else xp.asarray(bandwidth, dtype=x.dtype)
    k, coef = _profile(sq, h, kind)
    return k, coef * diff, h
