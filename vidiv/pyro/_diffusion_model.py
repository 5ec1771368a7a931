"""Pyro helpers of ``DiffusionGuide``: the drift module, particle shapes and the model's batched
unconstrained log density (for the score feature and the importance weights).

:func:`log_target` evaluates :math:`\\log\\rho(x) = \\log p(\\text{data}, T(x)) + \\log|J_T(x)|`
for a batch of flat unconstrained latents ``x`` of shape ``(B, d)``: the model runs once,
conditioned on the constrained values, inside a particle plate of size ``B`` placed left of the
model's own plates (``dim = -(max_plate_nesting + 1)`` or further left), under ``poutine.block``
so nothing leaks into the trace of the enclosing objective.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import torch
from pyro import poutine
from pyro.distributions.transforms import biject_to
from pyro.distributions.util import sum_rightmost
from torch import nn

from ..paths import control_value, feature_dim, mlp_shapes

__all__ = ["DriftNet", "particle_shape", "log_target", "model_plate_nesting"]


class DriftNet(nn.Module):
    """:math:`u(x,t) = f(x, e(t)) + g(e(t))\\odot\\mathrm{clip}(\\nabla\\log\\rho)` with the
    weights of :func:`vidiv.paths.control_value` as ``nn.Parameter`` lists (``(in, out)``
    layout, last layers zero, hidden layers N(0, init_scale^2 / fan_in))."""

    def __init__(self, dim: int, hidden: Sequence[int], use_score: bool, clip: float,
                 init_scale: float = 1.0, dtype=None, device=None):
        super().__init__()
        e = feature_dim()
        self.clip = float(clip)

        def make(shapes):
            params = []
            for i, shape in enumerate(shapes):
                last = i >= len(shapes) - 2
                if last or len(shape) == 1:
                    w = torch.zeros(shape, dtype=dtype, device=device)
                else:
                    w = torch.randn(shape, dtype=dtype, device=device) * (
                        init_scale / math.sqrt(shape[0])
                    )
                params.append(nn.Parameter(w))
            return nn.ParameterList(params)

        self.net = make(mlp_shapes(dim + e, hidden, dim))
        self.coef = make(mlp_shapes(e, list(hidden)[:1], dim)) if use_score else None

    def forward(self, x, t_feat, score=None):
        coef = list(self.coef) if self.coef is not None else None
        return control_value(list(self.net), coef, x, t_feat, score, self.clip)


def particle_shape() -> tuple[int, ...]:
    """Batch shape implied by the vectorised plates enclosing the current call (the particle plate
    of a vectorised ELBO, ``Predictive``'s plate), e.g. ``(S,)`` or ``(S, 1)``; ``()`` if none."""
    frames = [f for f in poutine.runtime.get_plates() if f.vectorized and f.dim is not None]
    if not frames:
        return ()
    n = max(-f.dim for f in frames)
    shape = [1] * n
    for f in frames:
        shape[f.dim] = f.size
    return tuple(shape)


def model_plate_nesting(prototype_trace) -> int:
    """Number of vectorised plate dims the model uses (0 without plates)."""
    dims = [
        -f.dim
        for site in prototype_trace.nodes.values()
        if site["type"] == "sample"
        for f in site["cond_indep_stack"]
        if f.vectorized and f.dim is not None
    ]
    return max(dims, default=0)


def _per_particle(t: torch.Tensor, depth: int) -> torch.Tensor:
    if t.dim() == depth:
        return t.reshape(t.shape[0], -1).sum(-1)
    return t.sum()


def log_target(guide, x: torch.Tensor, args, kwargs) -> torch.Tensor:
    """``log p(data, T(x)) + log|J_T(x)|`` for ``x`` of shape ``(B, d)``; returns ``(B,)``."""
    B, d = x.shape
    # the particle plate goes left of the model's plates and of any plate enclosing this call
    # (plate dims are allocated globally, even under poutine.block)
    depth = max(guide._model_nesting, len(particle_shape())) + 1
    latent = x.reshape((B,) + (1,) * (depth - 1) + (d,))
    data, log_det = {}, torch.zeros((), dtype=x.dtype, device=x.device)
    for site, u in guide._unpack_latent(latent):
        transform = biject_to(site["fn"].support)
        value = transform(u)
        ldj = transform.log_abs_det_jacobian(u, value)
        ldj = sum_rightmost(ldj, ldj.dim() - value.dim() + site["fn"].event_dim)
        log_det = log_det + _per_particle(ldj, depth)
        data[site["name"]] = value
    with poutine.block(), pyro.plate("_vidiv_diffusion_particles", B, dim=-depth):
        tr = poutine.trace(poutine.condition(guide.model, data=data)).get_trace(*args, **kwargs)
    tr.compute_log_prob()
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for site in tr.nodes.values():
        if site["type"] == "sample":
            total = total + _per_particle(site["log_prob"], depth)
    return (total + log_det).expand(B)
