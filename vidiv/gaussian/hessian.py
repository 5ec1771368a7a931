"""Expected gradient / Hessian estimators for a Gaussian q = N(m, Σ).

Forward steps need ḡ ≈ E_q ∇V and H̄ ≈ E_q ∇²V. With autodiff Hessians the estimator is the plain
average over samples. Without second derivatives, Stein's lemma (integration by parts)
gives

    E_q[(X − m) ∇V(X)ᵀ] = Σ E_q[∇²V(X)],

so ``Σ⁻¹ (X − m) ∇V(X)ᵀ`` is an unbiased estimator of E_q ∇²V. With X = m + L u (Σ = L Lᵀ) this is
``L⁻ᵀ u ∇V(X)ᵀ``; note that ``u ∇V(X)ᵀ`` alone estimates ``Lᵀ E ∇²V``, not the Hessian.
The estimator is symmetrised, which keeps it unbiased because E ∇²V is symmetric.

Example::

    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> G = 2.0 * X                      # V = |x|², ∇V = 2x, ∇²V = 2I
    >>> stein_hessian(X, G, np.zeros(2), np.eye(2) * 0.5, center=False)  # Σ = ½I: X's spread
    array([[2., 0.],
           [0., 2.]])
"""

from __future__ import annotations

from typing import Any

from vidiv._backend import namespace
from vidiv.gaussian.steps import symmetrize

Array = Any

__all__ = ["stein_hessian", "mean_gradient", "mean_hessian"]


def mean_gradient(grads: Array) -> Array:
    """Monte Carlo estimate of E_q ∇V from per-sample gradients of shape ``(S, d)``."""
    xp = namespace(grads)
    return xp.mean(grads, axis=0)


def mean_hessian(hessians: Array) -> Array:
    """Monte Carlo estimate of E_q ∇²V from per-sample Hessians ``(S, d, d)`` (symmetrised)."""
    xp = namespace(hessians)
    return symmetrize(xp.mean(hessians, axis=0))


def stein_hessian(
    samples: Array, grads: Array, mean: Array, cov: Array, center: bool = True
) -> Array:
    """First-order (Hessian-free) estimate of E_q ∇²V: ``sym( (1/S) Σ_s Σ⁻¹(x_s − m) ∇V(x_s)ᵀ )``.

    ``samples``, ``grads``: ``(S, d)`` (samples drawn from N(mean, cov), gradients of V there);
    ``mean``: ``(d,)``; ``cov``: ``(d, d)``. Unbiased for E_q ∇²V; its variance grows with d and
    shrinks as 1/S.

    ``center=True`` (used when S ≥ 2) subtracts the sample mean gradient ḡ as a control variate,
    ``sym( Σ_s Σ⁻¹(x_s − m)(∇V(x_s) − ḡ)ᵀ / (S − 1) )``, which stays unbiased (for s ≠ t the cross
    terms have mean zero, leaving a factor (S − 1)/S that the divisor undoes) and removes the noise
    of the term Σ⁻¹(x − m)E[∇V]ᵀ, large far from the mode.
    """
    xp = namespace(samples, grads, mean, cov)
    n = samples.shape[0]
    centred = samples - mean[None, :]  # (S, d)
    white = xp.linalg.solve(cov, xp.matrix_transpose(centred))  # (d, S) = Σ⁻¹ (x_s − m)
    if center and n >= 2:
        g = grads - xp.mean(grads, axis=0, keepdims=True)
        return symmetrize(xp.matmul(white, g) / (n - 1))
    return symmetrize(xp.matmul(white, grads) / n)
