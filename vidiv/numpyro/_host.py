"""NumPyro host conventions shared by the objectives: the keywords NumPyro's ELBOs accept, the
``vectorize_particles`` callable, the host's model--guide checks and its mutable-state warning.

NumPyro's ``Trace_ELBO`` / ``TraceMeanField_ELBO`` / ``TraceGraph_ELBO`` / ``RenyiELBO`` accept
``num_particles``, ``vectorize_particles`` (``True``: ``vmap``; ``False``: ``jax.lax.map``; a
callable ``fn(single_particle_fn, keys)``), ``sum_sites`` and ``multi_sample_guide``. vidiv's
objectives accept the same keywords; ``sum_sites=False`` (per-site losses) and
``multi_sample_guide=True`` (one guide call proposing every particle) are refused by name: an
importance-weighted bound is not a sum over sites, and vidiv draws its particles itself.
``vectorize_particles=jax.pmap`` (the example in NumPyro's docstring) splits the particles over the
local devices; a callable that cannot be called as ``fn(single_particle_fn, keys)`` is refused
when the objective is built. (NumPyro's ELBOs never call it at their default
``num_particles=1``; vidiv's objectives always use several particles.)
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from numpyro.util import _validate_model, check_model_guide_match

from ..errors import InvalidArgumentError, ModelStructureError

__all__ = [
    "check_host_keywords",
    "host_checks",
    "map_particles",
    "warn_mutable_state",
    "warn_zero_low_rank_factor",
]


def check_host_keywords(
    objective: str, sum_sites: bool, multi_sample_guide: bool, vectorize_particles=True
) -> None:
    """Accept NumPyro's ``sum_sites`` / ``multi_sample_guide`` / ``vectorize_particles`` keywords
    at their supported values; raise :class:`InvalidArgumentError` naming the keyword otherwise.

    ``vectorize_particles`` must be a bool or a callable that can be called as
    ``fn(single_particle_fn, keys)`` (NumPyro's convention); a callable whose signature cannot
    take two positional arguments is refused here, not at the first step."""
    if sum_sites is not True:
        raise InvalidArgumentError(
            f"{objective}: sum_sites={sum_sites!r} is not supported. NumPyro's Trace_ELBO can "
            "return per-site losses because the ELBO is a sum over sites; this objective is a "
            "nonlinear function of the per-particle totals (log p - log q), so it has no per-site "
            "decomposition. Use sum_sites=True (the default)."
        )
    if multi_sample_guide is not False:
        raise InvalidArgumentError(
            f"{objective}: multi_sample_guide={multi_sample_guide!r} is not supported: the "
            "objective draws its own particles, one guide call per particle. Write the guide for "
            "a single draw and set num_particles instead (multi_sample_guide=False, the default)."
        )
    if isinstance(vectorize_particles, bool):
        return
    if not callable(vectorize_particles):
        raise InvalidArgumentError(
            f"{objective}: vectorize_particles={vectorize_particles!r} must be True (vmap), "
            "False (jax.lax.map) or a callable fn(single_particle_fn, keys)."
        )
    if vectorize_particles is jax.pmap:
        return  # split over the local devices (map_particles)
    try:
        inspect.signature(vectorize_particles).bind(None, None)
    except TypeError as e:
        raise InvalidArgumentError(
            f"{objective}: vectorize_particles={vectorize_particles!r} cannot be called as "
            f"fn(single_particle_fn, keys) ({e}). NumPyro's ELBOs call it that way when "
            "num_particles > 1 (it must return the stacked outputs, like jax.lax.map); pass e.g. "
            "vectorize_particles=lambda f, keys: jax.vmap(f)(keys), True (vmap) or False "
            "(lax.map)."
        ) from e
    except ValueError:  # no signature (a builtin): called as given
        return


def _pmap_particles(fn: Callable, keys: jax.Array):
    """``jax.pmap`` over the local devices, ``vmap`` within each: the particles are split into
    ``gcd(S, devices)`` equal chunks (one device: a plain ``vmap`` under ``pmap``)."""
    S = keys.shape[0]
    n = math.gcd(S, jax.local_device_count())
    out = jax.pmap(jax.vmap(fn))(jnp.reshape(keys, (n, S // n) + keys.shape[1:]))
    return jax.tree.map(lambda x: jnp.reshape(x, (S,) + x.shape[2:]), out)


def map_particles(vectorize: Callable, fn: Callable, keys: jax.Array, objective: str):
    """Apply the objective's ``vectorize_particles_fn`` like NumPyro's ELBOs do
    (``vectorize(fn, keys)``). ``jax.pmap`` itself (NumPyro's own example; called that way it would
    read ``keys`` as its ``axis_name``) splits the particles over the local devices
    (:func:`_pmap_particles`); a callable that returns a function instead of the stacked outputs
    is refused by name."""
    if vectorize is jax.pmap:
        return _pmap_particles(fn, keys)
    out = vectorize(fn, keys)
    if callable(out) and not isinstance(out, dict):
        raise InvalidArgumentError(
            f"{objective}: vectorize_particles={vectorize!r} returned a function, not the stacked "
            "particle outputs: it is called as fn(single_particle_fn, keys), like jax.lax.map. "
            "Wrap a transformation: vectorize_particles=lambda f, keys: jax.vmap(f)(keys), or "
            "use True (vmap) or False (lax.map)."
        )
    return out


def host_checks(model_trace: dict, guide_trace: dict, objective: str) -> None:
    """NumPyro's own model--guide checks, as its ``Trace_ELBO`` runs them
    (``check_model_guide_match`` and ``_validate_model(plate_warning="loose")``): the host's
    warnings are given unchanged, its errors are re-raised as :class:`ModelStructureError`
    with the host's message (which names the site) and what to do."""
    try:
        check_model_guide_match(model_trace, guide_trace)
    except ValueError as e:
        raise ModelStructureError(
            f"{objective}: {e}. The guide must sample each latent site with the model's shape "
            "(batch and event dims, broadcasting is not applied); fix the guide's distribution "
            "or its .to_event()/.expand() for that site."
        ) from e
    _validate_model(model_trace, plate_warning="loose")


def warn_mutable_state(names, num_particles: int, objective: str) -> None:
    """The host's warning when mutable state meets ``num_particles > 1`` (NumPyro's ELBOs then
    ignore the state; vidiv reduces it over particles instead)."""
    if names and num_particles > 1:
        warnings.warn(
            f"{objective}: mutable state at {sorted(names)} with num_particles={num_particles}: "
            "NumPyro's ELBOs ignore mutable state when num_particles > 1; vidiv returns its mean "
            "over particles (floating-point leaves; the first particle's value otherwise). For "
            "state that must not be averaged (e.g. a counter), update it outside the loss.",
            UserWarning,
            stacklevel=3,
        )


def _low_rank_factors(guide) -> list[str]:
    """Names of the ``cov_factor`` parameters of NumPyro's low-rank autoguides in ``guide``
    (the parts of an ``AutoGuideList`` included)."""
    from numpyro.infer import autoguide

    if isinstance(guide, autoguide.AutoGuideList):
        return [n for part in guide._guides for n in _low_rank_factors(part)]
    low_rank = (autoguide.AutoLowRankMultivariateNormal,
                autoguide.AutoBatchedLowRankMultivariateNormal)  # fmt: skip
    return [f"{guide.prefix}_cov_factor"] if isinstance(guide, low_rank) else []


_ZERO_FACTOR_WARNED: set = set()


def _warn_zero_factor(objective: str, name: str, key: int, zero) -> None:
    if not bool(zero) or (objective, name, key) in _ZERO_FACTOR_WARNED:
        return
    _ZERO_FACTOR_WARNED.add((objective, name, key))
    warnings.warn(
        f"{objective}: the guide's low-rank factor '{name}' is exactly 0 (where NumPyro's "
        "AutoLowRankMultivariateNormal starts it). At 0 the gradient of log q in the factor "
        "vanishes for every draw, so this objective's score-function gradient leaves the factor "
        "at 0 for good and only the diagonal is fitted (no correlations). Start it away from 0: "
        f"svi.run(key, steps, ..., init_params={{'{name}': 0.1 * jax.random.normal(key, "
        "shape)}) with the factor's shape (latent dim x rank), or use AlphaDivergence, whose "
        "reparameterised gradient leaves 0 by itself.",
        RuntimeWarning,
        stacklevel=2,
    )


def warn_zero_low_rank_factor(guide, param_map: dict, objective: str) -> None:
    """Warn (once per guide) when a low-rank autoguide's ``cov_factor`` is exactly 0 at a step
    of a score-function objective (``ChiSquaredVIS``, ``LogVariance``): a stationary point of
    log q in the factor that such gradients never leave. The check runs on the device values
    (``jax.debug.callback``), so it works under ``jit`` and warns only when the factor is 0."""
    import functools

    for name in _low_rank_factors(guide):
        value = param_map.get(name)
        if value is not None:
            callback = functools.partial(_warn_zero_factor, objective, name, id(guide))
            jax.debug.callback(callback, jnp.all(value == 0))


def check_rng_key(rng_key: Any, who: str) -> None:
    """Refuse anything but a JAX PRNG key (``jax.random.PRNGKey(0)`` or ``jax.random.key(0)``)
    with a message that shows how to make one."""
    ok = False
    try:
        arr = jnp.asarray(rng_key) if rng_key is not None else None
        if arr is not None:
            typed = jnp.issubdtype(arr.dtype, jax.dtypes.prng_key)
            ok = typed or (arr.dtype == jnp.uint32 and arr.shape[-1:] == (2,))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidArgumentError(
            f"{who} needs a JAX random key as rng_key, got {type(rng_key).__name__}"
            f"{'' if rng_key is None else f' {rng_key!r}'[:80]}; pass e.g. "
            "jax.random.PRNGKey(0)."
        )
