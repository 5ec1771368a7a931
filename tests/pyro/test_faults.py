"""Issue 15 in Pyro: zero-weight particles (log p = -inf) with DReG and with the VIMCO score term
of a discrete guide site give finite losses and gradients, equal to the estimator computed on the
particles with positive weight (draws recorded from the guide)."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam
from scipy.stats import norm

from tests.estimators.oracles import categorical_vimco, truncated_normal_dreg
from vidiv.pyro import AlphaDivergence

S = 12
CUT = -0.5  # the model gives z < CUT zero density
PROBS = torch.tensor([0.3, 0.3, 0.4])


def truncated_model():
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.factor("cut", torch.where(z < CUT, -math.inf, 0.0))


def discrete_model():
    k = pyro.sample("k", dist.Categorical(PROBS))
    pyro.factor("cut", torch.where(k == 2, -math.inf, 0.0))  # k = 2 is outside the support
    pyro.sample("y", dist.Normal(k.double(), 1.0), obs=torch.tensor(0.5))


def _recording(make_dist, site, seen):
    """A guide sampling ``site`` from ``make_dist()`` that records its draws in ``seen``."""

    def guide():
        value = pyro.sample(site, make_dist())
        seen.append(value.detach().clone())

    return guide


def _draws(seen):
    full = [v for v in seen if v.shape == (len(seen[-1]),) and v.numel() > 1]
    assert full and all(torch.equal(v, full[0]) for v in full)  # DReG replays the same draws
    return full[0].numpy()


@pytest.mark.parametrize("seed_", range(3))
def test_dreg_zero_weight_particles_exact_gradient(seed_):
    pyro.set_rng_seed(seed_)
    alpha, loc0, scale0 = 0.5, 0.0, 1.2
    loc = torch.tensor(loc0, requires_grad=True)
    scale = torch.tensor(scale0, requires_grad=True)
    seen: list = []
    guide = _recording(lambda: dist.Normal(loc, scale), "z", seen)
    loss_fn = AlphaDivergence(alpha=alpha, num_particles=S, gradient="dreg",
                              vectorize_particles=True, max_plate_nesting=0)  # fmt: skip
    loss = loss_fn.differentiable_loss(truncated_model, guide)
    g_loc, g_scale = torch.autograd.grad(loss, (loc, scale))
    z = _draws(seen)
    assert 0 < (z < CUT).sum() < S  # some particles have zero weight (about a third)
    ref, g_loc_ref, g_scale_ref = truncated_normal_dreg(z, loc0, scale0, alpha, CUT)
    assert loss.item() == pytest.approx(ref, rel=1e-12)
    assert float(g_loc) == pytest.approx(g_loc_ref, rel=1e-10)
    assert float(g_scale) == pytest.approx(g_scale_ref, rel=1e-10)


def test_dreg_truncated_support_trains_without_nan():
    def guide():
        loc = pyro.param("loc", torch.tensor(0.0))
        scale = pyro.param("scale", torch.tensor(1.2), constraint=dist.constraints.positive)
        pyro.sample("z", dist.Normal(loc, scale))

    svi = SVI(truncated_model, guide, Adam({"lr": 0.02}),
              AlphaDivergence(alpha=0.5, num_particles=S, gradient="dreg"))  # fmt: skip
    losses = [svi.step() for _ in range(150)]
    assert np.isfinite(losses).all()  # was NaN at the first step
    assert math.isfinite(pyro.param("loc").item()) and math.isfinite(pyro.param("scale").item())


def test_vimco_zero_weight_particle_exact_gradient():
    pyro.set_rng_seed(3)
    alpha, K = 0.5, 6
    p = torch.tensor([0.2, 0.3, 0.5], requires_grad=True)
    seen: list = []
    guide = _recording(lambda: dist.Categorical(p), "k", seen)
    loss_fn = AlphaDivergence(alpha=alpha, num_particles=K, vectorize_particles=True,
                              max_plate_nesting=0)  # fmt: skip
    loss = loss_fn.differentiable_loss(discrete_model, guide)
    (g,) = torch.autograd.grad(loss, p)
    k = _draws(seen).astype(int)
    assert 0 < (k == 2).sum() < K
    lp = np.log(PROBS.numpy()[k]) + norm.logpdf(0.5, k, 1.0)
    lp[k == 2] = -np.inf
    # torch's Categorical normalises its probs: d log q(k) / dp_j = [k = j] / p_j - 1
    ref, expected = categorical_vimco(lp, k, p.detach().numpy(), alpha, normalised=True)
    assert loss.item() == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-10)


def test_vimco_zero_weight_value_trains_without_crash():
    def guide():
        p = pyro.param("p", torch.ones(3) / 3, constraint=dist.constraints.simplex)
        pyro.sample("k", dist.Categorical(p))

    svi = SVI(discrete_model, guide, Adam({"lr": 0.05}),
              AlphaDivergence(alpha=0.5, num_particles=6))  # fmt: skip
    losses = [svi.step() for _ in range(300)]  # crashed at the second step (NaN probs)
    assert np.isfinite(losses).all()
    p = pyro.param("p").detach().numpy()
    assert np.isfinite(p).all() and p[2] < 0.05
