"""vidiv.pyro.laplace: closed-form posteriors, a flat (masked) prior, starting
AutoMultivariateNormal, AutoNormal and FBGVI at the result, refusals, and agreement with
vidiv.numpyro.laplace."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

from vidiv.errors import ModelStructureError, NonFiniteError
from vidiv.pyro import FBGVI, LaplaceResult, laplace

X = np.array([0.3, -1.2, 2.1, 0.7, 1.5])
MU0 = np.array([0.5, -1.0])
S0 = np.array([[1.0, 0.6], [0.6, 2.0]])
Y = np.array([1.0, 0.2])
NOISE = 0.5  # y ~ N(z, NOISE * I)


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    pyro.clear_param_store()
    yield
    torch.set_default_dtype(old)


def conjugate(x):
    z = pyro.sample("z", dist.Normal(0.0, 2.0))
    with pyro.plate("n", len(x)):
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def correlated(y):
    z = pyro.sample("z", dist.MultivariateNormal(torch.tensor(MU0), torch.tensor(S0)))
    pyro.sample("y", dist.MultivariateNormal(z, NOISE * torch.eye(2)), obs=y)


def flat_prior():  # V(u) = s + 1/s - u, s = exp(u): mode s = golden ratio, V'' = s + 1/s = sqrt 5
    s = pyro.sample("s", dist.LogNormal(0.0, 1.0).mask(False))  # flat on (0, inf)
    pyro.factor("f", -s - 1.0 / s)


def mixed():
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    b = pyro.sample("b", dist.Gamma(2.0, 1.0).expand([2]).to_event(1))
    pyro.sample("y", dist.Normal(a, b.sum()), obs=torch.tensor(1.0))


@pytest.fixture(scope="module")
def lap_mixed():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield laplace(mixed)
    torch.set_default_dtype(old)


def test_conjugate_gaussian_exact():
    lap = laplace(conjugate, torch.tensor(X), seed=1)
    assert isinstance(lap, LaplaceResult) and lap.success
    precision = 1 / 4 + len(X)
    np.testing.assert_allclose(lap.mean, [X.sum() / precision], atol=1e-6)
    np.testing.assert_allclose(lap.cov, [[1 / precision]], atol=1e-6)
    assert lap.site_shapes == {"z": ()} and lap.khat < 0.5


def test_correlated_gaussian_exact():
    lap = laplace(correlated, torch.tensor(Y))
    P = np.linalg.inv(S0) + np.eye(2) / NOISE
    cov = np.linalg.inv(P)
    np.testing.assert_allclose(lap.mean, cov @ (np.linalg.solve(S0, MU0) + Y / NOISE), atol=1e-6)
    np.testing.assert_allclose(lap.cov, cov, atol=1e-6)


def test_flat_prior():
    lap = laplace(flat_prior)
    phi = (1 + 5**0.5) / 2
    np.testing.assert_allclose(lap.constrained["s"], phi, atol=1e-6)
    np.testing.assert_allclose(lap.cov, [[5**-0.5]], atol=1e-6)


@pytest.mark.skip(reason="Pyro has no truncated Student-t (no TruncatedDistribution), and "
                  "its ImproperUniform cannot be traced (no sampler); the NumPyro test covers it")
def test_truncated_student_t_prior():
    pass  # pragma: no cover


@pytest.mark.parametrize("guide_cls", [AutoMultivariateNormal, AutoNormal])
def test_set_guide_starts_at_the_mode(guide_cls, lap_mixed):
    lap = lap_mixed
    guide = guide_cls(mixed)
    lap.set_guide(guide)
    median = guide.median()
    for k, v in lap.constrained.items():
        np.testing.assert_allclose(median[k].detach().numpy(), v, atol=1e-6)
    if guide_cls is AutoMultivariateNormal:  # L = diag(scale) . unit lower scale_tril
        L = (guide.scale[:, None] * guide.scale_tril).detach().numpy()
        _, cov = lap.reordered(list(guide._unconstrained_shapes))
        np.testing.assert_allclose(L @ L.T, cov, atol=1e-6)
        store = pyro.get_param_store()
        np.testing.assert_allclose(store["AutoMultivariateNormal.loc"].detach(), lap.mean,
                                   atol=1e-6)  # fmt: skip


def test_start_fbgvi_at_the_result(lap_mixed):
    lap = lap_mixed
    fb = FBGVI(mixed)
    lap.start(fb)
    assert list(fb.latent_shapes) == list(lap.site_shapes)
    np.testing.assert_allclose(fb.mean.numpy(), lap.mean, atol=1e-12)
    np.testing.assert_allclose(fb.cov.numpy(), lap.cov, atol=1e-12)


def _discrete():
    pyro.sample("k", dist.Bernoulli(0.5))


def _no_latent():
    pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.3))


def _param():
    m = pyro.param("m", torch.tensor(0.0))
    pyro.sample("z", dist.Normal(m, 1.0))


def _no_finite_start():
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.factor("never", torch.where(z > 1e9, 0.0, -torch.inf))


@pytest.mark.parametrize(
    "model, error, words",
    [
        (_discrete, ModelStructureError, ["'k' is discrete", "laplace"]),
        (_no_latent, ModelStructureError, ["no latent sample site", "laplace"]),
        (_param, ModelStructureError, ["laplace cannot learn model parameters", "['m']"]),
        (_no_finite_start, NonFiniteError, ["laplace:", "not finite", "never"]),
    ],
)
def test_refusals(model, error, words):
    with pytest.raises(error) as info:
        laplace(model)
    for w in words:
        assert w in str(info.value)
    assert "FBGVI" not in str(info.value)


def test_same_mean_and_cov_as_numpyro():
    pytest.importorskip("numpyro")
    import jax.numpy as jnp

    from tests.numpyro.test_laplace import correlated as np_correlated
    from tests.numpyro.test_laplace import mixed as np_mixed
    from vidiv.numpyro import laplace as np_laplace

    for pyro_model, numpyro_model, args in [
        (mixed, np_mixed, ((), ())),
        (correlated, np_correlated, ((torch.tensor(Y),), (jnp.asarray(Y),))),
    ]:
        a = laplace(pyro_model, *args[0], num_draws=0)
        b = np_laplace(numpyro_model, *args[1], num_draws=0)
        assert a.site_shapes == b.site_shapes
        np.testing.assert_allclose(a.mean, b.mean, atol=1e-6)
        np.testing.assert_allclose(a.cov, b.cov, atol=1e-6)
        for k in a.constrained:
            np.testing.assert_allclose(a.constrained[k], b.constrained[k], atol=1e-6)
