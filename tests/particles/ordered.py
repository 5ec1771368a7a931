"""Closed-form ordered-vector posteriors for the MirroredSVGD tests of both backends.

A flat prior on the ordered cone times ``Π_i f(μ_i)`` is the law of the order statistics of two
iid draws from ``f``: for N(0, 1), E[min, max] = ∓1/√π and both variances are 1 − 1/π; for
Exp(1) on the positive ordered cone, min ~ Exp(2) (mean 0.5, variance 0.25) and max has mean 1.5
and variance 1 + 1/4.
"""

from __future__ import annotations

import numpy as np

# case -> (support name, log density of one draw (array code), E[min, max], Var[min, max])
CASES = {
    "ordered_normal": (
        "ordered_vector", lambda x: -0.5 * x**2,
        [-1 / np.sqrt(np.pi), 1 / np.sqrt(np.pi)], [1 - 1 / np.pi, 1 - 1 / np.pi],
    ),
    "positive_ordered_exponential": (
        "positive_ordered_vector", lambda x: -x, [0.5, 1.5], [0.25, 1.25],
    ),
}
NUM_PARTICLES = 200
NUM_STEPS = 400


def initial_particles() -> np.ndarray:
    """Ordered, positive and far from both targets."""
    return np.sort(np.random.default_rng(0).uniform(0.2, 1.0, size=(NUM_PARTICLES, 2)), axis=-1)


def check(mu: np.ndarray, case: str) -> None:
    support, _, mean, var = CASES[case]
    assert mu.shape == (NUM_PARTICLES, 2) and np.all(np.diff(mu, axis=-1) > 0)
    if support == "positive_ordered_vector":
        assert np.all(mu > 0)
    np.testing.assert_allclose(mu.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(mu.var(0), var, rtol=0.1)
