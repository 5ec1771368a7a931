r"""NumPyro ``DiffusionGuide``: a guide whose sample is the end point of a learned controlled SDE.

Over the model's continuous latents, flattened in unconstrained space (:math:`x\in\mathbb R^d`),

.. math:: dX_t = \big(\mu(X_t,t) + \sigma(t)\,u_\theta(X_t,t)\big)\,dt + \sigma(t)\,dW_t,

is simulated by Euler–Maruyama in a ``lax.scan`` (``num_steps`` steps, noise from
``numpyro.prng_key()``), with the reference SDE ``"pis"`` or ``"vp"`` (:mod:`vidiv.paths.sde`) and a
time-conditioned SiLU MLP drift :math:`u_\theta` whose weights are ``numpyro.param`` sites
(:mod:`vidiv.paths.control`). The end point is recorded as the auxiliary site
``_<prefix>_latent ~ Delta(x_N, log_density=log q)`` with the *path* log density
:math:`\log q=\sum_k[\text{running}_k+u_k\cdot\Delta W_k]+\log p_{\rm ref}(x_N)`
(:mod:`vidiv.paths.rnd`); the constrained latents follow as ``Delta`` sites carrying
:math:`-\log|J|` exactly as NumPyro's ``AutoContinuous`` does, so for every host objective
:math:`\log p - \log q` is the trajectory's log importance weight and
:math:`E_q[e^{\log p-\log q}]=Z`.

Which graph is built (see :mod:`vidiv.paths.modes`):

* ``estimator="lv"``: the trajectory is driven by the detached control; gradients reach
  :math:`\theta` only through :math:`u` in
  :math:`u\cdot(\mathrm{sg}(u)-\frac12u)\Delta t+u\cdot\Delta W`.
  With ``vidiv.numpyro.LogVariance`` this is the path-space log-variance loss of
  Richter & Berner (ICLR 2024) (no backpropagation through the solver).
* ``estimator="kl"``: reparameterised through the whole chain, running cost
  :math:`\frac12\|u\|^2\Delta t` plus the Itô term; ``Trace_ELBO`` then minimises the path KL
  and ``AlphaDivergence`` the path Rényi bound.
* ``estimator="auto"`` (default): ``"lv"`` when the objective detaches sample values
  (``vidiv.numpyro.LogVariance``, ``ChiSquaredVIS``) or inside
  ``vidiv.paths.estimator_scope("lv")``, else ``"kl"`` (:mod:`vidiv.paths.modes`).

With ``use_score=True`` (default) the drift also sees :math:`\nabla\log\rho(x)`, the gradient of
the model's unconstrained log joint (PIS "score" parameterisation, clipped at ``score_clip``).
The feature is only an input of the drift (any function of :math:`x` keeps :math:`\log q` exact);
inside the guide it is evaluated with the model's own ``numpyro.param`` sites at their initial
values, while the importance weights (:meth:`sample_with_log_weights`, :meth:`log_z`) use the
fitted ones.

Example
-------
>>> import jax, numpyro, numpyro.distributions as dist
>>> from numpyro.infer import SVI, Trace_ELBO
>>> from vidiv.numpyro import DiffusionGuide
>>> def model():
...     numpyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
>>> guide = DiffusionGuide(model, num_steps=10, hidden=(16,), estimator="kl")
>>> svi = SVI(model, guide, numpyro.optim.Adam(1e-3), Trace_ELBO(num_particles=4))
>>> state = svi.init(jax.random.PRNGKey(0))
>>> samples, log_w = guide.sample_with_log_weights(jax.random.PRNGKey(1), svi.get_params(state), 8)
>>> samples["z"].shape, log_w.shape
((8, 2), (8,))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_median

from ..errors import InvalidArgumentError
from ..paths import (
    check_continuous_latents,
    control_value,
    em_step,
    feature_dim,
    guide_options,
    mlp_shapes,
    resolve_estimator,
    time_features,
)
from ..paths.filter import MAX_RND
from ._diffusion_results import DiffusionResultsMixin

__all__ = ["DiffusionGuide"]


def _init_layer(shape, last: bool, init_scale: float):
    def init(key):
        dtype = jnp.result_type(float)
        if last:
            return jnp.zeros(shape, dtype)
        if len(shape) == 1:
            return jnp.zeros(shape, dtype)
        return init_scale * jax.random.normal(key, shape, dtype) / math.sqrt(shape[0])

    return init


def _values_detached() -> bool:
    """True when vidiv's detach-samples handler (all values) encloses this guide call."""
    try:
        from ._traces import detach_samples
    except ImportError:  # pragma: no cover
        return False
    from numpyro.primitives import _PYRO_STACK

    return any(isinstance(h, detach_samples) and not h.only_nonreparam for h in _PYRO_STACK)


