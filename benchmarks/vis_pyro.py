"""Pyro side of the VIS benchmark (1 torch thread, torch default dtype): models, guides, objectives,
training and IS evaluation, mirroring ``benchmarks/vis_numpyro.py``.

Objectives (same particles K for all, vectorised particles): ELBO = pyro Trace_ELBO; IWAE =
vidiv AlphaDivergence(alpha=0); IWAE-host = pyro RenyiELBO(alpha=0); CHIVI =
:func:`chivi_surrogate` (theta by the ELBO, q by CUBO_2 - 1/2 ELBO in score form); VIS = vidiv
ChiSquaredVIS. Pyro's RenyiELBO and vidiv's AlphaDivergence agree without subsampling; in a
subsampled plate the host's weights are not per datum (its loss on a minibatch is not the
minibatch estimate of the full-data bound), so both are run.
"""

from __future__ import annotations

import copy

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer import SVI, RenyiELBO, Trace_ELBO
from pyro.optim import ClippedAdam
from torch import nn

from benchmarks.vis_common import DEFAULT_ARCH, LATENT, Run, chivi_surrogate, train_budgeted
from vidiv._backend import as_float
from vidiv.estimators import log_marginal
from vidiv.pyro import AlphaDivergence, ChiSquaredVIS
from vidiv.pyro._elbo import ParticleELBO


class ChiviStyle(ParticleELBO):
    """CHIVI-style baseline (see :func:`benchmarks.vis_common.chivi_surrogate`); loss = -ELBO."""

    _name = "ChiviStyle"

    def differentiable_loss(self, model, guide, *args, **kwargs):
        p = self.particles(model, guide, args, kwargs, detach=True)
        return -p.scale * chivi_surrogate(p.log_p, p.log_q).sum()

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return as_float(self.differentiable_loss(model, guide, *args, **kwargs))


def methods(k: int) -> dict:
    opts = {"num_particles": k, "max_plate_nesting": 1}
    return {
        "ELBO": Trace_ELBO(vectorize_particles=True, **opts),
        "IWAE": AlphaDivergence(alpha=0.0, **opts),
        "IWAE-host": RenyiELBO(alpha=0.0, vectorize_particles=True, **opts),
        "CHIVI": ChiviStyle(**opts),
        "VIS": ChiSquaredVIS(**opts),
    }


paper_methods = methods  # Pyro's vectorised Trace_ELBO already shares one minibatch


@torch.no_grad()
def is_log_lik(model, guide, x, num_samples, seed, chunk=50, **kwargs):
    """Held-out IS log-likelihood per data point, ``num_samples`` guide samples per point."""
    vis, total = ChiSquaredVIS(2, max_plate_nesting=1), 0.0
    with torch.random.fork_rng():  # leaves the training random stream untouched
        torch.manual_seed(seed)
        for start in range(0, len(x), chunk):
            xc = x[start : start + chunk]
            p = vis.particles(
                model,
                guide,
                (xc,),
                {"batch": len(xc), **kwargs},
                detach=True,
                num_particles=num_samples,
            )
            total += as_float(log_marginal(p.log_p, p.log_q).sum())
    return total / len(x)


def train(loss, model, guide, data, run: Run, snapshot, validate=None):
    """SVI with Adam (schedule in ``run``; ClippedAdam with clipping switched off), see
    ``train_budgeted``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(run.seed)
    lrd = 0.5 ** (1.0 / run.half_life)
    svi = SVI(model, guide, ClippedAdam({"lr": run.lr0, "lrd": lrd, "clip_norm": 1e30}), loss)
    data = torch.as_tensor(data, dtype=torch.get_default_dtype())

    def step_chunk():
        return np.mean([svi.step(data) for _ in range(run.chunk)])

    return train_budgeted(step_chunk, snapshot, run, validate)


# ---- (a) identifiable mixture ----------------------------------------------------------------


def mixture_model(x, batch=100):
    pi = pyro.param("pi", torch.tensor(0.5), constraint=constraints.unit_interval)
    mu = pyro.param("mu", torch.tensor(1.0), constraint=constraints.positive)
    with pyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        prior = dist.MixtureSameFamily(
            dist.Categorical(torch.stack([pi, 1.0 - pi])), dist.Normal(torch.stack([mu, -mu]), 1.0)
        )
        z = pyro.sample("z", prior)
        pyro.sample("x", dist.Normal(z, 2.0), obs=x[idx])


def mixture_guide(x, batch=100):
    a, b = pyro.param("a", torch.tensor(0.0)), pyro.param("b", torch.tensor(0.0))
    c, d = pyro.param("c", torch.tensor(0.0)), pyro.param("d", torch.tensor(0.0))
    with pyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        xb = x[idx]
        pyro.sample("z", dist.Normal(a * xb + b, torch.exp(c * xb + d)))


def _store_state():
    return copy.deepcopy(pyro.get_param_store().get_state())


def fit_mixture(loss, x_train, run):
    return train(loss, mixture_model, mixture_guide, x_train, run, _store_state)


def mixture_theta(state):
    pyro.get_param_store().set_state(copy.deepcopy(state))
    return as_float(pyro.param("pi")), as_float(pyro.param("mu"))


def mixture_is_ll(state, x, num_samples):
    pyro.get_param_store().set_state(copy.deepcopy(state))
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    return is_log_lik(mixture_model, mixture_guide, x, num_samples, 99, chunk=1000)


# ---- (b) VAE on 8x8 digits ---------------------------------------------------------------------


def _mlp(sizes, scale=1.0):
    """tanh MLP initialised like the NumPyro one: N(0, scale^2 / fan_in) weights, zero biases."""
    layers = []
    for m, n in zip(sizes[:-1], sizes[1:], strict=True):
        lin = nn.Linear(m, n)
        with torch.no_grad():
            lin.weight.normal_(0.0, scale / np.sqrt(m))
            lin.bias.zero_()
        layers += [lin, nn.Tanh()]
    return nn.Sequential(*layers[:-1])


class VAE(nn.Module):
    """Decoder (Bernoulli logits) and encoder (loc, log scale) laid out by ``arch`` (default:
    2-64-64-64 and 64-64-4). With ``register=False`` the model and guide use the modules as they
    are (no param store)."""

    def __init__(self, arch=DEFAULT_ARCH):
        super().__init__()
        self.batch = arch.batch
        self.decoder = _mlp(arch.decoder_sizes)
        self.encoder = _mlp(arch.encoder_sizes, 0.5)

    def model(self, x, batch=None, register=True):
        if register:
            pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0], subsample_size=batch or self.batch) as idx:
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x[idx])

    def guide(self, x, batch=None, register=True):
        if register:
            pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0], subsample_size=batch or self.batch) as idx:
            out = self.encoder(x[idx])
            loc, log_scale = out[..., :LATENT], out[..., LATENT:]
            pyro.sample("z", dist.Normal(loc, torch.exp(log_scale)).to_event(1))


def fit_vae(loss, x_train, run, validate, arch=DEFAULT_ARCH):
    pyro.set_rng_seed(run.seed)
    vae = VAE(arch)
    return train(loss, vae.model, vae.guide, x_train, run, lambda: copy.deepcopy(vae), validate)


def vae_ll(vae, x, num_samples, seed):
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    return is_log_lik(vae.model, vae.guide, x, num_samples, seed, register=False)


@torch.no_grad()
def decoder_logits(vae, z):
    return vae.decoder(torch.as_tensor(z, dtype=torch.get_default_dtype())).numpy()
