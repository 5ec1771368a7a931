r"""Laplace approximation of a NumPyro model in its unconstrained space.

``u* = argmin V(u)`` with ``V(u) = -log p(x, T(u)) - log|det J_T(u)|`` (the potential of
``numpyro.infer.util.initialize_model``, flattened by FBGVI's
:class:`~vidiv.numpyro._fbgvi_model.FlatPotential`), ``Σ = (∇²V(u*))⁻¹`` by ``jax.hessian``; see
:mod:`vidiv.gaussian.laplace` for the optimiser and the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer.initialization import init_to_median, init_to_sample, init_to_uniform

from vidiv.errors import ModelStructureError, no_finite_start_error
from vidiv.gaussian.laplace import LaplaceResult, fit, unsupported_guide_error
from vidiv.numpyro._fbgvi_model import FlatPotential, check_structure
from vidiv.numpyro._host import check_rng_key
from vidiv.numpyro._traces import nonfinite_sites

__all__ = ["laplace", "LaplaceResult"]

_STRATEGIES = (("init_to_median", init_to_median), ("init_to_uniform", init_to_uniform),
               ("init_to_sample", init_to_sample))  # fmt: skip


def _structure(model: Callable, key: Any, args: tuple, kwargs: dict, who: str) -> list[str]:
    """FBGVI's structure checks (messages naming ``who``); the latent sites in trace order.

    The model is traced at the first host init strategy that can place every latent site (a
    truncated prior has no sampler without tensorflow_probability, an improper one none at all)."""
    last: Exception | None = None
    for _, strategy in _STRATEGIES:
        probe = handlers.substitute(handlers.seed(model, key), substitute_fn=strategy)
        try:
            check_structure(probe, key, args, kwargs)
            tr = handlers.trace(probe).get_trace(*args, **kwargs)
        except ModelStructureError as err:
            raise ModelStructureError(str(err).replace("FBGVI", who)) from None
        except Exception as err:  # noqa: BLE001 - this strategy cannot place a site: next one
            last = err
            continue
        return [n for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]]
    raise last  # the model itself fails (the host's error)


def laplace(
    model: Callable,
    *args: Any,
    rng_key: Any = None,
    num_draws: int = 1000,
    **kwargs: Any,
) -> LaplaceResult:
    r"""The Laplace approximation of ``model``'s posterior in its unconstrained space.

    .. math::

        u^* = \operatorname{argmin}_u V(u), \quad
        V(u) = -\log p(x, T(u)) - \log|\det J_T(u)|, \quad
        \Sigma = (\nabla^2 V(u^*))^{-1}

    ``V`` is minimised by L-BFGS-B from the first finite start among NumPyro's
    ``init_to_median``, ``init_to_uniform`` and ``init_to_sample`` (so improper priors, e.g.
    ``dist.ImproperUniform``, and truncated ones without an ``icdf`` work); the Hessian is taken
    by ``jax.hessian`` at ``u*``. Run it in float64 (``jax_enable_x64``): in float32 a Hessian
    that is not positive definite or badly conditioned warns so.

    Parameters
    ----------
    model
        A NumPyro model with continuous latent sites and no ``numpyro.param``.
    *args, **kwargs
        The model's arguments.
    rng_key
        Key for the init strategies' prior draws and the k-hat draws (``None``: ``PRNGKey(0)``).
    num_draws
        Draws from ``q`` for PSIS k-hat (0: skip, ``khat = nan``).

    Returns
    -------
    LaplaceResult
        ``mean``, ``cov``, ``scale_tril``, ``site_shapes`` (trace order), ``constrained``,
        ``success``, ``khat``; ``init_params(guide, *args)`` starts ``AutoMultivariateNormal`` /
        ``AutoNormal`` at it, ``start(fbgvi, *args)`` an FBGVI driver.

    Raises
    ------
    ModelStructureError
        Discrete or point-mass latents, ``numpyro.param`` sites, no latent site, subsampling.
    NonFiniteError
        No start where the log density is finite, or a non-finite Hessian at the mode.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist, vidiv.numpyro
    >>> jax.config.update("jax_enable_x64", True)
    >>> def model(x):
    ...     z = numpyro.sample("z", dist.Normal(0.0, 2.0))
    ...     numpyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> lap = vidiv.numpyro.laplace(model, jax.numpy.ones(4))
    >>> round(float(lap.mean[0]), 6), round(float(lap.cov[0, 0]), 6)  # 16/17, 4/17
    (0.941176, 0.235294)
    >>> fb = vidiv.numpyro.FBGVI(model)
    >>> state = lap.start(fb, jax.numpy.ones(4))       # fb.set_gaussian(state, lap.mean, lap.cov)
    >>> bool(jax.numpy.allclose(state.mean, lap.mean))
    True
    """
    key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    check_rng_key(key, "laplace")
    return laplace_for("laplace", model, args, kwargs, key, num_draws)


def laplace_for(who: str, model: Callable, args: tuple, kwargs: dict, key: Any,
                num_draws: int = 1000) -> LaplaceResult:
    """:func:`laplace` on behalf of the driver ``who`` (its errors name it)."""
    k_struct, k_init, k_draw = jax.random.split(key, 3)
    order = _structure(model, k_struct, args, kwargs, who)

    flats: dict[str, FlatPotential] = {}

    def start(strategy):
        def make():
            # the host's "Cannot find valid initial parameters" moves on to the next strategy;
            # after the last, no_start names the sites (as naming_invalid_start does)
            flat = FlatPotential(model, k_init, args, kwargs, order, strategy)
            flats["flat"] = flat
            return np.asarray(flat.init_flat, np.float64)
        return make

    starts = [(name, start(s)) for name, s in _STRATEGIES]
    state: dict[str, Any] = {}

    def value_and_grad(u: np.ndarray):
        flat = flats["flat"]
        if state.get("flat") is not flat:  # a new start: its potential (same V, new jit)
            V = flat.potential(args, kwargs)
            state.update(flat=flat, V=V, vg=jax.jit(jax.value_and_grad(V)))
        v, g = state["vg"](jnp.asarray(u, dtype=flat.init_flat.dtype))
        return float(v), np.asarray(g, np.float64)

    def hessian(u: np.ndarray):
        return jax.jit(jax.hessian(state["V"]))(jnp.asarray(u, dtype=flats["flat"].init_flat.dtype))

    def batch(U: np.ndarray):
        return jax.jit(jax.vmap(state["V"]))(jnp.asarray(U, dtype=flats["flat"].init_flat.dtype))

    def no_start(tried: list[str]):
        return no_finite_start_error(who, nonfinite_sites(model, args, kwargs))

    seed = int(jax.random.randint(k_draw, (), 0, 2**31 - 1))
    fit_who = who if who == "laplace" else f"{who} (Laplace start)"
    core = fit(value_and_grad, hessian, batch, starts, who=fit_who,
               low_precision=jnp.asarray(1.0).dtype == jnp.float32,
               backend="numpyro", num_draws=num_draws, seed=seed, on_no_start=no_start)  # fmt: skip
    flat = flats["flat"]
    dtype = flat.init_flat.dtype

    def constrained(u):
        z = flat.postprocess_fn(*args, **kwargs)(flat.unflatten(jnp.asarray(u, dtype=dtype)))
        return {k: np.asarray(z[k]) for k in order}

    return LaplaceResult(
        mean=core.mean, cov=core.cov, scale_tril=core.scale_tril,
        site_shapes={k: tuple(flat.shapes[k]) for k in order},
        constrained=constrained(core.mean), success=core.success, khat=core.khat,
        potential=core.potential, init_strategy=core.init_strategy, init_mean=core.init_mean,
        init_constrained=constrained(core.init_mean), backend="numpyro",
    )  # fmt: skip


# ------------------------------------------------------------------ starting other things at q
def _built(guide: Any, args: tuple, kwargs: dict) -> None:
    if getattr(guide, "prototype_trace", None) is None:
        with handlers.block():
            handlers.seed(guide, jax.random.PRNGKey(0))(*args, **kwargs)


def init_params(lap: LaplaceResult, guide: Any, *args: Any, **kwargs: Any) -> dict:
    """``init_params`` for ``SVI.init``/``SVI.run`` starting ``guide`` at ``lap``."""
    from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

    _built(guide, args, kwargs)
    order = list(guide._init_locs)
    loc, cov = lap.reordered(order)
    if isinstance(guide, AutoMultivariateNormal):
        p = guide.prefix
        return {f"{p}_loc": jnp.asarray(loc), f"{p}_scale_tril": jnp.linalg.cholesky(cov)}
    if isinstance(guide, AutoNormal):
        p, sd = guide.prefix, np.sqrt(np.diag(lap.cov))
        out = {}
        for k, s in lap.site_slices().items():
            shape = jnp.shape(guide._init_locs[k])
            out[f"{k}_{p}_loc"] = jnp.reshape(jnp.asarray(lap.mean[s]), shape)
            out[f"{k}_{p}_scale"] = jnp.reshape(jnp.asarray(sd[s]), shape)
        return out
    raise unsupported_guide_error(guide)


def set_guide(lap: LaplaceResult, guide: Any, *args: Any, **kwargs: Any) -> None:
    from vidiv.errors import InvalidArgumentError

    raise InvalidArgumentError(
        "NumPyro guides hold no parameters of their own: pass "
        "init_params=lap.init_params(guide, *args) to SVI.init or SVI.run instead."
    )


def start(lap: LaplaceResult, fbgvi: Any, *args: Any, state: Any = None, **kwargs: Any) -> Any:
    """``fbgvi.set_gaussian(state, mean, cov)`` in the driver's site order; returns the state."""
    if state is None:
        state = fbgvi.init(jax.random.PRNGKey(0), *args, **kwargs)
    return fbgvi.set_gaussian(state, *lap.reordered(list(fbgvi.latent_shapes)))
