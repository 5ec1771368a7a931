r"""Renyi / alpha-divergence objective for ``numpyro.infer.SVI``.

:class:`AlphaDivergence` maximises the Monte Carlo VR bound (Li & Turner 2016)

.. math:: \hat L_{\alpha,K} = \frac{1}{1-\alpha}\Big[\log\sum_{k=1}^K w_k^{1-\alpha} - \log K\Big],
          \qquad w_k = \frac{p(x, z_k)}{q(z_k)},\ z_k \sim q,

for any finite ``alpha``: ``alpha = 1`` is the ELBO exactly (continuous across it), ``alpha = 0``
is IWAE, ``alpha < 0`` lies on the upper side of ``log p(x)`` for infinitely many particles (the
VR-max direction; with finite K the estimate is biased towards the ELBO, so it is *not* a
guaranteed upper bound -- to minimise a chi-square upper bound use ``ChiSquaredVIS``).

Plates follow NumPyro's ``RenyiELBO``: the bound is applied per element of the plates common to
every sample site and summed; subsampling such a plate scales the sum by ``size/subsample_size``.

Gradients
---------
* ``gradient="reparam"``: :math:`\sum_k \mathrm{softmax}((1-\alpha)\log w)_k\nabla\log w_k`.
  Guide sites without a reparameterised sampler (Bernoulli, Categorical, ...) add the VIMCO
  score term :math:`\sum_k (\hat L - \hat L^{(-k)})\nabla\log q(z_k)`, which makes the gradient
  unbiased for :math:`\nabla E[\hat L_{\alpha,K}]`. (NumPyro's ``RenyiELBO`` detaches those
  samples and keeps only :math:`-\sum_k\hat w_k\nabla\log q(z_k)`, which is biased; at
  ``alpha -> 1`` its expectation is zero, so discrete guide parameters get no signal.)
* ``gradient="dreg"``: doubly-reparameterised (Tucker et al. 2019) guide gradient; ``log q`` is
  evaluated with stop-gradient guide parameters at the reparameterised samples. Model
  parameters keep the standard gradient. Needs every guide site to be reparameterised.

Point-mass guide sites (``AutoDelta``) get the pathwise gradient of the bound (MAP). A model with
no latent site gives :math:`-\log p(x\mid\theta)` (maximum likelihood), as NumPyro's ELBOs do.
With ``numpyro.infer.SVI`` use ``svi.run(..., stable_update=True)``: a step whose loss is not
finite is then skipped instead of writing NaN into the parameters (NumPyro's loop does not stop
or report it; ``vidiv.numpyro.fit`` does).

Example
-------
>>> from numpyro.infer import SVI
>>> from numpyro.infer.autoguide import AutoNormal
>>> import numpyro.optim as optim
>>> svi = SVI(model, AutoNormal(model), optim.Adam(0.01),                     # doctest: +SKIP
...           loss=AlphaDivergence(alpha=0.5, num_particles=16))
>>> result = svi.run(jax.random.key(0), 2000)                                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from numpyro.infer.elbo import ELBO

from ..errors import InvalidArgumentError, ModelStructureError, check_alpha, check_num_particles
from ..estimators import check_log_weights, renyi_bound, renyi_dreg_surrogate, score_surrogate
from ._host import check_host_keywords
from ._traces import particle_terms, reduce_mutable_state

__all__ = ["AlphaDivergence"]

_GRADIENTS = ("reparam", "dreg")


class AlphaDivergence(ELBO):
    """VR / Renyi bound objective; the loss is minus the bound.

    :param alpha: Renyi order, any finite real (0: IWAE, 1: ELBO, < 0: VR-max side).
    :param num_particles: K, the number of guide samples per bound (>= 1).
    :param gradient: ``"reparam"`` (standard, with score terms for discrete guide sites) or
        ``"dreg"`` (doubly reparameterised; fully reparameterised guides only).
    :param vectorize_particles: as in NumPyro's ELBOs: ``True`` (``vmap`` over particle keys),
        ``False`` (``jax.lax.map``), a callable ``fn(single_particle_fn, keys)`` or ``jax.pmap``
        (particles split over the local devices).
    :param sum_sites: NumPyro's keyword; only ``True`` (the default) is supported (the objective
        is not a sum over sites).
    :param multi_sample_guide: NumPyro's keyword; only ``False`` (the default) is supported.
    """

    can_infer_discrete = True  # discrete guide sites are sampled and get score-function terms

    def __init__(
        self,
        alpha: float = 0.5,
        num_particles: int = 8,
        gradient: str = "reparam",
        vectorize_particles: bool | Callable = True,
        sum_sites: bool = True,
        multi_sample_guide: bool = False,
    ) -> None:
        check_host_keywords("AlphaDivergence", sum_sites, multi_sample_guide, vectorize_particles)
        self.sum_sites, self.multi_sample_guide = sum_sites, multi_sample_guide
        self.alpha = check_alpha(alpha)
        num_particles = check_num_particles(num_particles)
        if gradient not in _GRADIENTS:
            raise InvalidArgumentError(
                f"gradient must be one of {_GRADIENTS}, got {gradient!r}: 'reparam' is the "
                "standard VR gradient, 'dreg' the doubly-reparameterised one."
            )
        self.gradient = gradient
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

    def __repr__(self) -> str:
        return (
            f"AlphaDivergence(alpha={self.alpha}, num_particles={self.num_particles}, "
            f"gradient={self.gradient!r})"
        )

    def surrogate_bound(self, rng_key, param_map, model, guide, *args, **kwargs):
        """``(bound, mutable_state)``: the bound's total (value) with the chosen gradient."""
        dreg = self.gradient == "dreg"
        t = particle_terms(
            rng_key, param_map, model, guide, args, kwargs, self.num_particles,
            dreg=dreg, vectorize=self.vectorize_particles_fn, objective="AlphaDivergence",
        )  # fmt: skip
        check_log_weights(jax.lax.stop_gradient(t.log_p - t.log_q), "AlphaDivergence log weights")
        if dreg:
            if t.score_sites:
                raise ModelStructureError(
                    f"AlphaDivergence(gradient='dreg') needs a fully reparameterised guide, but "
                    f"guide site(s) {list(t.score_sites)} have no reparameterised sampler. Use "
                    "gradient='reparam' (score-function terms are added for those sites)."
                )
            bound = renyi_dreg_surrogate(t.log_p, t.log_q_stopped, self.alpha, t.log_p_model)
        else:
            bound = renyi_bound(t.log_p, t.log_q, self.alpha)
            if t.log_q_score is not None:
                bound = bound + score_surrogate(t.log_p - t.log_q, t.log_q_score, self.alpha)
        return jnp.sum(bound) * t.scale, reduce_mutable_state(t.mutable_state)

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        bound, state = self.surrogate_bound(rng_key, param_map, model, guide, *args, **kwargs)
        return {"loss": -bound, "mutable_state": state}
