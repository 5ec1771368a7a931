"""Pyro and NumPyro DiffusionGuides compute the same path log-RND for the same noise and drift
weights (float64, 1e-8), and the path core gives the same numbers in numpy, torch and jax."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from vidiv.paths import make_sde, path_log_q, rollout


def _ctrl(x, t):
    return 0.5 * x - 0.2 * t + 0.1 * x * x


@pytest.mark.parametrize("sde", ["pis", "vp"])
def test_core_rollout_same_in_numpy_torch_jax(sde):
    ref = make_sde(sde)
    s = ref.schedule(15)
    rng = np.random.default_rng(0)
    x0, xi = ref.initial_std * rng.standard_normal((7, 3)), rng.standard_normal((15, 7, 3))
    outs = {}
    for name, conv in (("numpy", np.asarray), ("torch", torch.as_tensor), ("jax", jnp.asarray)):
        for est in ("lv", "kl"):
            r = rollout(_ctrl, conv(x0), conv(xi), s, est)
            lq = path_log_q(r.running, r.ito, ref.log_p_ref(r.x, 15))
            outs[name, est] = (np.asarray(r.x), np.asarray(lq))
    base_x, base_q = outs["numpy", "lv"]
    for (x, q) in outs.values():
        np.testing.assert_allclose(x, base_x, rtol=0, atol=1e-12)
        np.testing.assert_allclose(q, base_q, rtol=0, atol=1e-12)


def _pyro_model():
    import pyro
    import pyro.distributions as dist

    pyro.sample("a", dist.LogNormal(0.3, 0.8))
    z = pyro.sample("z", dist.Normal(torch.tensor([1.0, -0.5]), 0.7).to_event(1))
    pyro.sample("y", dist.Normal(z.sum(-1), 0.5), obs=torch.tensor(0.4))


def _numpyro_model():
    import numpyro
    import numpyro.distributions as dist

    numpyro.sample("a", dist.LogNormal(0.3, 0.8))
    z = numpyro.sample("z", dist.Normal(jnp.array([1.0, -0.5]), 0.7).to_event(1))
    numpyro.sample("y", dist.Normal(z.sum(-1), 0.5), obs=jnp.array(0.4))


@pytest.mark.parametrize("sde", ["pis", "vp"])
def test_pyro_and_numpyro_guides_agree(sde):
    from numpyro import handlers

    from vidiv.numpyro import DiffusionGuide as NGuide
    from vidiv.pyro import DiffusionGuide as PGuide

    kw = dict(num_steps=12, hidden=(16, 8), sde=sde)
    pg = PGuide(_pyro_model, **kw)
    pg()
    torch.manual_seed(3)
    with torch.no_grad():
        for p in pg.drift.parameters():
            p.add_(0.4 * torch.randn_like(p))
    ng = NGuide(_numpyro_model, **kw)
    handlers.seed(ng, 0)()
    net = [jnp.asarray(p.detach().numpy()) for p in pg.drift.net]
    coef = [jnp.asarray(p.detach().numpy()) for p in pg.drift.coef]
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal((9, 3)), rng.standard_normal((12, 9, 3)))
    for est in ("lv", "kl"):
        with torch.no_grad() if est == "lv" else torch.enable_grad():
            x_p, lq_p = pg.simulate(9, est, noise=tuple(torch.as_tensor(a) for a in noise))
        x_n, lq_n = ng.simulate(net, coef, None, 9, est, noise=noise)
        np.testing.assert_allclose(np.asarray(x_n), x_p.detach().numpy(), rtol=0, atol=1e-8)
        np.testing.assert_allclose(np.asarray(lq_n), lq_p.detach().numpy(), rtol=0, atol=1e-8)
    # the target side (unconstrained log joint incl. log-det-Jacobian) agrees too
    from vidiv.pyro._diffusion_model import log_target

    lt_p = log_target(pg, torch.as_tensor(noise[0]), (), {}).detach().numpy()
    with handlers.block():
        lt_n = np.asarray(ng._log_target_fn((), {})(jnp.asarray(noise[0])))
    np.testing.assert_allclose(lt_n, lt_p, rtol=0, atol=1e-8)
    assert np.abs(np.asarray(lq_n)).max() > 0.1  # a non-trivial path density
