"""Kernels: values, gradients against finite differences, the median heuristic, energy distance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import energy_distance as scipy_energy

from vidiv.errors import InvalidArgumentError
from vidiv.particles import (
    coordinate_kernel,
    energy_distance,
    kernel_matrix,
    median_bandwidth,
)


@pytest.fixture
def x(rng):
    return rng.normal(size=(7, 3))


def test_median_bandwidth_is_upper_median_of_all_pairs(x):
    sq = ((x[:, None] - x[None]) ** 2).sum(-1)
    flat = np.sort(sq.ravel())  # 49 values incl. 7 zeros: min of the largest 24 = element 25
    assert median_bandwidth(sq) == flat[25]
    y = np.vstack([x, x[:1] + 1.0])  # 64 values: the upper of the two middle ones
    sq8 = ((y[:, None] - y[None]) ** 2).sum(-1)
    assert median_bandwidth(sq8) == np.sort(sq8.ravel())[32]
    assert median_bandwidth(np.zeros((4, 4))) == 1.0  # all particles equal -> h = 1


@pytest.mark.parametrize("kind", ["imq", "rbf"])
def test_kernel_values_and_gradient(x, kind):
    k, grad, h = kernel_matrix(x, kind)
    sq = ((x[:, None] - x[None]) ** 2).sum(-1)
    expect = np.exp(-sq / h) if kind == "rbf" else 1.0 / np.sqrt(1.0 + sq / h)
    np.testing.assert_allclose(k, expect, rtol=1e-14)
    eps = 1e-6
    for j in range(3):
        for a in range(3):
            xp_, xm = x.copy(), x.copy()
            xp_[j, a] += eps
            xm[j, a] -= eps
            kp, _, _ = kernel_matrix(xp_, kind, bandwidth=h)
            km, _, _ = kernel_matrix(xm, kind, bandwidth=h)
            fd = (kp[j] - km[j]) / (2 * eps)  # ∂/∂x_ja k(x_j, x_i), i != j
            mask = np.arange(7) != j
            np.testing.assert_allclose(grad[j, mask, a], fd[mask], rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(np.diagonal(grad, axis1=0, axis2=1), 0.0)


@pytest.mark.parametrize("kind", ["imq", "rbf"])
def test_coordinate_kernel_is_one_kernel_per_coordinate(x, kind):
    k, grad, h = coordinate_kernel(x, kind)
    assert h.shape == (3,)
    for a in range(3):
        ka, ga, ha = kernel_matrix(x[:, a : a + 1], kind)
        assert ha == h[a]
        np.testing.assert_allclose(k[..., a], ka, rtol=1e-14)
        np.testing.assert_allclose(grad[..., a], ga[..., 0], rtol=1e-14)


def test_unknown_kernel_is_rejected(x):
    with pytest.raises(InvalidArgumentError, match="kernel must be one of"):
        kernel_matrix(x, "gauss")


def test_energy_distance_matches_scipy_in_1d_and_loops_in_nd(rng):
    a, b = rng.normal(size=(40, 1)), rng.normal(0.3, 1.2, size=(30, 1))
    # scipy returns sqrt(2E|X-Y| - E|X-X'| - E|Y-Y'|)
    assert energy_distance(a, b) == pytest.approx(scipy_energy(a[:, 0], b[:, 0]) ** 2, rel=1e-12)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(6, 4))

    def mean_norm(u, v):
        return np.mean([np.linalg.norm(ui - vj) for ui in u for vj in v])

    expect = 2 * mean_norm(x, y) - mean_norm(x, x) - mean_norm(y, y)
    assert energy_distance(x, y) == pytest.approx(expect, rel=1e-12)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
