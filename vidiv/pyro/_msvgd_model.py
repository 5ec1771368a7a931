"""Pyro plumbing for MirroredSVGD: find latent sites, vectorise the model over particles,
evaluate ``log p(x, θ)`` per particle and its gradient in the constrained space."""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer.autoguide.initialization import InitMessenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import transform_to

from ..errors import ModelStructureError
from ..particles.blocks import Layout
from ..particles.supports import map_for_support
from ._fbgvi_model import check_params_and_point_masses

PLATE = "_msvgd_particles"


def not_broadcasting(depth: int, err: Exception) -> str:
    """The message for a model that runs alone but fails inside the particle plate."""
    return (
        "the model runs on one draw but fails when MirroredSVGD evaluates all particles at "
        f"once inside its particle plate (dim {-(depth + 1)}: every latent gets a leading "
        f"particle dimension): {type(err).__name__}: {str(err).splitlines()[0]}. Write the model "
        "so that it broadcasts over leading batch dimensions: e.g. X @ w or torch.mv(X, w) -> "
        "(X * w.unsqueeze(-2)).sum(-1) (w @ X.T does not broadcast once a plate dim sits right of "
        "the particle dim), w[0] -> w[..., 0], and "
        "declare batch dimensions with pyro.plate. (vidiv.pyro.FBGVI evaluates one draw at a "
        "time and accepts such models.)"
    )


class SiteInfo:
    """Shape bookkeeping of one latent site (per particle)."""

    def __init__(self, name: str, batch_shape: tuple, event_shape: tuple):
        self.name = name
        self.batch_shape = tuple(batch_shape)
        self.event_shape = tuple(event_shape)
        self.shape = self.batch_shape + self.event_shape


def _sample_sites(trace):
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site_is_subsample(site):
            yield name, site


def _sample_or_uniform(site: dict) -> torch.Tensor:
    """A draw of the site; sites that cannot be sampled (``ImproperUniform`` priors) get
    ``u ~ U(-2, 2)`` in the unconstrained space, the range of Pyro's ``init_to_uniform``."""
    fn = site["fn"]
    try:
        return fn.sample().detach()
    except NotImplementedError:
        t = transform_to(fn.support)
        u = torch.rand(t.inverse_shape(fn.shape()), dtype=torch.get_default_dtype())
        return t(4.0 * u - 2.0)


def _trace(model: Callable, args, kwargs):
    with poutine.block(hide_types=["param"]), InitMessenger(_sample_or_uniform):
        return poutine.trace(model).get_trace(*args, **kwargs)


def inspect_model(model: Callable, args, kwargs):
    """Trace ``model`` once: latent sites (in order), their mirror maps, the plate depth."""
    trace = _trace(model, args, kwargs)
    check_params_and_point_masses(trace, "MirroredSVGD")
    sites, infos, depth = [], {}, 0
    for name, site in _sample_sites(trace):
        fn = site["fn"]
        depth = max(depth, len(fn.batch_shape))  # plates are already broadcast in
        if site["is_observed"]:
            continue
        infos[name] = SiteInfo(name, fn.batch_shape, fn.event_shape)
        sites.append((name, map_for_support(fn.support, name), infos[name].shape))
    if not sites:
        raise ModelStructureError(
            "MirroredSVGD found no latent sample sites in the model; every pyro.sample site is "
            "observed. Add at least one latent pyro.sample statement."
        )
    ref = next(trace.nodes[n]["value"] for n, _, _ in sites)
    return Layout(sites), infos, depth, ref.dtype, ref.device


class VectorizedModel:
    """The model inside a particle plate at ``dim = -(depth + 1)``."""

    def __init__(self, model: Callable, num_particles: int, depth: int, infos: dict):
        self.model = model
        self.num_particles = num_particles
        self.depth = depth
        self.infos = infos

    def __call__(self, *args, **kwargs):
        with pyro.plate(PLATE, self.num_particles, dim=-(self.depth + 1)):
            return self.model(*args, **kwargs)

    def expand(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """``(P, *shape)`` -> ``(P, 1, ..., 1, *shape)`` aligned with the particle plate."""
        info = self.infos[name]
        pad = self.depth - len(info.batch_shape)
        return value.reshape((value.shape[0],) + (1,) * pad + info.shape)

    def squeeze(self, name: str, value: torch.Tensor) -> torch.Tensor:
        info = self.infos[name]
        value = value.expand(
            (self.num_particles,) + (1,) * (self.depth - len(info.batch_shape)) + info.shape
        )
        return value.reshape((self.num_particles,) + info.shape)

    def prior_draws(self, args, kwargs) -> dict[str, torch.Tensor]:
        """Prior draws per particle; improper sites start uniform in (-2, 2) unconstrained."""
        trace = _trace(self, args, kwargs)
        return {n: self.squeeze(n, trace.nodes[n]["value"].detach()) for n in self.infos}

    def _per_particle(self, name: str, lp: torch.Tensor) -> torch.Tensor:
        """Sum a site's log_prob over the model's own batch dims, keeping the particle dim."""
        if lp.dim() > self.depth + 1 or (
            lp.dim() == self.depth + 1 and lp.shape[0] not in (1, self.num_particles)
        ):
            raise ModelStructureError(
                f"site {name!r} has log_prob shape {tuple(lp.shape)} inside MirroredSVGD's "
                f"particle plate (dim {-(self.depth + 1)}, size {self.num_particles}): the model "
                "does not broadcast over a leading batch dimension. As with pyro.infer.SVGD, "
                "index with [..., i] instead of adding dims (e.g. x[..., None]) and declare "
                "batch dims with pyro.plate."
            )
        if lp.dim() == self.depth + 1:  # (P, *batch)
            return lp.reshape(lp.shape[0], -1).sum(-1)
        return lp.sum()  # does not vary over particles

    def log_p(self, values: dict, args, kwargs, grad: bool = True):
        """Per-particle ``log p(x, θ)`` ``(P,)`` and ``{site: ∇_θ log p}`` ``(P, *shape)``."""
        leaves = {n: self.expand(n, v.detach()).requires_grad_(grad) for n, v in values.items()}
        with torch.set_grad_enabled(grad):
            with poutine.block(hide_types=["param"]):
                trace = poutine.trace(poutine.condition(self, data=leaves)).get_trace(
                    *args, **kwargs
                )
            trace.compute_log_prob()
            total = 0.0
            for name, site in _sample_sites(trace):
                total = total + self._per_particle(name, site["log_prob"])
            log_p = torch.as_tensor(total).expand(self.num_particles)
            if not grad:
                return log_p.detach(), None
            names = list(leaves)
            grads = torch.autograd.grad(
                log_p.sum(), [leaves[n] for n in names], allow_unused=True
            )
        out = {}
        for n, g in zip(names, grads, strict=True):
            g = torch.zeros_like(leaves[n]) if g is None else g
            out[n] = self.squeeze(n, g)
        return log_p.detach(), out
