r"""Log-variance (VarGrad) objective (Richter, Boustati, Nuesken, Ruiz & Akyildiz, NeurIPS 2020).

.. math:: L_{LV}(\phi) = \widehat{\mathrm{Var}}_s\big[\log q_\phi(z_s) - \log p(x, z_s)\big],
          \qquad z_s \sim q_{\mathrm{sg}(\phi)},

the unbiased variance over ``S`` particles of the log ratio at *detached* samples. Its gradient is
exactly twice the score-function KL gradient with a leave-one-out baseline, so it needs no
reparameterisation: guides with Bernoulli or Categorical sites train without enumeration. At the
exact posterior the log ratio is constant and the loss is zero. Model parameters (if any) get
:math:`\nabla_\theta\,\mathrm{Var}[\log q - \log p_\theta]`, which also vanishes only when
``q`` matches the posterior.

The log ratio of a particle is its *total* over every plate (Pyro's usual subsampling scales
included: ``size / subsample_size`` per subsampled plate), i.e. the log ratio of the whole latent
vector, which is what VarGrad's identity is about; the variance is taken over particles of these
totals. Subsampling is therefore allowed in any plate (the log ratio is linear in the data), and
the scaled total is an unbiased estimate of the full-data log ratio at each sample.

A guide that emits ``Delta(x, log_density=path_log_q)`` (e.g. :class:`~vidiv.pyro.DiffusionGuide`)
keeps the gradient of ``path_log_q``: only the sampled value is detached, so the loss is the
path-space log-variance loss.

Example
-------
>>> svi = SVI(model, guide, ClippedAdam({"lr": 0.05, "lrd": 0.999}),            # doctest: +SKIP
...           loss=LogVariance(num_particles=16))
"""

from __future__ import annotations

import math

import torch

from .._backend import as_float
from ..estimators import log_variance
from ._traces import ParticleELBO

__all__ = ["LogVariance"]


class LogVariance(ParticleELBO):
    """VarGrad log-variance loss as a ``loss=`` for ``pyro.infer.SVI``; works for any guide.

    :param num_particles: samples per step (>= 2: the variance needs two).
    :param max_plate_nesting: the model's plate nesting; guessed on first use if infinite.
    :param vectorize_particles: one particle plate (default) or a Python loop.
    """

    _name = "LogVariance"

    def __init__(
        self,
        num_particles: int = 16,
        max_plate_nesting: float = math.inf,
        vectorize_particles: bool = True,
    ) -> None:
        super().__init__(num_particles, max_plate_nesting, vectorize_particles, min_particles=2)

    def loss(self, model, guide, *args, **kwargs) -> float:
        """The log-variance loss as a float."""
        with torch.no_grad():
            return as_float(self.differentiable_loss(model, guide, *args, **kwargs))

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Unbiased variance over particles of ``log q(sg z) - log p(x, sg z)``."""
        p = self.particles(model, guide, args, kwargs, detach=True, per_datum=False)
        return log_variance(p.log_p, p.log_q)
