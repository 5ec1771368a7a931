r"""Log-variance (VarGrad) objective (Richter, Boustati, Nuesken, Ruiz & Akyildiz, NeurIPS 2020).

.. math:: L_{LV}(\phi) = \widehat{\mathrm{Var}}_{s\in K}\big[f_s\big],\qquad
          f_s = \log q_\phi(z_s) - \log p(x, z_s),\qquad z_s \sim q_{\mathrm{sg}(\phi)},

the unbiased variance of the log ratio at *detached* samples over the kept particles
:math:`K = \{s : f_s \text{ finite and } f_s < \texttt{max\_rnd}\}` (the reference
implementation's filter, sde_sampler's ``max_rnd`` mask, default 1e8). Without dropped particles
it is the plain VarGrad loss, whose gradient is exactly twice the score-function KL gradient with
a leave-one-out baseline, so it needs no reparameterisation: guides with Bernoulli or Categorical
sites train without enumeration. At the exact posterior the log ratio is constant and the loss is
zero. Model parameters (if any) get :math:`\nabla_\theta\,\mathrm{Var}[\log q - \log p_\theta]`,
which also vanishes only when ``q`` matches the posterior.

Dropped particles (e.g. a guide sample outside the model's support, where ``log p = -inf``, or a
diverged diffusion trajectory) add nothing to the value and exactly nothing to the gradient; their
number is in :attr:`LogVariance.last_num_dropped` after each call, and a warning is issued the
first time particles are dropped. Fewer than two kept particles raise
:class:`~vidiv.errors.NonFiniteError`, with the message every vidiv objective gives for NaN data
(naming the site) or all-``-inf`` log weights where that is the cause.

The log ratio of a particle is its *total* over every plate (Pyro's usual subsampling scales
included: ``size / subsample_size`` per subsampled plate), i.e. the log ratio of the whole latent
vector, which is what VarGrad's identity is about; the variance is taken over particles of these
totals. Subsampling is therefore allowed in any plate (the log ratio is linear in the data), and
the scaled total is an unbiased estimate of the full-data log ratio at each sample.

A guide that emits ``Delta(x, log_density=path_log_q)`` (e.g. :class:`~vidiv.pyro.DiffusionGuide`)
keeps the gradient of ``path_log_q``: only the sampled value is detached, so the loss is the
path-space log-variance loss (a particle is then a trajectory).

Example
-------
>>> lv = LogVariance(num_particles=16)                                          # doctest: +SKIP
>>> svi = SVI(model, guide, ClippedAdam({"lr": 0.05, "lrd": 0.999}), loss=lv)   # doctest: +SKIP
>>> svi.step(data); lv.last_num_dropped                                         # doctest: +SKIP
0
"""

from __future__ import annotations

import math
import warnings

import torch

from .._backend import as_float
from ..errors import NonFiniteError
from ..paths.filter import MAX_RND, check_max_rnd, path_log_variance
from ._elbo import ParticleELBO
from ._traces import _check_finite, _sites

__all__ = ["LogVariance"]


class LogVariance(ParticleELBO):
    """VarGrad log-variance loss as a ``loss=`` for ``pyro.infer.SVI``; works for any guide.
    Particles whose log ratio is non-finite or ``>= max_rnd`` are dropped from the loss.

    :param num_particles: samples per step (>= 2: the variance needs two).
    :param max_plate_nesting: the model's plate nesting; guessed on first use if infinite.
    :param vectorize_particles: one particle plate (default) or a Python loop.
    :param max_rnd: particles with ``log q - log p >= max_rnd`` are dropped (default 1e8, the
        reference implementation's value; ``math.inf`` drops only non-finite ones).

    After each call, :attr:`last_num_dropped` and :attr:`last_num_kept` hold the particle counts
    of that call (ints).
    """

    _name = "LogVariance"

    def __init__(
        self,
        num_particles: int = 16,
        max_plate_nesting: float = math.inf,
        vectorize_particles: bool = True,
        max_rnd: float = MAX_RND,
    ) -> None:
        super().__init__(num_particles, max_plate_nesting, vectorize_particles, min_particles=2)
        self.max_rnd = check_max_rnd(max_rnd)
        self.last_num_dropped: int | None = None
        self.last_num_kept: int | None = None

    def loss(self, model, guide, *args, **kwargs) -> float:
        """The log-variance loss as a float."""
        with torch.no_grad():
            return as_float(self.differentiable_loss(model, guide, *args, **kwargs))

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Unbiased variance over the kept particles of ``log q(sg z) - log p(x, sg z)``."""
        p = self.particles(
            model, guide, args, kwargs, detach=True, per_datum=False, check_finite=False
        )
        try:
            out = path_log_variance(p.log_p, p.log_q, self.max_rnd, name="LogVariance particles")
        except NonFiniteError:  # the diagnosis every objective gives (NaN data, all -inf) first
            _check_finite((p.log_p - p.log_q).detach(), _sites(p.model_trace), self._name)
            raise
        self.last_num_dropped = int(out.num_dropped)
        self.last_num_kept = int(out.num_kept)
        if self.last_num_dropped:
            warnings.warn(
                "LogVariance dropped particles whose log q - log p is non-finite or >= max_rnd "
                "from the loss (count in .last_num_dropped). A few are harmless; many mean the "
                "guide proposes outside the model's support or has diverged.",
                RuntimeWarning,
                stacklevel=2,
            )
        return out.loss
