"""Particle methods on constrained supports: Stein kernels, mirror maps, mirrored Stein directions.

Pure array maths (numpy, torch, jax through :mod:`vidiv._backend`); no random numbers and no
autodiff: the adapters (:class:`vidiv.pyro.MirroredSVGD`, :class:`vidiv.numpyro.MirroredSVGD`)
pass in the gradients of ``log p``.

Example:
    >>> import numpy as np
    >>> from vidiv.particles import Layout, SimplexEntropic, msvgd_direction
    >>> lay = Layout([("w", SimplexEntropic(), (3,))])
    >>> eta = np.random.default_rng(0).normal(size=(10, 2))
    >>> vals = lay.to_values(eta)
    >>> alpha = np.array([2.0, 3.0, 4.0])
    >>> phi = msvgd_direction(lay, vals, {"w": (alpha - 1) / vals["w"]})  # Dirichlet(alpha)
    >>> phi.shape
    (10, 2)
"""

from __future__ import annotations

from .blocks import Layout, check_init
from .energy import energy_distance, mean_pairwise_distance
from .kernels import KERNELS, coordinate_kernel, kernel_matrix, median_bandwidth
from .mirror import (
    SUPPORTED_SUPPORTS,
    Identity,
    MirrorMap,
    OrderedEntropic,
    PositiveEntropic,
    SimplexEntropic,
    UnitIntervalEntropic,
)
from .stein import (
    KERNEL_SPACES,
    MODES,
    VARIANTS,
    check_options,
    mirrored_direction,
    msvgd_direction,
    svgd_direction,
    svmd_direction,
)

__all__ = [
    "KERNELS",
    "KERNEL_SPACES",
    "MODES",
    "SUPPORTED_SUPPORTS",
    "Identity",
    "Layout",
    "MirrorMap",
    "OrderedEntropic",
    "PositiveEntropic",
    "SimplexEntropic",
    "UnitIntervalEntropic",
    "coordinate_kernel",
    "energy_distance",
    "kernel_matrix",
    "mean_pairwise_distance",
    "median_bandwidth",
    "mirrored_direction",
    "check_options",
    "check_init",
    "VARIANTS",
    "msvgd_direction",
    "svgd_direction",
    "svmd_direction",
]
