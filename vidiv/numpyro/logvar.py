r"""Log-variance (VarGrad) loss for ``numpyro.infer.SVI``.

Richter, Boustati, Nuesken, Ruiz & Akyildiz, "VarGrad: a low-variance gradient estimator for
variational inference", NeurIPS 2020. With samples :math:`z_s \sim q_\phi` **detached** and
:math:`f_s = \log q_\phi(z_s) - \log p(x, z_s)`,

.. math:: L_{LV}(\phi) = \frac{1}{S-1}\sum_s (f_s - \bar f)^2,\qquad
          \nabla_\phi L_{LV} = \frac{2}{S-1}\sum_s (f_s-\bar f)\nabla_\phi\log q_\phi(z_s),

which is twice the score-function gradient of KL(q || p(.|x)) with a leave-one-out baseline. It
needs no reparameterisation, so it trains guides with discrete sites (Bernoulli, Categorical)
directly, and it is zero exactly when q is the posterior (f is then constant).

Non-finite particles are dropped, as in the reference implementation's ``max_rnd`` filter
(sde_sampler): a particle is kept when :math:`f_s` is finite and below ``max_rnd`` (default
1e8), the sums above run over the :math:`n` kept particles (:math:`S-1` becomes :math:`n-1`), and
a dropped particle gets exactly zero gradient (:func:`vidiv.paths.path_log_variance`). When no
particle is dropped this is the plain VarGrad loss. Under ``jit`` the count cannot be printed or
raised: :meth:`LogVariance.num_dropped` returns it for the draws of the next ``svi.update``
(like ``svi.evaluate``), and :meth:`LogVariance.filtered_loss` for any key. Outside ``jit``
fewer than two kept particles raise :class:`~vidiv.errors.NonFiniteError`; under ``jit`` the loss
is then NaN with a zero gradient (``SVI.run(..., stable_update=True)`` skips such steps).

Only the sampled *values* are detached: a guide that reports its sample on an auxiliary
``dist.Delta(x, log_density=log_q_path)`` site (e.g. ``DiffusionGuide``) keeps the gradient of
``log_q_path``, so this loss is the path-space log-variance loss for it (a particle is then a
trajectory).

Model parameters and point masses
---------------------------------
The variance cannot train model parameters: :math:`\nabla_\theta\mathrm{Var}_q[\log q-\log
p_\theta]` vanishes whenever q fits the current :math:`\theta`, so every :math:`\theta` would be
a fixed point. Model parameters (``numpyro.param`` in the model) therefore follow the
importance-sampled log-likelihood gradient, as in :class:`~vidiv.numpyro.ChiSquaredVIS`:
:math:`\sum_s\mathrm{softmax}(\log w)_s\nabla_\theta\log p_\theta(x, z_s)`, entered as the
zero-valued term ``-(m - sg(m))`` with :math:`m=\log\hat p(x)`; the variance is computed with
``log p`` stopped, so the guide gradient is unchanged. Point-mass guide sites (``AutoDelta``, a
``dist.Delta(param)`` site) are point estimates: their values are not detached and follow the
same gradient (MAP / empirical Bayes) of :math:`\log p-\log q_\delta`, so an unconstrained point
estimate (``AutoLaplaceApproximation``) keeps the Jacobian term its ``Delta`` carries, as
``Trace_ELBO`` does. A model with no latent site has variance 0; the loss is
then :math:`-\log p(x\mid\theta)` (maximum likelihood), as with NumPyro's ELBOs.

With ``numpyro.infer.SVI`` use ``svi.run(..., stable_update=True)``: a step whose loss is not
finite is then skipped instead of writing NaN into the parameters (NumPyro's loop does not stop
or report it; ``vidiv.numpyro.fit`` does).

Plates: with latent sites in a plate common to every site, ``f_s`` is the particle's *total* over
that plate (its sum over data points), and the loss is the variance of these totals; under
subsampling the loss is ``scale * Var_s[sum over the minibatch]``, whose gradient is an unbiased
estimate of the full-data gradient (cross terms between data points vanish in expectation).

Example
-------
>>> lv = LogVariance(num_particles=16)
>>> svi = SVI(model, guide, numpyro.optim.Adam(1e-2), loss=lv)                 # doctest: +SKIP
>>> state = svi.init(jax.random.key(0), data)                                  # doctest: +SKIP
>>> dropped = lv.num_dropped(svi, state, data)   # what the next update drops  # doctest: +SKIP
>>> state, loss = svi.update(state, data)                                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from numpyro.infer.elbo import ELBO

from ..errors import NonFiniteError, check_num_particles
from ..estimators import check_log_weights, vis_model_surrogate
from ..paths.filter import MAX_RND, PathLoss, check_max_rnd, kept_mask, path_log_variance
from ._host import check_host_keywords, warn_zero_low_rank_factor
from ._traces import particle_terms, reduce_mutable_state

__all__ = ["LogVariance"]


class LogVariance(ELBO):
    """VarGrad log-variance loss for any guide (discrete sites included); particles whose log
    ratio is non-finite or ``>= max_rnd`` are dropped from the loss.

    :param num_particles: S >= 2 (the unbiased variance needs two particles).
    :param vectorize_particles: as in NumPyro's ELBOs: ``True`` (``vmap`` over particle keys),
        ``False`` (``jax.lax.map``), a callable ``fn(single_particle_fn, keys)`` or ``jax.pmap``
        (particles split over the local devices).
    :param sum_sites: NumPyro's keyword; only ``True`` (the default) is supported (the objective
        is not a sum over sites).
    :param multi_sample_guide: NumPyro's keyword; only ``False`` (the default) is supported.
    :param max_rnd: particles with ``log q - log p >= max_rnd`` are dropped (default 1e8, the
        reference implementation's value; ``math.inf`` drops only non-finite ones).
    """

    can_infer_discrete = True  # discrete guide sites are sampled; the loss needs only log q

    def __init__(
        self,
        num_particles: int = 16,
        vectorize_particles: bool | Callable = True,
        max_rnd: float = MAX_RND,
        sum_sites: bool = True,
        multi_sample_guide: bool = False,
    ) -> None:
        check_host_keywords("LogVariance", sum_sites, multi_sample_guide, vectorize_particles)
        self.sum_sites, self.multi_sample_guide = sum_sites, multi_sample_guide
        num_particles = check_num_particles(num_particles, minimum=2)
        self.max_rnd = check_max_rnd(max_rnd)
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

    def __repr__(self) -> str:
        return f"LogVariance(num_particles={self.num_particles}, max_rnd={self.max_rnd:g})"

    def _terms(self, rng_key, param_map, model, guide, args, kwargs):
        warn_zero_low_rank_factor(guide, param_map, "LogVariance")
        t = particle_terms(
            rng_key, param_map, model, guide, args, kwargs, self.num_particles,
            detach=True, vectorize=self.vectorize_particles_fn, objective="LogVariance",
        )  # fmt: skip
        axes = tuple(range(1, t.log_p.ndim))
        log_p, log_q = jnp.sum(t.log_p, axis=axes), jnp.sum(t.log_q, axis=axes)
        sg = jax.lax.stop_gradient
        try:
            # the variance's gradient reaches the guide only (log p is stopped) ...
            out = path_log_variance(sg(log_p), log_q, self.max_rnd, name="LogVariance particles")
        except NonFiniteError:  # the diagnosis every objective gives (NaN, all -inf) first
            check_log_weights(log_p - log_q, "LogVariance log weights")
            raise
        # ... model parameters and point-mass (Delta) guide sites follow the IS log-likelihood
        # over the particles the variance keeps (a dropped one is NaN / -inf)
        kept = kept_mask(t.log_p, t.log_q, self.max_rnd) & kept_mask(log_p, log_q, self.max_rnd)[
            (slice(None),) + (None,) * (t.log_p.ndim - 1)
        ]
        # (log p - log q_point: an unconstrained point estimate keeps its Jacobian term)
        lp_kept = jnp.where(kept, t.log_p - t.log_q_point, -jnp.inf)
        lq_rest = sg(t.log_q - t.log_q_point)
        m = jnp.sum(vis_model_surrogate(lp_kept, jnp.where(kept, lq_rest, 0.0))) * t.scale
        if not t.has_latents:  # no latent site: the variance is 0, the loss is -log p(x | theta)
            return out._replace(loss=-m), t
        return out._replace(loss=out.loss * t.scale - (m - sg(m))), t

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        out, t = self._terms(rng_key, param_map, model, guide, args, kwargs)
        return {"loss": out.loss, "mutable_state": reduce_mutable_state(t.mutable_state)}

    def filtered_loss(self, rng_key, param_map, model, guide, *args, **kwargs) -> PathLoss:
        """``PathLoss(loss, num_dropped, num_kept)`` for the draws of ``rng_key`` (the same
        draws as :meth:`loss`); jit-able."""
        return self._terms(rng_key, param_map, model, guide, args, kwargs)[0]

    def num_dropped(self, svi, svi_state, *args, **kwargs) -> jax.Array:
        """Number of particles the next ``svi.update(svi_state, *args, **kwargs)`` drops: the
        same key and parameters as that update (as ``svi.evaluate`` does). Jit-able; call it
        before the update to know that step's count, or on ``svi.run(...).state`` afterwards."""
        _, key = jax.random.split(svi_state.rng_key)
        params = svi.get_params(svi_state)
        if jax.tree.leaves(svi_state.mutable_state):
            params = {**params, **svi_state.mutable_state}
        return self.filtered_loss(key, params, svi.model, svi.guide, *args, **kwargs,
                                  **svi.static_kwargs).num_dropped