class DiffusionGuide(DiffusionResultsMixin, AutoContinuous):
    """Guide over all continuous latents whose sample is a controlled-SDE end point.

    :param model: NumPyro model (continuous latents only; global, i.e. no local latents).
    :param num_steps: Euler–Maruyama steps (>= 1).
    :param hidden: hidden widths of the state-time MLP (the score coefficient net uses
        ``hidden[0]``).
    :param sde: ``"pis"`` (scaled Brownian motion from 0; default ``sigma=sqrt(0.2), T=5``, unit
        end variance) or ``"vp"`` (OU from N(0, scale^2)), or a :class:`vidiv.paths.ReferenceSDE`.
    :param estimator: ``"auto"`` | ``"lv"`` | ``"kl"`` (module docstring).
    :param use_score: feed the clipped model score to the drift.
    :param score_clip: clip value of the score feature.
    :param sde_kwargs: keyword arguments of the reference SDE (e.g. ``{"sigma": 1.0}``).
    :param prefix: prefix of the param and auxiliary site names.
    """

    def __init__(
        self,
        model,
        num_steps: int = 100,
        hidden: Sequence[int] = (64, 64),
        sde="pis",
        *,
        estimator: str = "auto",
        use_score: bool = True,
        score_clip: float = 10.0,
        sde_kwargs: dict | None = None,
        prefix: str = "diffusion",
        init_loc_fn=init_to_median,
        init_scale: float = 1.0,
    ):
        (self.num_steps, self.hidden, self.sde, self.estimator, self.use_score,
         self.score_clip, self.init_scale) = guide_options(
            num_steps, hidden, sde, sde_kwargs, estimator, use_score, score_clip, init_scale
        )
        self._schedule = self.sde.schedule(self.num_steps)
        self._log_var_end = self.sde.terminal_variance(self.num_steps)
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    # ------------------------------------------------------------------ parameters
    def _layer_params(self, kind: str, shapes):
        out = []
        for i, shape in enumerate(shapes):
            last = i >= len(shapes) - 2
            out.append(
                numpyro.param(
                    f"{self.prefix}_{kind}_{i}", _init_layer(shape, last, self.init_scale)
                )
            )
        return out

    def _params(self):
        d, e = self.latent_dim, feature_dim()
        net = self._layer_params("net", mlp_shapes(d + e, self.hidden, d))
        coef = None
        if self.use_score:
            coef = self._layer_params("coef", mlp_shapes(e, self.hidden[:1], d))
        return net, coef

    # ------------------------------------------------------------------ simulation
    def _score_fn(self, args, kwargs):
        potential = self._potential_fn_gen(*args, **kwargs)

        def log_density(x):
            return -potential(self._unpack_latent(x))

        return jax.vmap(jax.grad(log_density))

    def _log_target_fn(self, args, kwargs):
        potential = self._potential_fn_gen(*args, **kwargs)
        return jax.vmap(lambda x: -potential(self._unpack_latent(x)))

    def simulate(self, net, coef, key, batch: int, estimator: str, args=(), kwargs=None,
                 noise=None):
        """Roll out ``batch`` trajectories; returns ``(x_N (batch, d), log q (batch,))``.

        Pure given ``net``/``coef`` (lists of arrays) and ``key`` (or ``noise = (x0_noise (batch,
        d), xi (num_steps, batch, d))`` standard normals); used by the guide and by
        :meth:`sample_with_log_weights`."""
        kwargs = kwargs or {}
        d = self.latent_dim
        dtype = jnp.result_type(float)
        if noise is None:
            k0, k1 = jax.random.split(key)
            noise = (jax.random.normal(k0, (batch, d), dtype),
                     jax.random.normal(k1, (self.num_steps, batch, d), dtype))
        x0 = self.sde.initial_std * jnp.asarray(noise[0], dtype)
        xi = jnp.asarray(noise[1], dtype)
        s = self._schedule
        inputs = (
            jnp.asarray(time_features(np.asarray(s.t), self.sde.T), dtype),
            jnp.asarray(s.dt, dtype),
            jnp.asarray(s.sigma, dtype),
            jnp.asarray(s.drift, dtype),
            xi,
        )
        score_fn = self._score_fn(args, kwargs) if self.use_score else None

        def body(carry, inp):
            x, run, ito = carry
            tf, dt, sig, a, xi_k = inp
            score = score_fn(x) if score_fn is not None else None
            u = control_value(net, coef, x, tf, score, self.score_clip)
            x, r, i = em_step(x, u, xi_k, dt, sig, a, estimator)
            return (x, run + r, ito + i), None

        zeros = jnp.zeros((batch,), dtype)
        with handlers.block():
            (x_end, run, ito), _ = jax.lax.scan(body, (x0, zeros, zeros), inputs)
        log_p_ref = self.sde.log_p_ref(x_end, self.num_steps)
        return x_end, run + ito + log_p_ref

    def _setup_prototype(self, *args, **kwargs):
        # a fixed key: the structure check must not consume the user's random stream
        try:
            with handlers.block():
                trace = handlers.trace(handlers.seed(self.model, 0)).get_trace(*args, **kwargs)
        except Exception:  # noqa: BLE001 - e.g. a target without a sampler: the host's
            return super()._setup_prototype(*args, **kwargs)  # initialisation handles it
        check_continuous_latents(
            [(name, type(site["fn"]).__name__,
              bool(getattr(site["fn"], "is_discrete", False) or site["infer"].get("enumerate")))
             for name, site in trace.items()
             if site["type"] == "sample" and not site["is_observed"]],
            "numpyro",
        )  # fmt: skip
        super()._setup_prototype(*args, **kwargs)

    def _sample_latent(self, *args, **kwargs):
        sample_shape = tuple(kwargs.pop("sample_shape", ()))
        estimator = resolve_estimator(self.estimator, _values_detached())
        net, coef = self._params()
        key = numpyro.prng_key()
        if key is None:
            raise InvalidArgumentError(
                "DiffusionGuide needs a random key: run it under numpyro.handlers.seed or inside "
                "SVI / Predictive."
            )
        batch = int(np.prod(sample_shape)) if sample_shape else 1
        x_end, log_q = self.simulate(net, coef, key, batch, estimator, args, kwargs)
        x_end = jnp.reshape(x_end, (*sample_shape, self.latent_dim))
        log_q = jnp.reshape(log_q, sample_shape)
        return numpyro.sample(
            f"_{self.prefix}_latent",
            dist.Delta(x_end, log_density=log_q, event_dim=1),
            infer={"is_auxiliary": True},
        )

    # ------------------------------------------------------------------ AutoContinuous API
    def _get_posterior(self):
        raise NotImplementedError(
            "DiffusionGuide has no closed-form posterior; use sample_posterior or "
            "sample_with_log_weights."
        )

    def sample_posterior(self, rng_key, params, *args, sample_shape=(), **kwargs):
        """Constrained samples, shape ``(*sample_shape, ...)`` per site."""
        latent = handlers.substitute(handlers.seed(self._sample_latent, rng_key), params)(
            *args, sample_shape=sample_shape, **kwargs
        )
        return self._unpack_and_constrain(latent, params)

    @property
    def max_rnd(self) -> float:
        return MAX_RND
