r"""Benchmark targets of the diffusion-sampler literature (Richter & Berner, ICLR 2024, sde_sampler
``conf/target``) as log densities over arrays of shape ``(..., d)``, returning ``(...)``.

=================  ====  =========================================================  ==========
target             d     log density                                                log Z
=================  ====  =========================================================  ==========
``gmm_grid``       2     equal mixture of N(m, 0.3 I), m in {-5, 0, 5}^2 (9 modes)  0
``funnel``         10    x1 ~ N(0, 3^2), x_{2:d} | x1 ~ N(0, e^{x1}) (inference-gym)  0
``many_well``      5     sum_i -(x_i^2 - delta)^2, delta = 4 (2^5 = 32 modes)         5 log z1
``many_well_50d``  50    5 double wells, delta = 2, + 45 dims -x_j^2/2 (32 modes)      see below
``bimodal_1d``     1     0.5 N(-2, 0.5^2) + 0.5 N(2, 0.5^2)                          0
=================  ====  =========================================================  ==========

``z1`` is the 1-D double-well integral, computed by :func:`double_well_log_z` with adaptive
quadrature. ``many_well_50d`` is sde_sampler's ``mw_50d`` (``MultiWell``: ``n_double_wells=5``,
``separation=2``, ``dim=50``, shift 0): the double wells sit on the first five coordinates (modes
at ``+-sqrt(2)``, barrier height ``delta^2 = 4``) and the other 45 are unnormalised standard
Gaussians, so log Z = ``5 log z1(2) + 45/2 log(2 pi)`` (:func:`multi_well_log_z`); its modes are
the 32 sign patterns of the double-well coordinates (:func:`multi_well_mode`).
All functions take numpy, torch or jax arrays (through ``vidiv._backend``).

Example
-------
>>> import numpy as np
>>> round(float(gmm_grid_log_prob(np.array([5.0, -5.0]))), 4)
-2.8311
"""

from __future__ import annotations

import math

import numpy as np

from .._backend import Array, logsumexp, namespace

__all__ = [
    "GMM_GRID_MEANS",
    "GMM_GRID_VAR",
    "gmm_grid_log_prob",
    "gmm_grid_mode",
    "funnel_log_prob",
    "many_well_log_prob",
    "many_well_mode",
    "double_well_log_z",
    "multi_well_log_prob",
    "multi_well_log_z",
    "multi_well_mode",
    "many_well_50d_log_prob",
    "MW50_DIM",
    "bimodal_1d_log_prob",
]

GMM_GRID_MEANS = np.array([[a, b] for a in (-5.0, 0.0, 5.0) for b in (-5.0, 0.0, 5.0)])
GMM_GRID_VAR = 0.3


def _gauss_mixture(x: Array, means: np.ndarray, var: float) -> Array:
    xp = namespace(x)
    m = xp.asarray(means, dtype=x.dtype)
    if hasattr(x, "device") and not isinstance(x, np.ndarray):
        try:
            m = xp.asarray(means, dtype=x.dtype, device=x.device)
        except TypeError:  # pragma: no cover - namespaces without device=
            pass
    diff = x[..., None, :] - m  # (..., K, d)
    d = x.shape[-1]
    comp = -0.5 * xp.sum(diff * diff, axis=-1) / var - 0.5 * d * math.log(2 * math.pi * var)
    return logsumexp(comp, axis=-1) - math.log(means.shape[0])


def gmm_grid_log_prob(x: Array) -> Array:
    """Normalised 9-mode grid mixture in 2-D (log Z = 0)."""
    return _gauss_mixture(x, GMM_GRID_MEANS, GMM_GRID_VAR)


