"""The base class of vidiv's Pyro objectives (``loss=`` for ``pyro.infer.SVI``).

Subclasses implement ``differentiable_loss`` from :meth:`ParticleELBO.particles`, the shared trace
walk of :mod:`vidiv.pyro._traces`; ``loss_and_grads`` backpropagates it, as Pyro's ELBOs do.
:meth:`ParticleELBO.particles` also applies the host's conventions (:mod:`vidiv.pyro._host`):
Pyro's model--guide checks on one unvectorised draw, and the fallback to a loop over particles
for a model that does not broadcast over the particle plate.
"""

from __future__ import annotations

import math

import torch
from pyro.infer import ELBO

from .._backend import as_float
from ..errors import VidivError, check_num_particles
from ._host import (
    HOST_DEFAULTS,
    check_traces,
    host_check_pass,
    model_nesting,
    warn_loop_fallback,
)
from ._traces import NotVectorisedError, Particles, first_particle_matches, trace_particles

__all__ = ["ParticleELBO"]


class ParticleELBO(ELBO):
    """Base of vidiv's Pyro objectives: validates the particle count, owns the particle plate
    (``max_plate_nesting`` is the *model's* nesting; taken from one unvectorised run if
    infinite), runs Pyro's checks and exposes :meth:`particles`.

    ``host`` holds the other keywords of ``pyro.infer.ELBO`` (see :mod:`vidiv.pyro._host`):
    ``max_iarange_nesting`` (old name of ``max_plate_nesting``), ``retain_graph`` (used by
    ``loss_and_grads``), and ``strict_enumeration_warning``, ``ignore_jit_warnings``,
    ``jit_options``, ``tail_adaptive_beta``, which are stored and have no effect (vidiv neither
    enumerates nor JIT-compiles). An unknown keyword is a ``TypeError``, as for the host.
    """

    _name = "this objective"

    def __init__(
        self,
        num_particles: int,
        max_plate_nesting: float = math.inf,
        vectorize_particles: bool | None = None,
        min_particles: int = 1,
        **host,
    ) -> None:
        unknown = sorted(set(host) - set(HOST_DEFAULTS))
        if unknown:
            raise TypeError(
                f"{self._name} got unexpected keyword argument(s) {unknown}; it accepts "
                f"num_particles, max_plate_nesting, vectorize_particles and Pyro's ELBO keywords "
                f"{sorted(HOST_DEFAULTS)}."
            )
        opts = {**HOST_DEFAULTS, **host}
        num_particles = check_num_particles(num_particles, minimum=min_particles)
        if opts["max_iarange_nesting"] is not None and math.isinf(max_plate_nesting):
            max_plate_nesting = opts["max_iarange_nesting"]
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=False,
            strict_enumeration_warning=opts["strict_enumeration_warning"],
            ignore_jit_warnings=opts["ignore_jit_warnings"],
            jit_options=opts["jit_options"],
            retain_graph=opts["retain_graph"],
            tail_adaptive_beta=opts["tail_adaptive_beta"],
        )
        # None: vectorised, checked against one draw, loop fallback; True: vectorised as declared
        vp = vectorize_particles
        self.vectorize_particles = None if vp is None else bool(vp)
        self._checked_pair = None  # (model, guide) the host checks last ran for
        self._proto = None  # model trace of one draw (from the check pass)
        self._looped = False  # fell back to a loop over particles

    def _nesting(self, model, guide, args, kwargs) -> int:
        if math.isinf(self.max_plate_nesting):
            if self._proto is None or not self._is_checked(model, guide):
                # one unvectorised run of model and guide, as the host's own nesting guess
                self._host_checks(model, guide, args, kwargs, fork=False)
            self.max_plate_nesting = self._guessed
        return int(self.max_plate_nesting)

    def _is_checked(self, model, guide) -> bool:
        pair = self._checked_pair
        return pair is not None and pair[0] is model and pair[1] is guide

    def _host_checks(self, model, guide, args, kwargs, fork: bool = True) -> None:
        """Pyro's checks on one unvectorised draw; with ``fork`` the draw does not advance the
        random stream, so the particles are those the host's ELBO would draw."""
        devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=devices, enabled=fork):
            mt, gt = host_check_pass(model, guide, args, kwargs, self.max_plate_nesting, self._name)
        self._proto = mt
        self._guessed = model_nesting(mt, gt)
        self._checked_pair = (model, guide)

    def particles(self, model, guide, args, kwargs, **options) -> Particles:
        """Run :func:`trace_particles` with this objective's settings.

        The first call for a (model, guide) pair also runs Pyro's checks: with
        ``vectorize_particles=None`` on one unvectorised draw, against which the vectorised pass
        is checked (a model that does not broadcast over particles gets one warning and a loop
        from then on); with ``True`` on the vectorised traces; with ``False`` on one draw."""
        options.setdefault("num_particles", self.num_particles)
        first = not self._is_checked(model, guide) and options.get("replay") is None
        common = dict(objective=self._name, **options)
        if self.vectorize_particles and not self._looped:
            # declared vectorised (as for the host's vectorize_particles=True): no one-draw run
            # beyond the host's own nesting guess; Pyro's checks run on the vectorised traces
            mpn = self._nesting(model, guide, args, kwargs)
            p = trace_particles(model, guide, args, kwargs, max_plate_nesting=mpn,
                                vectorize=True, **common)  # fmt: skip
            if first:
                check_traces(p.model_trace, p.raw_guide_traces[0], mpn + 1, self._name)
                self._checked_pair = (model, guide)
            return p
        if self.vectorize_particles is None and not self._looped:
            mpn = self._nesting(model, guide, args, kwargs)
            try:
                p = trace_particles(model, guide, args, kwargs, max_plate_nesting=mpn,
                                    vectorize=True, **common)  # fmt: skip
            except VidivError as err:
                if first and isinstance(err, NotVectorisedError):
                    reason = err
                else:
                    raise
            except Exception as err:  # noqa: BLE001 -- the model fails inside the plate?
                if not first:
                    raise
                reason = err
            else:
                if not first:
                    return p
                if not self._is_checked(model, guide):
                    self._host_checks(model, guide, args, kwargs)
                if first_particle_matches(model, args, kwargs, p, self._proto, mpn):
                    return p
                reason = "its first particle's log p differs from the model's at that draw"
            if not self._is_checked(model, guide):
                self._host_checks(model, guide, args, kwargs)  # raises if the model is invalid
            warn_loop_fallback(self._name, options["num_particles"], reason)
            self._looped = True
        try:
            p = trace_particles(
                model, guide, args, kwargs, max_plate_nesting=None, vectorize=False, **common
            )
        except VidivError:
            raise
        except Exception:
            if first and not self._is_checked(model, guide):
                self._host_checks(model, guide, args, kwargs)  # the host's clearer error, if any
            raise
        if first and not self._is_checked(model, guide):
            self._host_checks(model, guide, args, kwargs)
        return p

    def _get_trace(self, model, guide, args, kwargs):
        p = self.particles(model, guide, args, kwargs)
        return p.model_trace, p.guide_trace

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate :meth:`differentiable_loss`; return the loss as a float."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return as_float(loss)
