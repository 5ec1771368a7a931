r"""Log-variance (VarGrad) loss for ``numpyro.infer.SVI``.

Richter, Boustati, Nuesken, Ruiz & Akyildiz, "VarGrad: a low-variance gradient estimator for
variational inference", NeurIPS 2020. With samples :math:`z_s \sim q_\phi` **detached** and
:math:`f_s = \log q_\phi(z_s) - \log p(x, z_s)`,

.. math:: L_{LV}(\phi) = \frac{1}{S-1}\sum_s (f_s - \bar f)^2,\qquad
          \nabla_\phi L_{LV} = \frac{2}{S-1}\sum_s (f_s-\bar f)\nabla_\phi\log q_\phi(z_s),

which is twice the score-function gradient of KL(q || p(.|x)) with a leave-one-out baseline. It
needs no reparameterisation, so it trains guides with discrete sites (Bernoulli, Categorical)
directly, and it is zero exactly when q is the posterior (f is then constant).

Only the sampled *values* are detached: a guide that reports its sample as
``dist.Delta(x, log_density=log_q_path)`` (e.g. ``DiffusionGuide``) keeps the gradient of
``log_q_path``, so this loss is the path-space log-variance loss for it. Model parameters get the
gradient of the same variance through ``log p``.

Plates: with latent sites in a plate common to every site, ``f_s`` is the particle's *total* over
that plate (its sum over data points), and the loss is the variance of these totals; under
subsampling the loss is ``scale * Var_s[sum over the minibatch]``, whose gradient is an unbiased
estimate of the full-data gradient (cross terms between data points vanish in expectation).

Example
-------
>>> svi = SVI(model, guide, numpyro.optim.Adam(1e-2), loss=LogVariance(num_particles=16))
>>> result = svi.run(jax.random.key(0), 2000)                                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from numpyro.infer.elbo import ELBO

from ..errors import check_num_particles
from ..estimators import check_log_weights, log_variance
from ._traces import particle_terms, reduce_mutable_state

__all__ = ["LogVariance"]


class LogVariance(ELBO):
    """VarGrad log-variance loss for any guide (discrete sites included).

    :param num_particles: S >= 2 (the unbiased variance needs two particles).
    :param vectorize_particles: as in NumPyro's ELBOs (``True``: ``vmap`` over particle keys).
    """

    can_infer_discrete = True  # discrete guide sites are sampled; the loss needs only log q

    def __init__(self, num_particles: int = 16, vectorize_particles: bool | Callable = True):
        num_particles = check_num_particles(num_particles, minimum=2)
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

    def __repr__(self) -> str:
        return f"LogVariance(num_particles={self.num_particles})"

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        t = particle_terms(
            rng_key, param_map, model, guide, args, kwargs, self.num_particles,
            detach=True, vectorize=self.vectorize_particles_fn, objective="LogVariance",
        )  # fmt: skip
        axes = tuple(range(1, t.log_p.ndim))
        log_p, log_q = jnp.sum(t.log_p, axis=axes), jnp.sum(t.log_q, axis=axes)
        check_log_weights(jax.lax.stop_gradient(log_p - log_q), "LogVariance log weights")
        loss = log_variance(log_p, log_q) * t.scale
        return {"loss": loss, "mutable_state": reduce_mutable_state(t.mutable_state)}
