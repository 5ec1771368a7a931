"""Pyro and NumPyro objectives give the same loss and gradients for identical draws.

The NumPyro objectives split keys like NumPyro's RenyiELBO (documented in
``vidiv.numpyro._traces.particle_terms``), so the draws of a NumPyro guide can be recomputed
outside the objective. The Pyro guide then uses a Normal whose reparameterised sample is
``loc + scale * eps`` with exactly those ``eps``: same particles, same log densities, and, through
autodiff in each framework, gradients that must agree to float64 precision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import pytest
import torch
from numpyro import handlers
from torch.distributions import constraints

import vidiv.numpyro as vn
import vidiv.pyro as vp
from tests.closed_form import conjugate_normal

K = 8
LOC0 = np.array([0.3, 1.2])
SCALE0 = np.array([0.5, 0.4])
LG = conjugate_normal(n=10, d=2, seed=3)


def np_model():
    z = numpyro.sample("z", ndist.Normal(jnp.zeros(2), 2.0).to_event(1))
    with numpyro.plate("data", len(LG.y)):
        numpyro.sample(
            "y", ndist.Normal((jnp.asarray(LG.X) * z).sum(-1), LG.sigma), obs=jnp.asarray(LG.y)
        )


def np_guide():
    loc = numpyro.param("loc", jnp.asarray(LOC0))
    scale = numpyro.param("scale", jnp.asarray(SCALE0))
    numpyro.sample("z", ndist.Normal(loc, scale).to_event(1))


def numpyro_draws(rng_key, num_particles):
    """The z's the NumPyro objectives draw for ``rng_key`` (their documented key scheme)."""
    _, key = jax.random.split(rng_key)
    zs = []
    for particle_key in jax.random.split(key, num_particles):
        _, guide_seed = jax.random.split(particle_key)
        tr = handlers.trace(handlers.seed(np_guide, guide_seed)).get_trace()
        zs.append(np.asarray(tr["z"]["value"]))
    return np.stack(zs)


class FixedNoiseNormal(pdist.TorchDistribution):
    """Diagonal Normal (event dim 1) whose reparameterised sample uses given standard noise."""

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, scale, eps):
        self.loc, self.scale, self.eps = loc, scale, eps
        super().__init__(eps.shape[:-1], eps.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        eps = self.eps.expand(tuple(batch_shape) + tuple(self.event_shape))
        return FixedNoiseNormal(self.loc, self.scale, eps)

    def rsample(self, sample_shape=()):
        return self.loc + self.scale * self.eps

    def log_prob(self, value):
        return pdist.Normal(self.loc, self.scale).log_prob(value).sum(-1)


def pyro_model():
    z = pyro.sample("z", pdist.Normal(torch.zeros(2), 2.0).to_event(1))
    with pyro.plate("data", len(LG.y)):
        pyro.sample(
            "y",
            pdist.Normal((torch.as_tensor(LG.X) * z).sum(-1), LG.sigma),
            obs=torch.as_tensor(LG.y),
        )


def make_pyro_guide(eps):
    eps = torch.as_tensor(eps).reshape(K, 1, 2)  # particle plate at dim -2 (data plate at -1)

    def guide():
        loc = pyro.param("loc", torch.as_tensor(LOC0))
        scale = pyro.param("scale", torch.as_tensor(SCALE0))
        pyro.sample("z", FixedNoiseNormal(loc, scale, eps))

    return guide


def numpyro_value_and_grad(objective, rng_key):
    params = {"loc": jnp.asarray(LOC0), "scale": jnp.asarray(SCALE0)}

    def loss(p):
        out = objective.loss(rng_key, p, np_model, np_guide)
        return out["loss"] if isinstance(out, dict) else out

    value, grads = jax.value_and_grad(loss)(params)
    return float(value), np.asarray(grads["loc"]), np.asarray(grads["scale"])


def pyro_value_and_grad(objective, guide):
    pyro.clear_param_store()
    # the fixed-noise guide draws all K particles at once, so it cannot be run as one draw: skip
    # the first-call checks against one unvectorised draw (tested in tests/pyro/test_users_models)
    objective._checked_pair, objective.max_plate_nesting = (pyro_model, guide), 1
    loss = objective.differentiable_loss(pyro_model, guide)
    loc, scale = pyro.param("loc").unconstrained(), pyro.param("scale").unconstrained()
    g_loc, g_scale = torch.autograd.grad(loss, (loc, scale))
    return float(loss.detach()), g_loc.numpy(), g_scale.numpy()


OBJECTIVES = {
    "alpha=0": lambda m: m.AlphaDivergence(alpha=0.0, num_particles=K),
    "alpha=0.5": lambda m: m.AlphaDivergence(alpha=0.5, num_particles=K),
    "alpha=1": lambda m: m.AlphaDivergence(alpha=1.0, num_particles=K),
    "alpha=2": lambda m: m.AlphaDivergence(alpha=2.0, num_particles=K),
    "alpha=0.5 dreg": lambda m: m.AlphaDivergence(alpha=0.5, num_particles=K, gradient="dreg"),
    "ChiSquaredVIS": lambda m: m.ChiSquaredVIS(num_particles=K),
    "LogVariance": lambda m: m.LogVariance(num_particles=K),
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_same_draws_same_loss_and_gradients(name):
    rng_key = jax.random.PRNGKey(11)
    z = numpyro_draws(rng_key, K)
    eps = (z - LOC0) / SCALE0
    nv, n_loc, n_scale = numpyro_value_and_grad(OBJECTIVES[name](vn), rng_key)
    pv, p_loc, p_scale = pyro_value_and_grad(OBJECTIVES[name](vp), make_pyro_guide(eps))
    assert pv == pytest.approx(nv, rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(p_loc, n_loc, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(p_scale, n_scale, rtol=1e-8, atol=1e-10)
    assert np.abs(n_loc).max() > 1e-3  # the comparison is not between two zero vectors
