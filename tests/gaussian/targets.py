"""The paper's Gaussian target (Diao et al. 2023, §Experiments) as an exact/stochastic oracle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidiv.errors import InvalidArgumentError, NonFiniteError


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


def bad_gaussians(good_m, good_c):
    """(mean, cov, error class, exact message) for ``set_gaussian`` on a model with latent
    sites z (2,) then a () (d = 3), each input wrong in one way; shared by both backends' tests."""
    asym = good_c.copy()
    asym[0, 2] = 0.01
    where = "sites in the order of latent_shapes (z (2,), a ()), each raveled"
    return [
        (np.zeros(2), good_c, InvalidArgumentError,
         f"mean must have shape (3,): the flat unconstrained latent vector, {where}; got shape "
         "(2,)."),
        (good_m, np.eye(2), InvalidArgumentError,
         "cov must have shape (3, 3) over the same flat vector as mean (z (2,), a ()); got "
         "shape (2, 2)."),
        (np.r_[np.nan, 0.0, 0.0], good_c, NonFiniteError,
         "mean has NaN or inf entries; pass finite values (e.g. a Laplace approximation, or a "
         "previous fit's mean and cov)."),
        (good_m, asym, InvalidArgumentError,
         "cov is not symmetric (max |cov - cov.T| = 0.01); pass a covariance matrix, e.g. "
         "0.5 * (cov + cov.T) if the asymmetry is round-off."),
        (good_m, np.diag([1.0, -1.0, 2.0]), InvalidArgumentError,
         "cov is not positive definite (eigenvalues from -1 to 2); FBGVI needs a full-rank "
         "Gaussian: add jitter (cov + 1e-6 * I) or, for a Laplace approximation from an "
         "indefinite Hessian, clip its eigenvalues."),
    ]


# The scheme of Diao et al. (2023) as the paper states it, with the drivers' defaults before the
# Laplace start and the whitened step (0.4): the tests of that scheme's numbers pass these.
PLAIN_FBGVI = dict(
    num_samples=1, schedule=None, antithetic=False, precondition=False, init="isotropic"
)


def plain(cls, model, **kw):
    """``cls(model, **kw)`` (an FBGVI driver) with :data:`PLAIN_FBGVI` under ``kw``."""
    return cls(model, **{**PLAIN_FBGVI, **kw})


def kl_optimal_gaussian_1d(V, deg: int = 80) -> tuple[float, float]:
    """The (mean, variance) of the Gaussian minimising KL(q‖exp(-V)) in one dimension, by
    Gauss-Hermite quadrature of E_q V − H(q) and scipy's Nelder-Mead: what FBGVI converges to."""
    import scipy.optimize

    x, w = np.polynomial.hermite_e.hermegauss(deg)
    w = w / w.sum()

    def free_energy(p):
        m, log_s = p
        return float(w @ V(m + np.exp(log_s) * x)) - log_s

    res = scipy.optimize.minimize(free_energy, [0.0, 0.0], method="Nelder-Mead",
                                  options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000})
    return float(res.x[0]), float(np.exp(2 * res.x[1]))
