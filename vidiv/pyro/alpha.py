r"""Renyi / variational-Renyi (VR) bound objective for ``pyro.infer.SVI`` (Li & Turner, 2016).

.. math:: \hat L_{\alpha,K} = \frac{1}{1-\alpha}\Big[\log\sum_{k=1}^K w_k^{1-\alpha} - \log K\Big],
          \qquad w_k = \frac{p(x, z_k)}{q(z_k)},\ z_k \sim q.

``alpha = 1`` is the ELBO (exactly, and continuously across it), ``alpha = 0`` the IWAE bound,
``0 < alpha < 1`` interpolates; for ``alpha >= 0`` the expected estimate is a lower bound on
``log p(x)``. ``alpha < 0`` moves the estimate towards the largest weight (VR-max as
``alpha -> -inf``); with finite K its expectation is biased towards the ELBO, so it is *not* a
guaranteed upper bound, and minimising a chi-square upper bound is ``ChiSquaredVIS``'s job.

With local latents in a plate shared by every site, the bound is computed per datum and summed;
a subsampled common plate multiplies the sum by ``size / subsample_size`` *outside* the
log-sum-exp (NumPyro's semantics; Pyro's ``RenyiELBO`` scales inside it, which is wrong).

Gradients (``gradient=``):

* ``"reparam"`` -- the VR gradient
  :math:`\sum_k \mathrm{softmax}((1-\alpha)\log w)_k \nabla\log w_k`
  through reparameterised samples, plus, for guide sites without ``rsample`` (Bernoulli,
  Categorical, ...), a score-function term with the VIMCO leave-one-out baseline
  (``vidiv.estimators.score_surrogate``), unbiased for the gradient of :math:`E[\hat L_{\alpha,K}]`.
  Pyro's ``RenyiELBO`` has no learning signal there (its score term is ``alpha/(1-alpha) log q``,
  zero at ``alpha = 0``).
* ``"dreg"`` -- doubly-reparameterised (Tucker et al., 2019): the guide's score term is replaced
  by its reparameterised equivalent; same expectation, lower variance. Needs every guide site to
  be reparameterised. Model parameters keep the standard gradient.

Example
-------
>>> from pyro.infer import SVI
>>> from pyro.infer.autoguide import AutoNormal
>>> from pyro.optim import ClippedAdam
>>> from vidiv.pyro import AlphaDivergence
>>> svi = SVI(model, AutoNormal(model), ClippedAdam({"lr": 0.02}),            # doctest: +SKIP
...           loss=AlphaDivergence(alpha=0.5, num_particles=16))
"""

from __future__ import annotations

import math

import torch

from .._backend import as_float
from ..errors import InvalidArgumentError, ModelStructureError, check_alpha
from ..estimators import renyi_bound, renyi_dreg_surrogate, score_surrogate
from ._elbo import ParticleELBO
from ._traces import Particles

__all__ = ["AlphaDivergence"]

_GRADIENTS = ("reparam", "dreg")


class AlphaDivergence(ParticleELBO):
    """Renyi bound objective; a drop-in ``loss=`` for ``pyro.infer.SVI``.

    :param alpha: the Renyi order, any finite real (``1`` = ELBO, ``0`` = IWAE).
    :param num_particles: K, the samples per bound estimate (>= 1).
    :param gradient: ``"reparam"`` (VR gradient + VIMCO score terms) or ``"dreg"``.
    :param max_plate_nesting: the model's plate nesting; guessed on first use if infinite.
    :param vectorize_particles: ``None`` (default): one particle plate, checked against one
        draw on the first call, with a warned fallback to a Python loop for models that do not
        broadcast; ``True``: one particle plate, the model declared vectorised (no one-draw
        run); ``False``: a Python loop (models with dynamic structure).

    ``loss`` returns ``-bound`` (summed over a common data plate, times its subsample scale);
    ``loss_and_grads`` also backpropagates; ``differentiable_loss`` returns the surrogate tensor
    (its value is ``-bound``), so the objective also works through ``ELBOModule`` and plain torch
    optimisers.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        num_particles: int = 8,
        gradient: str = "reparam",
        max_plate_nesting: float = math.inf,
        vectorize_particles: bool | None = None,
        **host,
    ) -> None:
        self.alpha = check_alpha(alpha)
        if gradient not in _GRADIENTS:
            raise InvalidArgumentError(
                f"gradient must be one of {_GRADIENTS}, got {gradient!r}: 'reparam' is the "
                "standard VR gradient, 'dreg' the doubly-reparameterised one."
            )
        self.gradient = gradient
        if gradient == "dreg":  # messages name the estimator that needs what they ask for
            self._name = "AlphaDivergence(gradient='dreg')"
        super().__init__(num_particles, max_plate_nesting, vectorize_particles, **host)

    _name = "AlphaDivergence"

    def bound(self, particles: Particles) -> torch.Tensor:
        """Per-datum Renyi bound, shape ``indep`` (value and reparameterised gradient)."""
        return renyi_bound(particles.log_p, particles.log_q, self.alpha)

    def loss(self, model, guide, *args, **kwargs) -> float:
        """``-bound`` as a float (no gradient)."""
        with torch.no_grad():
            p = self.particles(model, guide, args, kwargs)
            return -as_float(self.bound(p).sum() * p.scale)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """Surrogate loss: value ``-bound``, gradient the chosen estimator."""
        p = self.particles(model, guide, args, kwargs)
        if self.gradient == "dreg":
            surr = self._dreg(model, guide, args, kwargs, p)
        else:
            surr = self.bound(p)
            if p.log_q_score is not None:
                surr = surr + score_surrogate(p.log_w, p.log_q_score, self.alpha)
        return -(surr.sum() * p.scale)

    def _dreg(self, model, guide, args, kwargs, p: Particles) -> torch.Tensor:
        if p.non_reparam:
            raise ModelStructureError(
                f"gradient='dreg' needs every guide site to be reparameterised, but "
                f"{list(p.non_reparam)} have no rsample. Use gradient='reparam' (score-function "
                "terms with a VIMCO baseline) for discrete or non-reparameterised sites."
            )
        has_model_params = any(s["type"] == "param" for s in p.model_trace.nodes.values())
        # the same draws with detached samples: log q_phi(sg z) carries only the direct
        # (score) dependence on phi, log p_theta(x, sg z) only the model parameters'
        d = self.particles(model, guide, args, kwargs, detach=True, replay=p.raw_guide_traces)
        # value log q, gradient (total - direct) = the path term d log q / dz * dz / dphi; a
        # point mass keeps its log q (it is not a sample: no score term to remove)
        point = d.log_q_point
        direct = d.log_q - point
        log_q_stopped = p.log_q - direct + direct.detach()
        # model parameters and point masses follow the IS weights: sum_s w_s grad log w_s
        has_points = isinstance(point, torch.Tensor)
        log_p_model = d.log_p - point if has_model_params or has_points else None
        return renyi_dreg_surrogate(p.log_p, log_q_stopped, self.alpha, log_p_model)
