"""The base class of vidiv's Pyro objectives (``loss=`` for ``pyro.infer.SVI``).

Subclasses implement ``differentiable_loss`` from :meth:`ParticleELBO.particles`, the shared trace
walk of :mod:`vidiv.pyro._traces`; ``loss_and_grads`` backpropagates it, as Pyro's ELBOs do.
"""

from __future__ import annotations

import math

from pyro.infer import ELBO

from .._backend import as_float
from ..errors import check_num_particles
from ._traces import Particles, guess_max_plate_nesting, trace_particles

__all__ = ["ParticleELBO"]


class ParticleELBO(ELBO):
    """Base of vidiv's Pyro objectives: validates the particle count, owns the particle plate
    (``max_plate_nesting`` is the *model's* nesting; guessed once from a blocked run if infinite)
    and exposes :meth:`particles`."""

    _name = "this objective"

    def __init__(
        self,
        num_particles: int,
        max_plate_nesting: float = math.inf,
        vectorize_particles: bool = True,
        min_particles: int = 1,
    ) -> None:
        num_particles = check_num_particles(num_particles, minimum=min_particles)
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.vectorize_particles = bool(vectorize_particles)

    def _nesting(self, model, guide, args, kwargs) -> int | None:
        if not self.vectorize_particles:
            return None
        if math.isinf(self.max_plate_nesting):
            self.max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
        return int(self.max_plate_nesting)

    def particles(self, model, guide, args, kwargs, **options) -> Particles:
        """Run :func:`trace_particles` with this objective's settings."""
        options.setdefault("num_particles", self.num_particles)
        return trace_particles(
            model,
            guide,
            args,
            kwargs,
            max_plate_nesting=self._nesting(model, guide, args, kwargs),
            vectorize=self.vectorize_particles,
            objective=self._name,
            **options,
        )

    def _get_trace(self, model, guide, args, kwargs):
        p = self.particles(model, guide, args, kwargs)
        return p.model_trace, p.guide_trace

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate :meth:`differentiable_loss`; return the loss as a float."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return as_float(loss)
