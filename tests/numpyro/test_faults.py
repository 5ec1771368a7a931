"""Issue 15 in NumPyro: zero-weight particles (log p = -inf) with DReG and with the VIMCO score
term of a discrete guide site give finite losses and gradients, equal to the estimator computed
on the particles with positive weight (draws replayed from the same keys)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.optim as optim
import pytest
from jax import random
from numpyro.handlers import seed, substitute, trace
from numpyro.infer import SVI
from scipy.stats import norm

from tests.estimators.oracles import categorical_vimco, truncated_normal_dreg
from vidiv.numpyro import AlphaDivergence

S = 12
CUT = -0.5  # the model gives z < CUT zero density


def truncated_model():
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    numpyro.factor("cut", jnp.where(z < CUT, -jnp.inf, 0.0))


def normal_guide():
    loc = numpyro.param("loc", 0.0)
    scale = numpyro.param("scale", 1.2, constraint=dist.constraints.positive)
    numpyro.sample("z", dist.Normal(loc, scale))


PROBS = np.array([0.3, 0.3, 0.4])


def discrete_model():
    k = numpyro.sample("k", dist.Categorical(jnp.asarray(PROBS)))
    numpyro.factor("cut", jnp.where(k == 2, -jnp.inf, 0.0))  # k = 2 is outside the support
    numpyro.sample("y", dist.Normal(k.astype(jnp.float64), 1.0), obs=0.5)


def categorical_guide():
    p = numpyro.param("p", jnp.ones(3) / 3, constraint=dist.constraints.simplex)
    numpyro.sample("k", dist.Categorical(p))


def _draws(rng_key, guide, params, site, num_particles=S):
    """The guide's draws for ``rng_key`` as particle_terms makes them (NumPyro RenyiELBO keys)."""
    _, key = random.split(rng_key)
    out = []
    for k in random.split(key, num_particles):
        _, guide_seed = random.split(k)
        tr = trace(substitute(seed(guide, guide_seed), data=params)).get_trace()
        out.append(float(tr[site]["value"]))
    return np.array(out)


@pytest.mark.parametrize("seed_", range(3))
def test_dreg_zero_weight_particles_exact_gradient(seed_):
    alpha = 0.5
    loss = AlphaDivergence(alpha=alpha, num_particles=S, gradient="dreg")
    params = {"loc": jnp.asarray(0.0), "scale": jnp.asarray(1.2)}
    key = random.PRNGKey(seed_)
    value, grads = jax.value_and_grad(
        lambda p: loss.loss(key, p, truncated_model, normal_guide)
    )(params)
    z = _draws(key, normal_guide, params, "z")
    assert 0 < (z < CUT).sum() < S  # some particles have zero weight (about a third)
    ref, g_loc, g_scale = truncated_normal_dreg(z, 0.0, 1.2, alpha, CUT)
    assert float(value) == pytest.approx(ref, rel=1e-12)
    assert float(grads["loc"]) == pytest.approx(g_loc, rel=1e-10)
    assert float(grads["scale"]) == pytest.approx(g_scale, rel=1e-10)


@pytest.mark.parametrize("gradient", ["dreg", "reparam"])
def test_truncated_support_trains_without_nan(gradient):
    """No NaN loss or parameter (before: NaN from the first DReG step). Pathwise gradients do
    not see the jump of the density at the cut, so the fits are not the Renyi optimum: DReG stops
    at N(0, 1) (log w constant on the live draws), and the standard gradient drifts below the
    cut until whole steps have no live particle; such a step has loss +inf and a zero gradient
    (it was NaN and wrote NaN into the parameters), so the parameters stay finite."""
    svi = SVI(truncated_model, normal_guide, optim.Adam(0.02),
              AlphaDivergence(alpha=0.5, num_particles=S, gradient=gradient))  # fmt: skip
    res = svi.run(random.PRNGKey(0), 300, progress_bar=False)
    losses = np.asarray(res.losses)
    assert not np.isnan(losses).any()
    assert np.isfinite(losses).all() or gradient == "reparam"
    assert np.isposinf(losses[~np.isfinite(losses)]).all()
    assert all(np.isfinite(float(v)) for v in res.params.values())


def test_vimco_zero_weight_particle_exact_gradient():
    alpha, K = 0.5, 6
    loss = AlphaDivergence(alpha=alpha, num_particles=K)
    params = {"p": jnp.asarray([0.2, 0.3, 0.5])}
    key = random.PRNGKey(3)
    value, grads = jax.value_and_grad(
        lambda p: loss.loss(key, p, discrete_model, categorical_guide)
    )(params)
    k = _draws(key, categorical_guide, params, "k", K).astype(int)
    assert 0 < (k == 2).sum() < K
    lp = np.log(PROBS[k]) + norm.logpdf(0.5, k, 1.0)
    lp[k == 2] = -np.inf
    ref, expected = categorical_vimco(lp, k, np.asarray(params["p"]), alpha, normalised=False)
    assert float(value) == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(np.asarray(grads["p"]), expected, rtol=1e-10)


def test_vimco_zero_weight_value_trains_without_nan():
    svi = SVI(discrete_model, categorical_guide, optim.Adam(0.05),
              AlphaDivergence(alpha=0.5, num_particles=6))  # fmt: skip
    res = svi.run(random.PRNGKey(0), 300, progress_bar=False)
    assert np.isfinite(np.asarray(res.losses)).all()  # was NaN from the first step
    p = np.asarray(res.params["p"])
    assert np.isfinite(p).all() and p[2] < 0.05
