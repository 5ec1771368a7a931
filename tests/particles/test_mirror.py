"""Mirror maps: inverse pairs, Hessians against finite differences, the boundary, supports."""

from __future__ import annotations

import numpy as np
import pytest
from torch.distributions import constraints as tc

from vidiv.errors import UnsupportedSupportError, VidivError
from vidiv.particles import (
    Identity,
    Layout,
    OrderedEntropic,
    PositiveEntropic,
    SimplexEntropic,
    UnitIntervalEntropic,
    msvgd_direction,
)
from vidiv.particles.supports import map_for_support

MAPS = [SimplexEntropic(), PositiveEntropic(), UnitIntervalEntropic(), Identity(),
        OrderedEntropic(), OrderedEntropic(positive=True)]


def _eta(m, rng, n=4):
    return rng.normal(size=(5, n)) * 2.0


def _primal_of_eta(m, eta):
    return m.primal(m.to_value(eta))


@pytest.mark.parametrize("m", MAPS, ids=lambda m: type(m).__name__)
def test_grad_psi_star_inverts_grad_psi(m, rng):
    eta = _eta(m, rng)
    value = m.to_value(eta)
    np.testing.assert_allclose(m.to_dual(value), eta, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.to_value(m.to_dual(value)), value, rtol=1e-12, atol=1e-15)
    if isinstance(m, SimplexEntropic):
        np.testing.assert_allclose(value.sum(-1), 1.0, rtol=1e-15)
        assert value.shape == (5, 5)


