"""Pyro DiffusionGuide: exact path weights (Jacobian, plates), estimator graphs, LogVariance
training on a 1-D bimodal target (both modes, IS log Z), DataTree, bad input."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Predictive, Trace_ELBO

from vidiv.errors import InvalidArgumentError, VidivError
from vidiv.paths import estimator_scope, targets
from vidiv.pyro import DiffusionGuide, LogVariance


def lognormal_model():
    pyro.sample("s", dist.LogNormal(0.0, 1.0))
    with pyro.plate("p", 3):
        pyro.sample("z", dist.Normal(0.0, 1.0))


def bimodal_model():
    prior = dist.Normal(0.0, 10.0)
    x = pyro.sample("x", prior)
    pyro.factor("target", targets.bimodal_1d_log_prob(x[..., None]) - prior.log_prob(x))


def test_untrained_guide_is_the_reference_and_weights_are_exact():
    """u = 0 at init: the end point is N(0, I) (PIS default), exactly the unconstrained law of
    (log s, z): all log weights are 0 (Jacobian of exp included) and the ELBO is 0."""
    guide = DiffusionGuide(lognormal_model, num_steps=6, hidden=(8,))
    samples, log_w = guide.sample_with_log_weights(300)
    assert samples["s"].shape == (300,) and samples["z"].shape == (300, 3)
    assert bool((samples["s"] > 0).all())
    assert float(log_w.abs().max()) < 1e-12
    elbo = Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    assert abs(elbo.loss(lognormal_model, guide)) < 1e-12
    lz = guide.log_z(500)
    assert abs(lz["log_z"]) < 1e-12 and lz["ess"] == pytest.approx(500.0)
    # Predictive runs the guide inside its own vectorised plate
    pred = Predictive(lognormal_model, guide=guide, num_samples=5, parallel=True)()
    assert pred["z"].shape == (5, 3) and pred["s"].numel() == 5


def _perturbed_guide(estimator):
    guide = DiffusionGuide(lognormal_model, num_steps=5, hidden=(8,), estimator=estimator)
    guide()
    with torch.no_grad():
        for p in guide.drift.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return guide


def _latent_grads(guide):
    torch.manual_seed(5)
    tr = poutine.trace(guide).get_trace()
    site = tr.nodes["_DiffusionGuide_latent"]
    x, lq = site["value"], site["fn"].log_density
    params = list(guide.drift.parameters())
    big = lambda gs: max(0.0 if g is None else float(g.abs().max()) for g in gs)  # noqa: E731
    gx = 0.0
    if x.requires_grad:
        gx = big(torch.autograd.grad(x.sum(), params, allow_unused=True, retain_graph=True))
    gq = big(torch.autograd.grad(lq.sum(), params, allow_unused=True))
    return x.detach(), lq.detach(), x.requires_grad, gx, gq


def test_estimator_graphs_lv_detached_kl_pathwise():
    torch.manual_seed(0)
    lv = _perturbed_guide("lv")
    kl = DiffusionGuide(lognormal_model, num_steps=5, hidden=(8,), estimator="kl")
    kl()
    kl.drift.load_state_dict(lv.drift.state_dict())
    x_lv, lq_lv, req_lv, gx_lv, gq_lv = _latent_grads(lv)
    x_kl, lq_kl, req_kl, gx_kl, gq_kl = _latent_grads(kl)
    torch.testing.assert_close(x_lv, x_kl, atol=1e-12, rtol=0)
    torch.testing.assert_close(lq_lv, lq_kl, atol=1e-10, rtol=0)
    assert not req_lv and gq_lv > 1e-3
    assert req_kl and gx_kl > 1e-3 and gq_kl > 1e-3
    auto = DiffusionGuide(lognormal_model, num_steps=5, hidden=(8,))
    auto()
    with estimator_scope("lv"):
        assert not _latent_grads(auto)[2]
    assert _latent_grads(auto)[2]


def _loss_grads(make_loss, guide, seed=9):
    loss = make_loss()  # fresh: the first call may run the guide once to guess plate nesting
    loss.differentiable_loss(lognormal_model, guide)
    pyro.set_rng_seed(seed)
    value = loss.differentiable_loss(lognormal_model, guide)
    grads = torch.autograd.grad(value, list(guide.drift.parameters()))
    return float(value.detach()), torch.cat([g.reshape(-1) for g in grads])


def test_auto_estimator_follows_the_objective():
    """``estimator="auto"``: LogVariance (values detached) gets exactly the LV graph's loss and
    gradient, Trace_ELBO exactly the KL graph's."""
    torch.manual_seed(0)
    ref = _perturbed_guide("lv")
    guides = {}
    for est in ("auto", "lv", "kl"):
        g = DiffusionGuide(lognormal_model, num_steps=5, hidden=(8,), estimator=est)
        g()
        g.drift.load_state_dict(ref.drift.state_dict())
        guides[est] = g
    def lv():
        return LogVariance(num_particles=8)

    def elbo():
        return Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)

    v_auto, g_auto = _loss_grads(lv, guides["auto"])
    v_lv, g_lv = _loss_grads(lv, guides["lv"])
    assert v_auto == pytest.approx(v_lv, rel=1e-12)
    torch.testing.assert_close(g_auto, g_lv, rtol=1e-10, atol=1e-12)
    e_auto, h_auto = _loss_grads(elbo, guides["auto"])
    e_kl, h_kl = _loss_grads(elbo, guides["kl"])
    assert e_auto == pytest.approx(e_kl, rel=1e-12)
    torch.testing.assert_close(h_auto, h_kl, rtol=1e-10, atol=1e-12)
    _, g_kl_graph = _loss_grads(lv, guides["kl"])
    assert float((g_lv - g_kl_graph).abs().max()) > 1e-3


