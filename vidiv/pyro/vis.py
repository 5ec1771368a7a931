r"""Forward chi-square variational importance sampling (VIS; Li, Wang, Li & Wu, ICLR 2024).

One ``loss_and_grads`` call draws ``S`` samples ``z_s ~ q`` *detached* and back-propagates, in one
backward pass, the sum of two surrogates that touch disjoint parameters:

* model parameters theta follow the importance-sampled log-likelihood
  :math:`\log\hat p(x) = \log\frac1S\sum_s w_s` (gradient
  :math:`\sum_s \mathrm{softmax}(\log w)_s\nabla_\theta\log p_\theta(x, z_s)`);
* guide parameters phi follow the forward chi-square objective
  :math:`\log\hat V = \log\frac1S\sum_s w_s^2` in score form (gradient
  :math:`-\sum_s\mathrm{softmax}(2\log w)_s\nabla_\phi\log q_\phi(z_s)`), which cannot collapse
  the guide the way reparameterised CUBO minimisation does.

Because the samples are detached, ``log p`` carries only theta and ``log q`` only phi, so summing
the surrogates gives each its own gradient. The loss reported is :math:`-\log\hat p(x)`; the CUBO
:math:`\tfrac12\log\hat V` (chi-square upper bound) of the same samples is kept in
:attr:`ChiSquaredVIS.last_cubo`, and :meth:`ChiSquaredVIS.cubo` evaluates it with fresh samples.
Point-mass guide sites (``AutoDelta``, ``AutoLaplaceApproximation``'s latent,
``dist.Delta(pyro.param(...))``) are point estimates: their values keep the gradient and follow
the IS log-likelihood of :math:`\log p - \log q_\delta` like model parameters (MAP with the
Jacobian term an unconstrained point estimate carries, as ``Trace_ELBO`` has it).
Local latents in a plate common to all sites are handled per datum (the plate may be subsampled:
the sums are scaled by ``size / subsample_size``).

Example
-------
>>> svi = SVI(model, guide, ClippedAdam({"lr": 0.01, "lrd": 0.999}),            # doctest: +SKIP
...           loss=ChiSquaredVIS(num_particles=64))
>>> svi.step(data); svi.loss_class.last_cubo                                   # doctest: +SKIP
"""

from __future__ import annotations

import math

import torch

from .._backend import as_float, log_num, logsumexp
from ..estimators import vis_surrogates
from ._elbo import ParticleELBO

__all__ = ["ChiSquaredVIS"]


def _surrogates(p) -> tuple[torch.Tensor, torch.Tensor]:
    """(IS log-likelihood surrogate, chi-square guide surrogate), summed and scaled."""
    model_part, guide_part = vis_surrogates(p.log_p, p.log_q, p.log_q_point)
    return model_part.sum() * p.scale, guide_part.sum() * p.scale


class ChiSquaredVIS(ParticleELBO):
    """Forward chi-square VIS as a ``loss=`` for ``pyro.infer.SVI``.

    :param num_particles: samples per step (>= 2; the paper uses hundreds to thousands).
    :param max_plate_nesting: the model's plate nesting; guessed on first use if infinite.
    :param vectorize_particles: ``None`` (default, checked particle plate with a loop
        fallback), ``True`` (particle plate, model declared vectorised) or ``False`` (loop); as
        for :class:`AlphaDivergence`.
    """

    _name = "ChiSquaredVIS"

    def __init__(
        self,
        num_particles: int = 64,
        max_plate_nesting: float = math.inf,
        vectorize_particles: bool | None = None,
        **host,
    ) -> None:
        super().__init__(
            num_particles, max_plate_nesting, vectorize_particles, min_particles=2, **host
        )
        self.last_cubo: float | None = None  #: CUBO = 0.5 log V-hat of the last step's samples

    def loss(self, model, guide, *args, **kwargs) -> float:
        """``-log p-hat(x)`` (IS estimate) as a float; also sets :attr:`last_cubo`."""
        with torch.no_grad():
            p = self.particles(model, guide, args, kwargs, detach=True)
            model_part, guide_part = _surrogates(p)
            self.last_cubo = as_float(0.5 * guide_part)
            return -as_float(model_part)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Value ``-log p-hat(x)``; gradient: IS log-likelihood for the model's parameters,
        forward chi-square score gradient for the guide's."""
        p = self.particles(model, guide, args, kwargs, detach=True)
        model_part, guide_part = _surrogates(p)
        self.last_cubo = as_float(0.5 * guide_part.detach())
        return -model_part + (guide_part - guide_part.detach())

    def cubo(
        self, model, guide, *args, num_particles: int = 20000, chunk_size: int = 4096, **kwargs
    ) -> float:
        r"""CUBO :math:`\tfrac12\log\frac1S\sum_s w_s^2` with ``num_particles`` fresh samples
        (drawn in chunks that share one minibatch; summed over a common plate times its scale).
        Biased low for finite S."""
        from ..errors import check_num_particles

        total = check_num_particles(num_particles, minimum=1)
        chunk_size = check_num_particles(chunk_size, minimum=1, name="chunk_size")
        pieces, done, first = [], 0, None
        with torch.no_grad():
            while done < total:
                n = min(chunk_size, total - done)
                p = self.particles(
                    model, guide, args, kwargs, detach=True, num_particles=n, subsample_from=first
                )
                first = p.raw_guide_traces[0] if first is None else first
                pieces.append(2.0 * p.log_w)
                done += n
            lw2 = torch.cat(pieces, dim=0)
            value = 0.5 * (logsumexp(lw2, axis=0) - log_num(total))
            return as_float(value.sum() * p.scale)