@pytest.mark.parametrize("m", MAPS, ids=lambda m: type(m).__name__)
def test_hessian_inverse_is_jacobian_of_grad_psi_star(m, rng):
    eta = _eta(m, rng)
    value = m.to_value(eta)
    n, eps = eta.shape[1], 1e-6
    for p in range(eta.shape[0]):
        jac = np.empty((n, n))
        for b in range(n):
            e = np.zeros(n)
            e[b] = eps
            jac[:, b] = (
                _primal_of_eta(m, eta[p] + e) - _primal_of_eta(m, eta[p] - e)
            ) / (2 * eps)
        dense = np.stack([m.hess_inv(value[p], np.eye(n)[b]) for b in range(n)], axis=1)
        np.testing.assert_allclose(dense, jac, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(m.hess_inv_diag(value[p]), np.diag(jac), rtol=1e-7,
                                   atol=1e-10)
        # ∇²ψ is its inverse
        back = np.stack([m.hess(value[p], dense[:, b]) for b in range(n)], axis=1)
        np.testing.assert_allclose(back, np.eye(n), atol=1e-9)
        # ∇_η log det ∇²ψ*(η) against finite differences of log det(jacobian)
        fd = np.empty(n)
        for b in range(n):
            e = np.zeros(n)
            e[b] = eps

            def logdet(z):
                v = m.to_value(z)
                return np.linalg.slogdet(
                    np.stack([m.hess_inv(v, np.eye(n)[c]) for c in range(n)], 1)
                )[1]

            fd[b] = (logdet(eta[p] + e) - logdet(eta[p] - e)) / (2 * eps)
        np.testing.assert_allclose(m.grad_logdet(value[p]), fd, rtol=1e-6, atol=1e-8)


def test_dual_score_of_a_dirichlet_is_alpha_minus_total_times_theta(rng):
    alpha = np.array([0.1, 0.5, 3.0, 90.0, 0.1])
    m = SimplexEntropic()
    value = m.to_value(_eta(m, rng))
    score = m.dual_score(value, (alpha - 1) / value)  # ∇ of Σ (α−1) log x
    np.testing.assert_allclose(score, alpha[:-1] - alpha.sum() * value[:, :-1], rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("m", [PositiveEntropic(), UnitIntervalEntropic()],
                         ids=lambda m: type(m).__name__)
def test_dual_score_equals_hessian_form(m, rng):
    value = m.to_value(_eta(m, rng))
    g = rng.normal(size=value.shape)
    np.testing.assert_allclose(m.dual_score(value, g),
                               m.hess_inv(value, g) + m.grad_logdet(value), rtol=1e-13)


def test_particles_stay_in_the_simplex_at_the_boundary():
    """θ_i ~ 1e-30: the dual round trip, the Dirichlet score and an MSVGD step stay exact."""
    alpha = np.array([0.1, 0.1, 5.0, 90.0])
    x = np.array([[1e-30, 3e-31, 0.05, 0.95 - 1.3e-30], [2e-30, 1e-12, 0.1, 0.9 - 1e-12 - 2e-30],
                  [0.2, 0.3, 0.25, 0.25]])
    lay = Layout([("w", SimplexEntropic(), (4,))])
    eta = lay.to_dual({"w": x})
    assert np.all(np.isfinite(eta))
    vals = lay.to_values(eta)
    np.testing.assert_allclose(vals["w"], x, rtol=1e-12)
    grads = {"w": (alpha - 1) / vals["w"]}  # ~1e30 at the boundary
    score = lay.dual_score(vals, grads)
    np.testing.assert_allclose(score, alpha[:-1] - alpha.sum() * vals["w"][:, :-1], atol=1e-12)
    for lr in (0.1, 1.0, 10.0):  # large steps: θ stays strictly inside and sums to 1
        phi = msvgd_direction(lay, vals, grads)
        w = lay.to_values(eta + lr * phi)["w"]
        assert np.all(w > 0) and np.all(np.isfinite(w))
        np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-14)


@pytest.mark.parametrize("m", [PositiveEntropic(), UnitIntervalEntropic()],
                         ids=lambda m: type(m).__name__)
def test_elementwise_maps_at_the_boundary(m):
    x = np.array([1e-30, 1e-200, 0.5])
    eta = m.to_dual(x)
    np.testing.assert_allclose(m.to_value(eta), x, rtol=1e-12)
    shape = 2.0  # Gamma/Beta-like score (a − 1)/x
    score = m.dual_score(x, (shape - 1) / x)
    assert np.all(np.isfinite(score))
    np.testing.assert_allclose(score[:2], shape, rtol=1e-12)  # (a−1) + 1 (− 2θ ≈ 0)


SUPPORTED = [
    (tc.simplex, SimplexEntropic),
    (tc.positive, PositiveEntropic),
    (tc.greater_than(0.0), PositiveEntropic),
    (tc.nonnegative, PositiveEntropic),
    (tc.unit_interval, UnitIntervalEntropic),
    (tc.interval(0.0, 1.0), UnitIntervalEntropic),
    (tc.real, Identity),
    (tc.real_vector, Identity),
    (tc.independent(tc.positive, 1), PositiveEntropic),
]


def test_ordered_values_are_ordered_and_the_map_is_the_gradient_of_psi(rng):
    """θ = ∇ψ*(η) is strictly increasing (and positive) for large η, and η = ∇ψ(θ) is the
    finite-difference gradient of ψ(θ) = φ(Aθ) written out directly."""
    for positive in (False, True):
        m = OrderedEntropic(positive=positive)
        value = m.to_value(rng.normal(size=(50, 4)) * 5.0)
        assert np.all(np.diff(value, axis=-1) > 0)
        assert np.all(value[:, 0] > 0) == positive

        def psi(x, positive=positive):
            delta = np.diff(np.concatenate([[0.0], x]))
            ent = delta * np.log(delta) - delta
            return ent.sum() if positive else 0.5 * delta[0] ** 2 + ent[1:].sum()

        x, eps = m.to_value(rng.normal(size=4) * 0.5), 1e-6
        fd = [(psi(x + eps * e) - psi(x - eps * e)) / (2 * eps) for e in np.eye(4)]
        np.testing.assert_allclose(m.to_dual(x), fd, rtol=1e-6, atol=1e-8)


def test_ordered_map_for_supports():
    from numpyro.distributions import constraints as nc
    from pyro.distributions import constraints as pc

    for c in (nc, pc):
        m = map_for_support(c.ordered_vector, "mu")
        assert type(m) is OrderedEntropic and not m.positive
        assert map_for_support(c.positive_ordered_vector, "mu").positive


@pytest.mark.parametrize("support,cls", SUPPORTED, ids=lambda s: repr(s))
def test_map_for_torch_supports(support, cls):
    assert type(map_for_support(support, "x")) is cls


def test_map_for_numpyro_supports():
    from numpyro.distributions import constraints as nc

    assert type(map_for_support(nc.simplex, "x")) is SimplexEntropic
    assert type(map_for_support(nc.positive, "x")) is PositiveEntropic
    assert type(map_for_support(nc.unit_interval, "x")) is UnitIntervalEntropic
    assert type(map_for_support(nc.real_vector, "x")) is Identity
    with pytest.raises(UnsupportedSupportError, match="'k'"):
        map_for_support(nc.nonnegative_integer, "k")


@pytest.mark.parametrize(
    "support",
    [tc.interval(-1.0, 1.0), tc.greater_than(2.0), tc.lower_cholesky, tc.boolean,
     tc.positive_definite],
    ids=repr,
)
def test_unsupported_support_names_site_and_lists_supported(support):
    with pytest.raises(UnsupportedSupportError) as err:
        map_for_support(support, "sigma_site")
    msg = str(err.value)
    assert isinstance(err.value, VidivError)
    assert "'sigma_site'" in msg
    for word in ("simplex", "positive", "unit_interval", "real", "ordered_vector"):
        assert word in msg
