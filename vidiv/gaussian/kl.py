"""Closed forms for Gaussians: KL divergence, entropy and the free energy FBGVI minimises.

KL(N(m₀, Σ₀) ‖ N(m₁, Σ₁)) = ½ [ tr(Σ₁⁻¹Σ₀) + (m₁ − m₀)ᵀ Σ₁⁻¹ (m₁ − m₀) − d
                            + log det Σ₁ − log det Σ₀ ].

The free energy F(q) = E_q V − H(q) equals KL(q‖π) − log Z for π = exp(−V)/Z, i.e. the
negative ELBO.

Example::

    >>> import numpy as np
    >>> float(gaussian_kl(np.zeros(1), np.eye(1), np.ones(1), np.eye(1)))
    0.5
"""

from __future__ import annotations

import math
from typing import Any

from vidiv._backend import namespace

Array = Any

__all__ = ["logdet_spd", "gaussian_kl", "gaussian_entropy", "free_energy"]


def logdet_spd(cov: Array) -> Array:
    """``log det Σ`` of a symmetric positive definite matrix via its Cholesky factor."""
    xp = namespace(cov)
    L = xp.linalg.cholesky(cov)
    return 2.0 * xp.sum(xp.log(xp.linalg.diagonal(L)), axis=-1)


def gaussian_kl(mean0: Array, cov0: Array, mean1: Array, cov1: Array) -> Array:
    """KL(N(mean0, cov0) ‖ N(mean1, cov1)) in closed form (vectors ``(d,)``, matrices ``(d,d)``)."""
    xp = namespace(mean0, cov0, mean1, cov1)
    d = mean0.shape[-1]
    diff = mean1 - mean0
    trace = xp.sum(xp.linalg.diagonal(xp.linalg.solve(cov1, cov0)), axis=-1)
    maha = xp.sum(diff * xp.linalg.solve(cov1, diff[..., None])[..., 0], axis=-1)
    return 0.5 * (trace + maha - d + logdet_spd(cov1) - logdet_spd(cov0))


def gaussian_entropy(cov: Array) -> Array:
    """Differential entropy ½ log det(2πe Σ) of N(·, Σ)."""
    d = cov.shape[-1]
    return 0.5 * (d * (1.0 + math.log(2.0 * math.pi)) + logdet_spd(cov))


def free_energy(potentials: Array, cov: Array) -> Array:
    """Monte Carlo free energy ``mean_s V(x_s) − H(q)`` (negative ELBO; KL(q‖π) up to log Z).

    ``potentials``: V at samples x_s ~ q, shape ``(S,)``; ``cov``: Σ of q.
    """
    xp = namespace(potentials, cov)
    return xp.mean(potentials, axis=0) - gaussian_entropy(cov)
