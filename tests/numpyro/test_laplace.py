"""vidiv.numpyro.laplace: closed-form posteriors, improper and truncated priors, starting SVI
and FBGVI at the result, refusals (float64: tests/conftest.py enables jax x64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.optimize
import scipy.stats
from numpyro.distributions import constraints
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta, AutoMultivariateNormal, AutoNormal
from numpyro.optim import Adam

from vidiv.errors import InvalidArgumentError, ModelStructureError, NonFiniteError
from vidiv.numpyro import FBGVI, LaplaceResult, laplace

X = np.array([0.3, -1.2, 2.1, 0.7, 1.5])
MU0 = np.array([0.5, -1.0])
S0 = np.array([[1.0, 0.6], [0.6, 2.0]])
Y = np.array([1.0, 0.2])
NOISE = 0.5  # y ~ N(z, NOISE * I)


def conjugate(x):
    z = numpyro.sample("z", dist.Normal(0.0, 2.0))
    with numpyro.plate("n", len(x)):
        numpyro.sample("x", dist.Normal(z, 1.0), obs=x)


def correlated(y):
    z = numpyro.sample("z", dist.MultivariateNormal(jnp.asarray(MU0), jnp.asarray(S0)))
    numpyro.sample("y", dist.MultivariateNormal(z, NOISE * jnp.eye(2)), obs=y)


def improper():  # V(u) = s + 1/s - u, s = exp(u): mode s = golden ratio, V'' = s + 1/s = sqrt 5
    s = numpyro.sample("s", dist.ImproperUniform(constraints.positive, (), ()))
    numpyro.factor("f", -s - 1.0 / s)


def truncated():
    t = numpyro.sample("t", dist.TruncatedDistribution(dist.StudentT(3.0, 0.0, 1.0), low=0.0))
    numpyro.sample("x", dist.Normal(t, 1.0).expand([2]).to_event(1), obs=jnp.array([1.0, 2.0]))


def mixed():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Gamma(2.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("y", dist.Normal(a, b.sum()), obs=1.0)


@pytest.fixture(scope="module")
def lap_mixed():
    return laplace(mixed)


def correlated_exact():
    P = np.linalg.inv(S0) + np.eye(2) / NOISE
    cov = np.linalg.inv(P)
    return cov @ (np.linalg.solve(S0, MU0) + Y / NOISE), cov


def test_conjugate_gaussian_exact():
    lap = laplace(conjugate, jnp.asarray(X), rng_key=jax.random.PRNGKey(1))
    assert isinstance(lap, LaplaceResult) and lap.success
    precision = 1 / 4 + len(X)
    np.testing.assert_allclose(lap.mean, [X.sum() / precision], atol=1e-6)
    np.testing.assert_allclose(lap.cov, [[1 / precision]], atol=1e-6)
    np.testing.assert_allclose(lap.scale_tril, [[precision**-0.5]], atol=1e-6)
    assert lap.site_shapes == {"z": ()} and lap.khat < 0.5  # q is the posterior itself
    np.testing.assert_allclose(lap.constrained["z"], X.sum() / precision, atol=1e-6)


def test_correlated_gaussian_exact():
    lap = laplace(correlated, jnp.asarray(Y))
    mean, cov = correlated_exact()
    np.testing.assert_allclose(lap.mean, mean, atol=1e-6)
    np.testing.assert_allclose(lap.cov, cov, atol=1e-6)
    assert lap.site_shapes == {"z": (2,)}


def test_improper_uniform_prior():
    lap = laplace(improper)
    phi = (1 + 5**0.5) / 2
    np.testing.assert_allclose(lap.constrained["s"], phi, atol=1e-6)
    np.testing.assert_allclose(lap.mean, [np.log(phi)], atol=1e-6)
    np.testing.assert_allclose(lap.cov, [[5**-0.5]], atol=1e-6)


def test_truncated_student_t_prior_falls_back_to_uniform_start():
    lap = laplace(truncated)  # init_to_median needs the icdf (betaincinv): the next start is used
    assert lap.init_strategy == "init_to_uniform" and lap.success

    def V(u):  # the same log density in u = log t, by scipy
        t = np.exp(u)
        lp = scipy.stats.t.logpdf(t, 3.0) + np.log(2.0)  # half of the Student-t above 0
        lp += scipy.stats.norm.logpdf([1.0, 2.0], t).sum()
        return -(lp + u)

    res = scipy.optimize.minimize_scalar(V, bracket=(-1.0, 1.0), tol=1e-12)
    np.testing.assert_allclose(lap.mean, [res.x], atol=1e-6)
    np.testing.assert_allclose(lap.constrained["t"], np.exp(res.x), atol=1e-6)
    h = 1e-4
    curv = (V(res.x + h) - 2 * V(res.x) + V(res.x - h)) / h**2
    np.testing.assert_allclose(lap.cov, [[1 / curv]], rtol=1e-4)


@pytest.mark.parametrize("guide_cls", [AutoMultivariateNormal, AutoNormal])
def test_init_params_start_svi_at_the_mode(guide_cls, lap_mixed):
    lap = lap_mixed
    guide = guide_cls(mixed)
    svi = SVI(mixed, guide, Adam(1e-3), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), init_params=lap.init_params(guide))
    median = guide.median(svi.get_params(state))
    for k, v in lap.constrained.items():
        np.testing.assert_allclose(median[k], v, atol=1e-6)
    params = svi.get_params(state)
    if guide_cls is AutoMultivariateNormal:
        loc, cov = lap.reordered(list(guide._init_locs))
        L = params["auto_scale_tril"]
        np.testing.assert_allclose(params["auto_loc"], loc, atol=1e-6)
        np.testing.assert_allclose(L @ L.T, cov, atol=1e-6)
    else:
        np.testing.assert_allclose(params["b_auto_scale"], np.sqrt(np.diag(lap.cov))[1:], atol=1e-6)
    with pytest.raises(InvalidArgumentError, match="supports AutoMultivariateNormal and AutoN"):
        lap.init_params(AutoDelta(mixed))


def test_start_fbgvi_at_the_result(lap_mixed):
    lap = lap_mixed
    fb = FBGVI(mixed)
    state = lap.start(fb)
    m, c = lap.reordered(list(fb.latent_shapes))
    np.testing.assert_allclose(state.mean, m, atol=1e-12)
    np.testing.assert_allclose(state.cov, c, atol=1e-12)
    assert list(fb.latent_shapes) == list(lap.site_shapes)  # same order: m is lap.mean
    np.testing.assert_allclose(state.mean, lap.mean, atol=1e-12)


def _discrete():
    numpyro.sample("k", dist.Bernoulli(0.5))


def _no_latent():
    numpyro.sample("x", dist.Normal(0.0, 1.0), obs=0.3)


def _param():
    m = numpyro.param("m", 0.0)
    numpyro.sample("z", dist.Normal(m, 1.0))


def _no_finite_start():
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    numpyro.factor("never", jnp.where(z > 1e9, 0.0, -jnp.inf))


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
