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

Only the sampled *values* are detached: a guide that reports its sample as
``dist.Delta(x, log_density=log_q_path)`` (e.g. ``DiffusionGuide``) keeps the gradient of
``log_q_path``, so this loss is the path-space log-variance loss for it (a particle is then a
trajectory). Model parameters get the gradient of the same variance through ``log p``.

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
from ..estimators import check_log_weights
from ..paths.filter import MAX_RND, PathLoss, check_max_rnd, path_log_variance
from ._traces import particle_terms, reduce_mutable_state

__all__ = ["LogVariance"]


class LogVariance(ELBO):
    """VarGrad log-variance loss for any guide (discrete sites included); particles whose log
    ratio is non-finite or ``>= max_rnd`` are dropped from the loss.

    :param num_particles: S >= 2 (the unbiased variance needs two particles).
    :param vectorize_particles: as in NumPyro's ELBOs (``True``: ``vmap`` over particle keys).
    :param max_rnd: particles with ``log q - log p >= max_rnd`` are dropped (default 1e8, the
        reference implementation's value; ``math.inf`` drops only non-finite ones).
    """

    can_infer_discrete = True  # discrete guide sites are sampled; the loss needs only log q

    def __init__(
        self,
        num_particles: int = 16,
        vectorize_particles: bool | Callable = True,
        max_rnd: float = MAX_RND,
    ) -> None:
        num_particles = check_num_particles(num_particles, minimum=2)
        self.max_rnd = check_max_rnd(max_rnd)
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

    def __repr__(self) -> str:
        return f"LogVariance(num_particles={self.num_particles}, max_rnd={self.max_rnd:g})"

    def _terms(self, rng_key, param_map, model, guide, args, kwargs):
        t = particle_terms(
            rng_key, param_map, model, guide, args, kwargs, self.num_particles,
            detach=True, vectorize=self.vectorize_particles_fn, objective="LogVariance",
        )  # fmt: skip
        axes = tuple(range(1, t.log_p.ndim))
        log_p, log_q = jnp.sum(t.log_p, axis=axes), jnp.sum(t.log_q, axis=axes)
        try:
            out = path_log_variance(log_p, log_q, self.max_rnd, name="LogVariance particles")
        except NonFiniteError:  # the diagnosis every objective gives (NaN, all -inf) first
            check_log_weights(log_p - log_q, "LogVariance log weights")
            raise
        return out._replace(loss=out.loss * t.scale), t

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
