"""NumPyro plumbing for MirroredSVGD: latent sites, prior draws and per-particle ``log p``
gradients in the constrained space (``jax.grad`` of ``log_density``, vmapped over particles)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import log_density

from ..errors import ModelStructureError
from ..particles.blocks import Layout
from ..particles.supports import map_for_support
from ._fbgvi_model import check_params_and_point_masses


class MSVGDState(NamedTuple):
    """Driver state: the optimiser state over the dual particles ``η`` ``(P, n)``, the step
    counter and the first step whose direction was not finite (``-1`` if none)."""

    optim_state: tuple
    step: jnp.ndarray
    nonfinite_step: jnp.ndarray


class MSVGDRunResult(NamedTuple):
    """``params``: constrained particles ``{site: (P, *shape)}``; ``state``; ``losses``: mean
    ``−log p(x, θ)`` over particles at every step."""

    params: dict
    state: MSVGDState
    losses: jnp.ndarray


def _unsamplable(fn) -> bool:
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return type(fn).sample is dist.Distribution.sample  # e.g. ImproperUniform


def _uniform_if_improper(site):
    """``substitute_fn``: sites that cannot be sampled (``ImproperUniform`` priors) get
    ``init_to_uniform``'s value, uniform in (-2, 2) in the unconstrained space; others sample."""
    if site["type"] == "sample" and not site["is_observed"] and _unsamplable(site["fn"]):
        return init_to_uniform(site)
    return None


def _traced(model: Callable, key, args, kwargs):
    # substitute outside seed: the substitute_fn needs the site's rng_key
    placed = handlers.substitute(handlers.seed(model, key), substitute_fn=_uniform_if_improper)
    return handlers.trace(placed).get_trace(*args, **kwargs)


def inspect_model(model: Callable, rng_key, args, kwargs):
    """Trace ``model`` once, abstractly (``jax.eval_shape``: nothing is sampled or compiled):
    the layout of its latent sites in model order."""
    sites = []

    def trace_once(key):
        trace = _traced(model, key, args, kwargs)
        check_params_and_point_masses(trace, "MirroredSVGD")
        for name, site in trace.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            if site.get("infer", {}).get("is_auxiliary"):
                continue
            sites.append((name, site["fn"].support, tuple(jnp.shape(site["value"]))))
        return 0

    jax.eval_shape(trace_once, rng_key)
    if not sites:
        raise ModelStructureError(
            "MirroredSVGD found no latent sample sites in the model; every numpyro.sample site "
            "is observed. Add at least one latent numpyro.sample statement."
        )
    return Layout([(name, map_for_support(support, name), shape)
                   for name, support, shape in sites])


def prior_draws(model: Callable, layout: Layout, rng_key, num_particles: int, args, kwargs):
    """``{site: (P, *shape)}`` drawn from the model's prior (vmapped over keys); improper sites
    start uniform in (-2, 2) in the unconstrained space (NumPyro's ``init_to_uniform``)."""

    def one(key):
        trace = _traced(model, key, args, kwargs)
        return {n: trace[n]["value"] for n in layout.names}

    return jax.jit(jax.vmap(one))(jax.random.split(rng_key, num_particles))


def log_p_and_grads(model: Callable, values: dict, args, kwargs, grad: bool = True):
    """Per-particle ``log p(x, θ)`` ``(P,)`` and ``{site: ∇_θ log p}`` ``(P, *shape)``."""

    def one(v):
        return log_density(model, args, kwargs, v)[0]

    if not grad:
        return jax.vmap(one)(values), None
    return jax.vmap(jax.value_and_grad(one))(values)
