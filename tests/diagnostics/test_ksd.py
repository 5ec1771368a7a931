"""Kernel Stein discrepancy: the Stein kernel against autodiff, decay with n, shift detection."""

from __future__ import annotations

import numpy as np
import pytest

from vidiv.diagnostics import ksd
from vidiv.errors import NonFiniteError, VidivError


def _stein_kernel_autodiff(x, s, kernel, h):
    """Brute-force V-statistic with jax derivatives of the base kernel."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def k(a, b):
        r2 = jnp.sum((a - b) ** 2)
        return (h**2 + r2) ** -0.5 if kernel == "imq" else jnp.exp(-r2 / (2 * h**2))

    gx = jax.grad(k, argnums=0)
    gy = jax.grad(k, argnums=1)
    hxy = jax.jacfwd(gx, argnums=1)

    def kp(a, b, sa, sb):
        return sa @ sb * k(a, b) + sa @ gy(a, b) + sb @ gx(a, b) + jnp.trace(hxy(a, b))

    n = x.shape[0]
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    i, j = i.ravel(), j.ravel()
    x, s = jnp.asarray(x), jnp.asarray(s)
    total = float(jnp.sum(jax.jit(jax.vmap(kp))(x[i], x[j], s[i], s[j])))
    return float(np.sqrt(total / n**2))


@pytest.mark.parametrize(("kernel", "h"), [("imq", 1.3), ("rbf", 0.8)])
def test_stein_kernel_matches_autodiff(rng, kernel, h):
    x = rng.normal(size=(7, 3))
    s = rng.normal(size=(7, 3))
    assert ksd(x, s, kernel=kernel, bandwidth=h) == pytest.approx(
        _stein_kernel_autodiff(x, s, kernel, h), rel=1e-10
    )


def test_exact_samples_decrease_with_n_and_shift_is_detected():
    rng = np.random.default_rng(0)
    values = []
    for n in (100, 400, 1600):
        x = rng.normal(size=(n, 2))
        values.append(ksd(x, -x))  # N(0, I) score is -x
    # V-statistic on exact draws is O(n^-1/2): each 4x more draws roughly halves it
    assert values[0] > values[1] > values[2]
    assert values[2] < 0.6 * values[0]
    x = rng.normal(size=(1600, 2)) + np.array([0.5, 0.0])  # biased sample of N(0, I)
    shifted = ksd(x, -x)
    assert shifted > 3 * values[2]
    assert shifted > 0.15


def test_rbf_median_bandwidth_and_dict_inputs(rng):
    x = rng.normal(size=(300, 3))
    arr = ksd(x, -x, kernel="rbf")
    d = ksd({"a": x[:, :1], "b": x[:, 1:]}, {"b": -x[:, 1:], "a": -x[:, :1]}, kernel="rbf")
    assert arr == pytest.approx(d, rel=1e-12)
    assert ksd(x + 1.0, -(x + 1.0), kernel="rbf") > 3 * arr


def test_bad_input(rng):
    x = rng.normal(size=(10, 2))
    with pytest.raises(VidivError, match=r"samples have shape \(10, 2\) but scores have shape"):
        ksd(x, x[:, :1])
    with pytest.raises(NonFiniteError, match="NaN"):
        ksd(x, np.where(x > 1, np.nan, x))
    with pytest.raises(VidivError, match="kernel must be 'imq' or 'rbf'"):
        ksd(x, -x, kernel="gauss")
    with pytest.raises(VidivError, match="at least 2 samples"):
        ksd(x[:1], -x[:1])