def test_logvariance_trains_bimodal_to_both_modes():
    """1-D mixture 0.5 N(-2, 0.5^2) + 0.5 N(2, 0.5^2) (log Z = 0): after 100 LogVariance steps
    both modes hold 35-65% of 4000 samples, 90% lie within 1.5 of a mode, |IS log Z| < 0.1."""
    guide = DiffusionGuide(bimodal_model, num_steps=10, hidden=(32,), estimator="lv",
                           sde_kwargs={"sigma": 1.0, "T": 4.0})
    steps = 100
    opt = pyro.optim.ClippedAdam({"lr": 2e-2, "lrd": 0.02 ** (1 / steps), "clip_norm": 10.0})
    svi = SVI(bimodal_model, guide, opt, LogVariance(num_particles=64))
    losses = [svi.step() for _ in range(steps)]
    assert np.isfinite(losses).all()
    samples, log_w = guide.sample_with_log_weights(4000)
    x = samples["x"].numpy()
    assert 0.35 < (x > 0).mean() < 0.65
    assert (np.abs(np.abs(x) - 2.0) < 1.5).mean() > 0.9
    lz = guide.log_z(4000)
    assert abs(lz["log_z"]) < 0.1 and lz["num_dropped"] == 0
    dt = guide.to_datatree(100, losses=losses)
    assert dt["posterior"]["x"].shape == (1, 100)
    assert dt.attrs["backend"] == "pyro"


def test_bad_input_messages():
    with pytest.raises(InvalidArgumentError, match="num_steps must be an integer >= 1, got 0"):
        DiffusionGuide(lognormal_model, num_steps=0)
    with pytest.raises(InvalidArgumentError, match="unknown sde 'ou'"):
        DiffusionGuide(lognormal_model, sde="ou")
    with pytest.raises(InvalidArgumentError, match="hidden must be a non-empty sequence"):
        DiffusionGuide(lognormal_model, hidden=(0,))
    with pytest.raises(VidivError, match="estimator must be 'auto', 'lv'"):
        DiffusionGuide(lognormal_model, estimator="rkl")
    with pytest.raises(InvalidArgumentError, match="num_particles must be an integer >= 2"):
        LogVariance(num_particles=1)