def gmm_grid_mode(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest mode (0..8) and whether ``x`` lies within 3 sd of it
    (Euclidean distance ``< 3*sqrt(0.3)``)."""
    x = np.asarray(x, dtype=np.float64)
    dist = np.linalg.norm(x[..., None, :] - GMM_GRID_MEANS, axis=-1)
    idx = np.argmin(dist, axis=-1)
    near = np.min(dist, axis=-1) < 3.0 * math.sqrt(GMM_GRID_VAR)
    return idx, near


def funnel_log_prob(x: Array) -> Array:
    """Neal's funnel (inference-gym ``NealsFunnel``, normalised): ``x[...,0] ~ N(0, 3)``,
    ``x[...,1:] ~ N(0, exp(x0/2))`` (scale)."""
    xp = namespace(x)
    x0 = x[..., 0]
    rest = x[..., 1:]
    k = rest.shape[-1]
    lp0 = -0.5 * (x0 / 3.0) ** 2 - math.log(3.0) - 0.5 * math.log(2 * math.pi)
    log_scale = 0.5 * x0
    lp = (
        -0.5 * xp.sum(rest * rest, axis=-1) * xp.exp(-2.0 * log_scale)
        - k * log_scale
        - 0.5 * k * math.log(2 * math.pi)
    )
    return lp0 + lp


def many_well_log_prob(x: Array, delta: float = 4.0) -> Array:
    """Unnormalised product of double wells ``sum_i -(x_i^2 - delta)^2`` (2^d modes at
    ``+-sqrt(delta)``); log Z = ``d * double_well_log_z(delta)``."""
    xp = namespace(x)
    return -xp.sum((x * x - delta) ** 2, axis=-1)


def many_well_mode(x: np.ndarray) -> np.ndarray:
    """Mode index of each sample: the sign pattern of the coordinates as an integer."""
    x = np.asarray(x)
    bits = (x > 0).astype(np.int64)
    return (bits * (2 ** np.arange(x.shape[-1]))).sum(-1)


def double_well_log_z(delta: float = 4.0) -> float:
    """``log int exp(-(x^2 - delta)^2) dx`` by adaptive quadrature (abs. error < 1e-10)."""
    from scipy.integrate import quad

    r = math.sqrt(delta)
    f = lambda t: math.exp(-((t * t - delta) ** 2))  # noqa: E731
    pts = [-r - 6, -r, 0.0, r, r + 6]
    pieces = zip(pts[:-1], pts[1:], strict=True)
    total = sum(quad(f, a, b, epsabs=1e-13, epsrel=1e-12)[0] for a, b in pieces)
    return math.log(total)


MW50_DIM, MW50_WELLS, MW50_DELTA = 50, 5, 2.0


def _check_wells(d: int, n_wells: int) -> None:
    if not 1 <= n_wells <= d:
        raise ValueError(f"need 1 <= n_wells <= d, got n_wells={n_wells} for d={d}")


def multi_well_log_prob(x: Array, n_wells: int = MW50_WELLS, delta: float = MW50_DELTA) -> Array:
    """Unnormalised double wells on the first ``n_wells`` coordinates and ``-x_j^2 / 2`` on the
    rest (sde_sampler ``MultiWell`` with shift 0); log Z = :func:`multi_well_log_z`."""
    _check_wells(x.shape[-1], n_wells)
    xp = namespace(x)
    gauss = x[..., n_wells:]
    return many_well_log_prob(x[..., :n_wells], delta) - 0.5 * xp.sum(gauss * gauss, axis=-1)


def multi_well_log_z(d: int = MW50_DIM, n_wells: int = MW50_WELLS,
                     delta: float = MW50_DELTA) -> float:
    """``n_wells * log z1(delta) + (d - n_wells)/2 * log(2 pi)`` (exact up to quadrature)."""
    _check_wells(d, n_wells)
    return n_wells * double_well_log_z(delta) + 0.5 * (d - n_wells) * math.log(2 * math.pi)


def multi_well_mode(x: np.ndarray, n_wells: int = MW50_WELLS) -> np.ndarray:
    """Mode index (0 .. 2^n_wells - 1): the sign pattern of the double-well coordinates."""
    x = np.asarray(x)
    _check_wells(x.shape[-1], n_wells)
    return many_well_mode(x[..., :n_wells])


def many_well_50d_log_prob(x: Array) -> Array:
    """sde_sampler ``mw_50d``: :func:`multi_well_log_prob` with 5 wells, delta = 2, d = 50."""
    if x.shape[-1] != MW50_DIM:
        raise ValueError(f"many_well_50d expects d = {MW50_DIM}, got {x.shape[-1]}")
    return multi_well_log_prob(x, MW50_WELLS, MW50_DELTA)


def bimodal_1d_log_prob(x: Array) -> Array:
    """Equal mixture of N(-2, 0.5^2) and N(2, 0.5^2) in 1-D (log Z = 0)."""
    return _gauss_mixture(x, np.array([[-2.0], [2.0]]), 0.25)
