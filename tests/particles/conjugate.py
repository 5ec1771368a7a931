"""A conjugate model with one site per mirror map (simplex, real, positive, unit interval) and its
exact posterior, shared by the Pyro / NumPyro MirroredSVGD tests.

* ``w ~ Dir(1, 2, 3)``,   ``counts ~ Multinomial(w)``        -> ``Dir(α + counts)``
* ``mu ~ N(0, 2)``,       ``y_i ~ N(mu, 1)``                  -> normal
* ``tau ~ Gamma(3, 2)``,  ``z_i ~ N(0, tau^{-1/2})``          -> ``Gamma(3 + n/2, 2 + Σz²/2)``
* ``p ~ Beta(2, 3)``,     ``k ~ Binomial(20, p)``             -> ``Beta(2 + k, 3 + 20 − k)``
"""

from __future__ import annotations

import numpy as np

ALPHA = np.array([1.0, 2.0, 3.0])
COUNTS = np.array([3.0, 9.0, 4.0])
Y = np.array([0.8, 1.6, 0.3, 1.2, 2.1, 0.9, 1.4, 0.5, 1.1, 1.7])
Z = np.array([0.4, -1.1, 0.9, -0.3, 1.6, -0.7, 0.2, -1.4])
K, N_TRIALS = 13.0, 20.0


def posterior() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Exact posterior means and standard deviations per site."""
    a = ALPHA + COUNTS
    a0 = a.sum()
    w_mean, w_sd = a / a0, np.sqrt(a * (a0 - a) / (a0**2 * (a0 + 1)))
    prec = 1 / 2.0**2 + len(Y)
    mu_mean, mu_sd = Y.sum() / prec, np.sqrt(1 / prec)
    shape, rate = 3.0 + len(Z) / 2, 2.0 + (Z**2).sum() / 2
    tau_mean, tau_sd = shape / rate, np.sqrt(shape) / rate
    ba, bb = 2.0 + K, 3.0 + N_TRIALS - K
    p_mean = ba / (ba + bb)
    p_sd = np.sqrt(ba * bb / ((ba + bb) ** 2 * (ba + bb + 1)))
    return {"w": (w_mean, w_sd), "mu": (np.array(mu_mean), np.array(mu_sd)),
            "tau": (np.array(tau_mean), np.array(tau_sd)), "p": (np.array(p_mean), np.array(p_sd))}


def standardised_errors(samples: dict) -> dict[str, float]:
    """max |particle mean − exact mean| / exact sd, per site."""
    out = {}
    for name, (mean, sd) in posterior().items():
        x = np.asarray(samples[name], dtype=np.float64)
        out[name] = float(np.max(np.abs(x.mean(0) - mean) / sd))
    return out


def prior_particles(num: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Initial particles drawn from the priors (numpy; identical for both backends)."""
    rng = np.random.default_rng(seed)
    return {"w": rng.dirichlet(ALPHA, size=num), "mu": rng.normal(0.0, 2.0, size=num),
            "tau": rng.gamma(3.0, 1 / 2.0, size=num), "p": rng.beta(2.0, 3.0, size=num)}
