r"""Log-variance (VarGrad) objective (Richter, Boustati, Nuesken, Ruiz & Akyildiz, NeurIPS 2020).

.. math:: L_{LV}(\phi) = \widehat{\mathrm{Var}}_{s\in K}\big[f_s\big],\qquad
          f_s = \log q_\phi(z_s) - \log p(x, z_s),\qquad z_s \sim q_{\mathrm{sg}(\phi)},

the unbiased variance of the log ratio at *detached* samples over the kept particles
:math:`K = \{s : f_s \text{ finite and } f_s < \texttt{max\_rnd}\}` (the reference
implementation's filter, sde_sampler's ``max_rnd`` mask, default 1e8). Without dropped particles
it is the plain VarGrad loss, whose gradient is exactly twice the score-function KL gradient with
a leave-one-out baseline, so it needs no reparameterisation: guides with Bernoulli or Categorical
sites train without enumeration. At the exact posterior the log ratio is constant and the loss is
zero.

Model parameters and point masses
---------------------------------
The variance cannot train model parameters: :math:`\nabla_\theta\mathrm{Var}_q[\log q -
\log p_\theta]` vanishes whenever ``q`` fits the posterior of the current :math:`\theta`, so every
:math:`\theta` would be a fixed point. The loss is therefore

.. math:: L = \widehat{\mathrm{Var}}_{s\in K}\big[\log q_\phi(z_s) - \mathrm{sg}(\log p_\theta(x,
          z_s))\big] - \big(m - \mathrm{sg}(m)\big),\qquad
          m = \log\frac{1}{|K|}\sum_{s\in K}\frac{p_\theta(x, z_s)}{\mathrm{sg}(q(z_s))},

whose value is the variance and whose gradient is, for the guide's parameters :math:`\phi`, the
VarGrad gradient above (``log p`` is stopped in the variance), and for the model's parameters
:math:`\theta` (``pyro.param`` / ``pyro.module`` sites of the model) the importance-sampled
log-likelihood gradient :math:`\sum_{s\in K}\mathrm{softmax}(\log w)_s\nabla_\theta\log
p_\theta(x, z_s)`, as in :class:`~vidiv.pyro.ChiSquaredVIS` (a consistent estimate of
:math:`\nabla_\theta\log p_\theta(x)`: maximum likelihood / empirical Bayes). Here ``m`` is taken
over the particles' totals (the same totals as the variance), not per datum. Point-mass guide
sites (``AutoDelta``, ``dist.Delta(pyro.param(...))``, ``AutoLaplaceApproximation``'s latent) are
point estimates: their values are not detached, so they follow the same gradient as a model
parameter, of :math:`\log p - \log q_\delta` (MAP, with the Jacobian an unconstrained point
estimate carries, as ``Trace_ELBO`` has it). A parameter
used by *both* the model and the guide (unusual) gets the sum of the two gradients. A model with
no latent site has variance 0; the loss is then :math:`-\log p(x\mid\theta)` (maximum likelihood,
as with ``Trace_ELBO`` and an empty guide).

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

A guide that reports its sample on an *auxiliary* ``Delta(x, log_density=path_log_q)`` site (and
the model's sites as ``Delta`` functions of it, as :class:`~vidiv.pyro.DiffusionGuide` does) keeps
the gradient of ``path_log_q``: only the sampled value is detached, so the loss is the path-space
log-variance loss (a particle is then a trajectory). A non-auxiliary ``Delta`` is a point estimate
(see above), as in NumPyro.

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
from ..estimators import vis_model_surrogate
from ..paths.filter import MAX_RND, check_max_rnd, kept_mask, path_log_variance
from ._elbo import ParticleELBO
from ._traces import _check_finite, _sites

__all__ = ["LogVariance"]


class LogVariance(ParticleELBO):
    """VarGrad log-variance loss as a ``loss=`` for ``pyro.infer.SVI``; works for any guide.
    Particles whose log ratio is non-finite or ``>= max_rnd`` are dropped from the loss.

    :param num_particles: samples per step (>= 2: the variance needs two).
    :param max_plate_nesting: the model's plate nesting; guessed on first use if infinite.
    :param vectorize_particles: ``None`` (default, checked particle plate with a loop
        fallback), ``True`` (particle plate, model declared vectorised) or ``False`` (loop); as
        for :class:`AlphaDivergence`.
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
        vectorize_particles: bool | None = None,
        max_rnd: float = MAX_RND,
        **host,
    ) -> None:
        super().__init__(
            num_particles, max_plate_nesting, vectorize_particles, min_particles=2, **host
        )
        self.max_rnd = check_max_rnd(max_rnd)
        self.last_num_dropped: int | None = None
        self.last_num_kept: int | None = None

    def loss(self, model, guide, *args, **kwargs) -> float:
        """The log-variance loss as a float."""
        with torch.no_grad():
            return as_float(self.differentiable_loss(model, guide, *args, **kwargs))

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Value: the unbiased variance over the kept particles of ``log q(sg z) - log p(x,
        sg z)``; gradient: VarGrad for the guide, the IS log-likelihood for model parameters and
        point masses (see the module docstring). Without latent sites: ``-log p(x | theta)``."""
        p = self.particles(
            model, guide, args, kwargs, detach=True, per_datum=False, check_finite=False
        )
        try:
            out = path_log_variance(
                p.log_p.detach(), p.log_q, self.max_rnd, name="LogVariance particles"
            )
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
        kept = kept_mask(p.log_p, p.log_q, self.max_rnd)
        # point masses follow log p - log q_point (an unconstrained point estimate keeps its
        # Jacobian term); the rest of log q enters detached
        point = p.log_q_point
        log_p = torch.where(kept, p.log_p - point, torch.full_like(p.log_p, -math.inf))
        rest = (p.log_q - point).detach()
        m = vis_model_surrogate(log_p, torch.where(kept, rest, torch.zeros_like(rest)))
        if not any(not s["is_observed"] for s in _sites(p.model_trace)):
            return -m  # no latent site: the variance is 0 and the loss is -log p(x | theta)
        return out.loss - (m - m.detach())
