"""The paper's Gaussian target (Diao et al. 2023, §Experiments) as an exact/stochastic oracle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GaussianTarget:
    mean: np.ndarray
    cov: np.ndarray

    @property
    def precision(self) -> np.ndarray:
        return np.linalg.inv(self.cov)

    def grad(self, x: np.ndarray) -> np.ndarray:
        """∇V(x) = Σ*⁻¹(x − m*) for V = −log N(x; m*, Σ*) (rows of x are points)."""
        return (x - self.mean) @ self.precision


def random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def paper_target(d: int = 10, cond: float = 200.0, seed: int = 0) -> GaussianTarget:
    """Eigenvalues geomspace(1, cond) under a random rotation, mean ~ U[0, 1]^d."""
    rng = np.random.default_rng(seed)
    Q = random_rotation(d, rng)
    cov = Q @ np.diag(np.geomspace(1.0, cond, d)) @ Q.T
    return GaussianTarget(mean=rng.uniform(size=d), cov=0.5 * (cov + cov.T))
