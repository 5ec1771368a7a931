"""Closed-form posteriors and log evidence used as test oracles (numpy, float64).

Linear-Gaussian model: z ~ N(m0, P0), y ~ N(X z, sigma^2 I). The posterior is Gaussian with
covariance (P0^-1 + X^T X / sigma^2)^-1 and the evidence is y ~ N(X m0, X P0 X^T + sigma^2 I).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearGaussian:
    m0: np.ndarray  # (d,)
    P0: np.ndarray  # (d, d)
    X: np.ndarray  # (n, d)
    y: np.ndarray  # (n,)
    sigma: float

    @property
    def d(self) -> int:
        return self.m0.shape[0]

    @property
    def post_cov(self) -> np.ndarray:
        prec = np.linalg.inv(self.P0) + self.X.T @ self.X / self.sigma**2
        return np.linalg.inv(prec)

    @property
    def post_mean(self) -> np.ndarray:
        rhs = np.linalg.solve(self.P0, self.m0) + self.X.T @ self.y / self.sigma**2
        return self.post_cov @ rhs

    @property
    def post_sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.post_cov))

    @property
    def log_z(self) -> float:
        mean = self.X @ self.m0
        cov = self.X @ self.P0 @ self.X.T + self.sigma**2 * np.eye(len(self.y))
        r = self.y - mean
        _, logdet = np.linalg.slogdet(2 * np.pi * cov)
        return float(-0.5 * (logdet + r @ np.linalg.solve(cov, r)))

    def log_joint(self, z: np.ndarray) -> np.ndarray:
        """log p(y, z) for z of shape (..., d)."""
        from scipy.stats import multivariate_normal, norm

        prior = multivariate_normal(self.m0, self.P0).logpdf(z)
        lik = norm(z @ self.X.T, self.sigma).logpdf(self.y).sum(-1)
        return prior + lik


def conjugate_normal(n: int = 20, d: int = 2, seed: int = 0) -> LinearGaussian:
    """Independent coordinates: prior N(0, 2^2 I), y_i ~ N(z, 1) per coordinate (X stacks I_d)."""
    rng = np.random.default_rng(seed)
    reps = n // d
    X = np.tile(np.eye(d), (reps, 1))
    z_true = np.arange(1, d + 1, dtype=float)
    y = X @ z_true + rng.normal(size=X.shape[0])
    return LinearGaussian(np.zeros(d), 4.0 * np.eye(d), X, y, 1.0)


def correlated_gaussian(rho: float, n: int = 10, seed: int = 0) -> LinearGaussian:
    """2-D posterior with correlation close to ``rho``: strongly correlated prior, weak data."""
    rng = np.random.default_rng(seed)
    P0 = np.array([[1.0, rho], [rho, 1.0]])
    X = np.tile(np.eye(2), (n // 2, 1))
    y = X @ np.array([0.5, -0.5]) + rng.normal(size=X.shape[0]) * 3.0
    return LinearGaussian(np.zeros(2), P0, X, y, 3.0)


def std_mean_error(mean: np.ndarray, ref: LinearGaussian) -> np.ndarray:
    return np.abs(np.asarray(mean) - ref.post_mean) / ref.post_sd
