"""NumPyro side of the VIS benchmark: models, guides, objectives, training and IS evaluation.

Objectives (same particles K for all): ELBO = numpyro Trace_ELBO; IWAE = vidiv
AlphaDivergence(alpha=0) (= numpyro RenyiELBO(alpha=0)); CHIVI = :func:`chivi_surrogate`
(theta by the ELBO, q by CUBO_2 - 1/2 ELBO in score form); VIS = vidiv ChiSquaredVIS. Note that
Trace_ELBO with K particles draws a different minibatch for each particle (K minibatches per step);
the paper protocol adds ELBO-1batch (one minibatch per step, like every other objective here).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.elbo import ELBO

from benchmarks.vis_common import DEFAULT_ARCH, LATENT, Run, chivi_surrogate, train_budgeted
from vidiv.estimators import elbo
from vidiv.numpyro import AlphaDivergence, ChiSquaredVIS
from vidiv.numpyro._traces import particle_terms


class _SharedBatch(ELBO):
    """Loss ``-scale * sum(surrogate(log_p, log_q))`` from :func:`particle_terms`, whose
    subsample indices are shared by all particles (NumPyro's ``Trace_ELBO`` with
    ``num_particles > 1`` draws a different minibatch for every particle)."""

    detach, surrogate = True, staticmethod(chivi_surrogate)

    def loss(self, rng_key, param_map, model, guide, *args, **kwargs):
        t = particle_terms(
            rng_key,
            param_map,
            model,
            guide,
            args,
            kwargs,
            self.num_particles,
            detach=self.detach,
            objective=type(self).__name__,
        )
        return -t.scale * jnp.sum(self.surrogate(t.log_p, t.log_q))


class ChiviStyle(_SharedBatch):
    """CHIVI-style baseline (see :func:`benchmarks.vis_common.chivi_surrogate`); loss = -ELBO."""


class SharedBatchELBO(_SharedBatch):
    """The reparameterised ELBO on one minibatch per step for all particles, as in Pyro's
    vectorised ``Trace_ELBO`` and in the other objectives here."""

    detach, surrogate = False, staticmethod(elbo)


def methods(k: int) -> dict[str, ELBO]:
    return {
        "ELBO": Trace_ELBO(num_particles=k),
        "IWAE": AlphaDivergence(alpha=0.0, num_particles=k),
        "CHIVI": ChiviStyle(num_particles=k),
        "VIS": ChiSquaredVIS(num_particles=k),
    }


def paper_methods(k: int) -> dict[str, ELBO]:
    """``methods`` plus "ELBO-1batch" (:class:`SharedBatchELBO`): with K particles NumPyro's
    ``Trace_ELBO`` averages K minibatches per step, the other objectives use one."""
    out = methods(k)
    return {"ELBO": out.pop("ELBO"), "ELBO-1batch": SharedBatchELBO(num_particles=k), **out}


def is_log_lik(model, guide, params, x, num_samples, key):
    """Held-out IS log-likelihood per data point with ``num_samples`` guide samples."""
    out = ChiSquaredVIS(2).evaluate(
        key, params, model, guide, x, x.shape[0], num_particles=num_samples
    )
    return float(out["log_marginal"]) / x.shape[0]


def train(loss, model, guide, data, run: Run, validate=None):
    """SVI with Adam (schedule in ``run``) in jitted chunks of ``run.chunk`` steps; compilation
    is excluded from the budget (see ``train_budgeted``)."""
    schedule = numpyro.optim.Adam(lambda i: run.lr0 * 0.5 ** (i / run.half_life))
    svi = SVI(model, guide, schedule, loss=loss)
    data = jnp.asarray(data)
    holder = [svi.init(jax.random.key(run.seed), data)]

    @jax.jit
    def run_chunk(state):
        return jax.lax.scan(lambda s, _: svi.update(s, data), state, None, length=run.chunk)

    run_chunk.lower(holder[0]).compile()

    def step_chunk():
        holder[0], losses = run_chunk(holder[0])
        return jnp.mean(losses).block_until_ready()

    return train_budgeted(step_chunk, lambda: svi.get_params(holder[0]), run, validate)


# ---- (a) identifiable mixture ----------------------------------------------------------------


def mixture_model(x, batch=100):
    pi = numpyro.param("pi", 0.5, constraint=constraints.unit_interval)
    mu = numpyro.param("mu", 1.0, constraint=constraints.positive)
    with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        prior = dist.MixtureSameFamily(
            dist.Categorical(probs=jnp.stack([pi, 1.0 - pi])),
            dist.Normal(jnp.stack([mu, -mu]), 1.0),
        )
        z = numpyro.sample("z", prior)
        numpyro.sample("x", dist.Normal(z, 2.0), obs=x[idx])


def mixture_guide(x, batch=100):
    a, b = numpyro.param("a", 0.0), numpyro.param("b", 0.0)
    c, d = numpyro.param("c", 0.0), numpyro.param("d", 0.0)
    with numpyro.plate("data", x.shape[0], subsample_size=batch) as idx:
        xb = x[idx]
        numpyro.sample("z", dist.Normal(a * xb + b, jnp.exp(c * xb + d)))


def fit_mixture(loss, x_train, run):
    return train(loss, mixture_model, mixture_guide, x_train, run)


def mixture_theta(params):
    return float(params["pi"]), float(params["mu"])


def mixture_is_ll(params, x, num_samples):
    return is_log_lik(
        mixture_model, mixture_guide, params, jnp.asarray(x), num_samples, jax.random.key(99)
    )


# ---- (b) VAE on 8x8 digits ---------------------------------------------------------------------


def _mlp_init(key, sizes, scale=1.0):
    params = []
    shapes = list(zip(sizes[:-1], sizes[1:], strict=True))
    for k, (m, n) in zip(jax.random.split(key, len(shapes)), shapes, strict=True):
        params.append({"w": scale * jax.random.normal(k, (m, n)) / np.sqrt(m), "b": jnp.zeros(n)})
    return params


def _mlp(params, h):
    for layer in params[:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"])
    return h @ params[-1]["w"] + params[-1]["b"]


def vae_model(x, batch=None, arch=DEFAULT_ARCH):
    dec = numpyro.param("decoder", lambda key: _mlp_init(key, arch.decoder_sizes))
    with numpyro.plate("data", x.shape[0], subsample_size=batch or arch.batch) as idx:
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
        numpyro.sample("x", dist.Bernoulli(logits=_mlp(dec, z)).to_event(1), obs=x[idx])


def vae_guide(x, batch=None, arch=DEFAULT_ARCH):
    enc = numpyro.param("encoder", lambda key: _mlp_init(key, arch.encoder_sizes, 0.5))
    with numpyro.plate("data", x.shape[0], subsample_size=batch or arch.batch) as idx:
        out = _mlp(enc, x[idx])
        loc, log_scale = out[..., :LATENT], out[..., LATENT:]
        numpyro.sample("z", dist.Normal(loc, jnp.exp(log_scale)).to_event(1))


def fit_vae(loss, x_train, run, validate, arch=DEFAULT_ARCH):
    model, guide = partial(vae_model, arch=arch), partial(vae_guide, arch=arch)
    return train(loss, model, guide, x_train, run, validate)


def vae_ll(params, x, num_samples, seed):
    return is_log_lik(
        vae_model, vae_guide, params, jnp.asarray(x), num_samples, jax.random.key(seed)
    )


def decoder_logits(params, z):
    return np.asarray(_mlp(params["decoder"], jnp.asarray(z)))
