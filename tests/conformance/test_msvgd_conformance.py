"""Pyro and NumPyro MirroredSVGD give the same log p, the same Stein direction φ and the same
trajectory for the same particles (float64), on a model with every kind of mirror map."""

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

from vidiv.numpyro import MirroredSVGD as NumPyroMSVGD
from vidiv.pyro import MirroredSVGD as PyroMSVGD

Y = np.array([0.3, -1.2, 2.2, 0.7, 1.5])
COUNTS = np.array([[2.0, 5.0, 1.0], [0.0, 3.0, 5.0]])
P = 9


def pyro_model():
    y, counts = torch.as_tensor(Y), torch.as_tensor(COUNTS)
    with pyro.plate("groups", 2):
        w = pyro.sample("w", pdist.Dirichlet(torch.tensor([0.5, 1.0, 2.0])))
        pyro.sample("counts", pdist.Multinomial(8, w), obs=counts)
    scale = pyro.sample("scale", pdist.Gamma(torch.tensor([2.0, 3.0]), 1.0).to_event(1))
    frac = pyro.sample("frac", pdist.Beta(2.0, 2.0))
    loc = pyro.sample("loc", pdist.Normal(torch.zeros(2), 2.0).to_event(1))
    mean = frac * loc[..., 0] + (1 - frac) * loc[..., 1]
    with pyro.plate("data", len(Y)):
        pyro.sample("y", pdist.Normal(mean, scale.sum(-1)), obs=y)


def numpyro_model():
    y, counts = jnp.asarray(Y), jnp.asarray(COUNTS)
    with numpyro.plate("groups", 2):
        w = numpyro.sample("w", ndist.Dirichlet(jnp.array([0.5, 1.0, 2.0])))
        numpyro.sample("counts", ndist.Multinomial(8, w), obs=counts)
    scale = numpyro.sample("scale", ndist.Gamma(jnp.array([2.0, 3.0]), 1.0).to_event(1))
    frac = numpyro.sample("frac", ndist.Beta(2.0, 2.0))
    loc = numpyro.sample("loc", ndist.Normal(jnp.zeros(2), 2.0).to_event(1))
    mean = frac * loc[..., 0] + (1 - frac) * loc[..., 1]
    with numpyro.plate("data", len(Y)):
        numpyro.sample("y", ndist.Normal(mean, scale.sum(-1)), obs=y)


def _init():
    rng = np.random.default_rng(5)
    w = rng.dirichlet([1.0, 1.0, 1.0], size=(P, 2))
    w[0, 1] = [1e-30, 0.4, 0.6 - 1e-30]  # at the boundary (count 0: torch clamps probs)
    return {"w": w, "scale": rng.gamma(2.0, 1.0, size=(P, 2)), "frac": rng.beta(2, 2, size=P),
            "loc": rng.normal(size=(P, 2))}


@pytest.mark.parametrize(
    "opts", [{"variant": "msvgd"}, {"variant": "msvgd", "mode": "coordinatewise"},
             {"variant": "msvgd", "kernel": "rbf"}, {"variant": "msvgd", "kernel_space": "dual"},
             {"variant": "msvgd", "kernel_space": "primal"},
             {"variant": "msvgd", "mode": "coordinatewise", "kernel_space": "primal"},
             {"variant": "svmd"}], ids=str
)
def test_same_direction_and_log_p(opts):
    init = _init()
    tp = PyroMSVGD(pyro_model, P, init={k: torch.as_tensor(v) for k, v in init.items()}, **opts)
    jp = NumPyroMSVGD(numpyro_model, P, init=init, **opts)
    assert tp.kernel_space == jp.kernel_space == opts.get("kernel_space", "auto")
    state = jp.init(jax.random.PRNGKey(0))
    assert tp.log_p().shape == (P,)
    assert tp.layout.names == jp.layout.names == ["w", "scale", "frac", "loc"]
    np.testing.assert_allclose(tp.log_p().numpy(), np.asarray(jp.log_p(state)), rtol=1e-10)
    phi_t, phi_j = tp.direction().numpy(), np.asarray(jp.direction(state))
    assert phi_t.shape == (P, 2 * 2 + 2 + 1 + 2)
    assert np.all(np.isfinite(phi_t))
    np.testing.assert_allclose(phi_t, phi_j, rtol=1e-8, atol=1e-8)


def test_same_trajectory_with_adam():
    """Five Adam steps (same update rule in both hosts) land on the same particles."""
    init = _init()
    tp = PyroMSVGD(pyro_model, P, optim=pyro.optim.Adam({"lr": 0.05}),
                   init={k: torch.as_tensor(v) for k, v in init.items()})
    jp = NumPyroMSVGD(numpyro_model, P, optim=numpyro.optim.Adam(0.05), init=init)
    for _ in range(5):
        tp.step()
    res = jp.run(jax.random.PRNGKey(0), 5, progress_bar=False)
    for name, value in tp.get_samples().items():
        np.testing.assert_allclose(value.numpy(), np.asarray(res.params[name]), rtol=1e-8,
                                   atol=1e-12)
