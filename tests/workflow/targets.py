"""Models' closed forms and quadratures shared by the backends' ``approximate`` tests."""

from __future__ import annotations

import numpy as np

FUNNEL_SCALE = 3.0
NOISE_SD = 0.5


def regression_data(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated columns (corr ~0.9), y = X (1, -0.5) + N(0, 0.5²)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    X = np.hstack([z + 0.3 * rng.normal(size=(n, 1)), z + 0.3 * rng.normal(size=(n, 1))])
    y = X @ np.array([1.0, -0.5]) + NOISE_SD * rng.normal(size=n)
    return X, y


def regression_posterior() -> tuple[np.ndarray, np.ndarray]:
    """w ~ N(0, I), y ~ N(X w, 0.5²): the exact posterior mean and covariance."""
    X, y = regression_data()
    cov = np.linalg.inv(np.eye(2) + X.T @ X / NOISE_SD**2)
    return cov @ X.T @ y / NOISE_SD**2, cov


def truncated_t_posterior_moments(y: np.ndarray) -> tuple[float, float]:
    """tau ~ Student-t(3) truncated to tau > 0, y_i ~ N(0, tau²): posterior mean and sd of
    tau by quadrature on a fine grid."""
    from scipy import stats

    tau = np.linspace(1e-4, 20.0, 400001)
    log_post = stats.t(3.0).logpdf(tau) + stats.norm(0.0, tau[:, None]).logpdf(y).sum(1)
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    mean = float((w * tau).sum())
    return mean, float(np.sqrt((w * (tau - mean) ** 2).sum()))
