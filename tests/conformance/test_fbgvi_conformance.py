"""Pyro and NumPyro FBGVI give the same iterates for the same drawn noise (float64)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
pyro = pytest.importorskip("pyro")
numpyro = pytest.importorskip("numpyro")

import jax.numpy as jnp  # noqa: E402
import numpyro.distributions as ndist  # noqa: E402
import pyro.distributions as pdist  # noqa: E402

from vidiv.gaussian import Decay  # noqa: E402
from vidiv.numpyro import FBGVI as NFBGVI  # noqa: E402
from vidiv.pyro import FBGVI as PFBGVI  # noqa: E402

Y = np.random.default_rng(7).normal(0.8, 1.3, size=12)


def pyro_model(y):
    z = pyro.sample("z", pdist.Normal(0.0, 1.0).expand([2]).to_event(1))
    a = pyro.sample("a", pdist.LogNormal(0.0, 0.5))
    with pyro.plate("n", y.shape[0]):
        pyro.sample("y", pdist.Normal(z[0] + 0.5 * z[1], a), obs=y)


def numpyro_model(y):
    z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([2]).to_event(1))
    a = numpyro.sample("a", ndist.LogNormal(0.0, 0.5))
    with numpyro.plate("n", y.shape[0]):
        numpyro.sample("y", ndist.Normal(z[0] + 0.5 * z[1], a), obs=y)


@pytest.mark.parametrize("precondition", [False, True])
@pytest.mark.parametrize(
    "hessian,variant,num_samples",
    [("exact", "fbgvi", 1), ("stein", "fbgvi", 3), ("exact", "bwgd", 2)],
)
def test_same_iterates_for_same_noise(hessian, variant, num_samples, precondition):
    _compare(hessian, variant, num_samples, start=None, precondition=precondition)


def test_same_laplace_start_and_iterates_with_the_defaults():
    # FBGVI() with no arguments: both start at their own Laplace approximation (L-BFGS-B to
    # gtol 1e-9) and then take the same whitened steps for the same draws
    pf, nf = PFBGVI(pyro_model), NFBGVI(numpyro_model)
    y_t, y_j = torch.tensor(Y), jnp.asarray(Y)
    pf.setup(y_t)
    state = nf.init(jax.random.PRNGKey(0), y_j)
    np.testing.assert_allclose(pf.mean.numpy(), np.asarray(state.mean), atol=1e-6)
    np.testing.assert_allclose(pf.cov.numpy(), np.asarray(state.cov), atol=1e-6)
    np.testing.assert_allclose(pf.mean.numpy(), pf.laplace.mean, atol=0)
    noise = np.random.default_rng(1).standard_normal((10, 4, 3))
    for k in range(10):
        loss_p = pf.step_with_noise(torch.tensor(noise[k]), y_t)
        state, loss_n = nf.update_with_noise(state, jnp.asarray(noise[k]), y_j)
        assert loss_p == pytest.approx(float(loss_n), abs=1e-5)
    np.testing.assert_allclose(pf.mean.numpy(), np.asarray(state.mean), atol=1e-5)
    np.testing.assert_allclose(pf.cov.numpy(), np.asarray(state.cov), atol=1e-5)
    assert np.abs(pf.mean.numpy() - pf.laplace.mean).max() > 1e-3  # the steps moved q


def test_same_iterates_from_the_same_set_gaussian_start():
    # an arbitrary correlated start in the flat layout z (2,), log a (); the default step size is
    # re-derived at its mean by both drivers
    rng = np.random.default_rng(3)
    A = rng.standard_normal((3, 3))
    start = (np.array([0.5, -0.3, 0.2]), 0.05 * (A @ A.T) + 0.02 * np.eye(3))
    _compare("exact", "fbgvi", 2, start=start)


def _compare(hessian, variant, num_samples, start, precondition=False):
    kw = dict(num_samples=num_samples, hessian=hessian, variant=variant, schedule=Decay(10.0),
              init="isotropic", antithetic=False, precondition=precondition)
    pf = PFBGVI(pyro_model, **kw)
    nf = NFBGVI(numpyro_model, **kw)
    y_t, y_j = torch.tensor(Y), jnp.asarray(Y)
    state = nf.init(jax.random.PRNGKey(0), y_j)
    if start is not None:
        pf.setup(y_t)
        assert list(pf.latent_shapes) == list(nf.latent_shapes) == ["z", "a"]
        pf.set_gaussian(*start)
        state = nf.set_gaussian(state, *start)
    noise = np.random.default_rng(1).standard_normal((25, num_samples, 3)) * 0.5
    for k in range(25):
        loss_p = pf.step_with_noise(torch.tensor(noise[k]), y_t)
        state, loss_n = nf.update_with_noise(state, jnp.asarray(noise[k]), y_j)
        if k == 0:  # default step size 0.5 / λ_max(∇²V(m0)) agrees
            assert pf.eta0 == pytest.approx(nf.eta0, rel=1e-12)
            assert start is None or pf.eta0 == pytest.approx(float(state.step_size), rel=1e-12)
        np.testing.assert_allclose(pf.mean.numpy(), np.asarray(state.mean), rtol=0, atol=1e-8)
        np.testing.assert_allclose(pf.cov.numpy(), np.asarray(state.cov), rtol=0, atol=1e-8)
        assert loss_p == pytest.approx(float(loss_n), rel=1e-12, abs=1e-8)
    # both moved away from the start: the comparison is not between two initial states
    m_start = np.zeros(3) if start is None else start[0]
    assert np.abs(pf.mean.numpy() - m_start).max() > 0.1
    # the exposed guides agree too
    np.testing.assert_allclose(
        (pf.guide.scale[:, None] * pf.guide.scale_tril).detach().numpy(),
        np.asarray(nf.get_params(state)["auto_scale_tril"]),
        atol=1e-8,
    )
