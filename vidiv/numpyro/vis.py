r"""Forward chi-square variational importance sampling (VIS) for ``numpyro.infer.SVI``.

Li, Wang, Li & Wu, "Forward chi^2 divergence based variational importance sampling", ICLR 2024.
With :math:`w_s = p_\theta(x, z_s)/q_\phi(z_s)` and samples :math:`z_s \sim q_\phi` **detached**:

* guide parameters :math:`\phi` follow the forward-chi-square score gradient
  :math:`-\sum_s \mathrm{softmax}(2\log w)_s\nabla_\phi\log q_\phi(z_s)`, a self-normalised
  estimate of :math:`\nabla_\phi\log V(\phi)`, where
  :math:`V(\phi) = E_q[w^2] = \int p(x,z)^2/q_\phi(z)\,dz`; minimising V minimises
  :math:`\chi^2(p(z|x)\,\|\,q)` and the variance of the importance-sampling estimate of p(x);
* model parameters :math:`\theta` follow the importance-sampled log-likelihood
  :math:`\nabla_\theta\log\hat p(x) = \sum_s \mathrm{softmax}(\log w)_s\nabla_\theta\log
  p_\theta(x, z_s)`.

Both come from the same draws in one loss. Because the samples are detached the two surrogates
touch disjoint parameters; the guide surrogate enters as a zero-valued term ``g - sg(g)``, so the
loss *value* is :math:`-\log\hat p(x)`. Unlike minimising the Monte Carlo CUBO with
reparameterised gradients (which collapses q onto a point), the score form cannot exploit the
estimator's downward bias. :meth:`ChiSquaredVIS.evaluate` reports the CUBO, the IS log-marginal
and the ELBO from one set of fresh samples.

Point-mass guide sites (``AutoDelta``, ``dist.Delta(param)``; not auxiliary) are point
estimates: their values are not detached and, like model parameters, follow the IS
log-likelihood gradient (MAP / empirical Bayes) of :math:`\log p - \log q_\delta`, so a point
estimate in unconstrained space (``AutoLaplaceApproximation``) keeps the Jacobian term its
``Delta`` carries, as ``Trace_ELBO`` does. A model with no latent site gives
:math:`-\log p(x\mid\theta)` (maximum likelihood), as NumPyro's ELBOs do.

With ``numpyro.infer.SVI`` use ``svi.run(..., stable_update=True)``: a step whose loss is not
finite is then skipped instead of writing NaN into the parameters (NumPyro's loop does not stop
or report it; ``vidiv.numpyro.fit`` does).

Plates follow NumPyro's ``RenyiELBO``: per element of the plates common to all sample sites
(amortised guides, local latents), summed, scaled by ``size/subsample_size`` under subsampling.

Example
-------
>>> svi = SVI(model, guide, numpyro.optim.Adam(1e-2), loss=ChiSquaredVIS(num_particles=64))
>>> result = svi.run(jax.random.key(0), 5000, data)                            # doctest: +SKIP
>>> ChiSquaredVIS(20_000).evaluate(jax.random.key(1), result.params, model, guide, data)
... # doctest: +SKIP
{'log_marginal': ..., 'cubo': ..., 'elbo': ..., 'is_ess': ...}
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from numpyro.infer.elbo import ELBO

from ..errors import check_num_particles
from ..estimators import (
    check_log_weights,
    cubo,
    elbo,
    log_marginal,
    vis_surrogates,
    weights,
)
from ._host import check_host_keywords, warn_zero_low_rank_factor
from ._traces import particle_terms, reduce_mutable_state

__all__ = ["ChiSquaredVIS"]


class ChiSquaredVIS(ELBO):
    """Forward chi-square VIS objective; loss value ``-log p_hat(x)``.

    :param num_particles: S >= 2 importance samples per step (the reference code uses 500-5000;
        the chi-square weights ``softmax(2 log w)`` degenerate faster than the IS weights).
    :param vectorize_particles: as in NumPyro's ELBOs: ``True`` (``vmap`` over particle keys),
        ``False`` (``jax.lax.map``), a callable ``fn(single_particle_fn, keys)`` or ``jax.pmap``
        (particles split over the local devices).
    :param sum_sites: NumPyro's keyword; only ``True`` (the default) is supported (the objective
        is not a sum over sites).
    :param multi_sample_guide: NumPyro's keyword; only ``False`` (the default) is supported.
    """

    can_infer_discrete = True  # the guide gradient needs only log q at detached samples

    def __init__(
        self,
        num_particles: int = 64,
        vectorize_particles: bool | Callable = True,
        sum_sites: bool = True,
        multi_sample_guide: bool = False,
    ) -> None:
        check_host_keywords("ChiSquaredVIS", sum_sites, multi_sample_guide, vectorize_particles)
        self.sum_sites, self.multi_sample_guide = sum_sites, multi_sample_guide
        num_particles = check_num_particles(num_particles, minimum=2)
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

    def __repr__(self) -> str:
        return f"ChiSquaredVIS(num_particles={self.num_particles})"

    def _terms(self, rng_key, param_map, model, guide, args, kwargs, num_particles):
        warn_zero_low_rank_factor(guide, param_map, "ChiSquaredVIS")
        t = particle_terms(
            rng_key, param_map, model, guide, args, kwargs, num_particles,
            detach=True, vectorize=self.vectorize_particles_fn, objective="ChiSquaredVIS",
        )  # fmt: skip
        check_log_weights(jax.lax.stop_gradient(t.log_p - t.log_q), "ChiSquaredVIS log weights")
        return t

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        t = self._terms(rng_key, param_map, model, guide, args, kwargs, self.num_particles)
        # point-mass sites follow the IS log-likelihood of log p - log q_point (MAP with the
        # Jacobian of an unconstrained point estimate); the guide's score terms exclude them
        model_part, guide_part = vis_surrogates(t.log_p, t.log_q, t.log_q_point)
        log_px, g = jnp.sum(model_part) * t.scale, jnp.sum(guide_part) * t.scale
        loss = -log_px + (g - jax.lax.stop_gradient(g))
        return {"loss": loss, "mutable_state": reduce_mutable_state(t.mutable_state)}

    def evaluate(
        self,
        rng_key: jax.Array,
        params: dict,
        model: Callable,
        guide: Callable,
        *args,
        num_particles: int | None = None,
        **kwargs,
    ) -> dict[str, jax.Array]:
        """Bounds from one set of fresh guide samples at ``params`` (constrained values, e.g.
        ``svi.get_params(state)``): ``log_marginal`` (IS estimate of log p(x)), ``cubo``
        (chi-square upper bound CUBO_2 = 1/2 log V_hat), ``elbo``, all totals over the data
        (scaled like the loss), and ``is_ess`` (per element of the common plates).

        The sandwich ``elbo <= log p(x) <= cubo`` holds in expectation over many samples; the
        Monte Carlo CUBO is biased low, so use many samples (e.g. 20,000) to check it.
        """
        n = self.num_particles if num_particles is None else check_num_particles(num_particles, 2)
        t = self._terms(rng_key, params, model, guide, args, kwargs, n)
        lp, lq = jax.lax.stop_gradient(t.log_p), jax.lax.stop_gradient(t.log_q)
        return {
            "log_marginal": jnp.sum(log_marginal(lp, lq)) * t.scale,
            "cubo": jnp.sum(cubo(lp, lq, 2.0)) * t.scale,
            "elbo": jnp.sum(elbo(lp, lq)) * t.scale,
            "is_ess": weights.is_ess(lp - lq),
        }
