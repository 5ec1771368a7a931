r"""The one trace walk shared by the NumPyro objectives.

:func:`particle_terms` runs the guide and the model (replayed on the guide) once per particle,
vectorised over particle keys with ``vmap`` (or the objective's ``vectorize_particles_fn``), and
returns per-particle log densities of shape ``(S, *indep)``:

* ``indep`` are the plate dims common to **all** sample sites of model and guide (observed sites
  included), as in NumPyro's ``RenyiELBO``: each objective is applied per element of that plate and
  the results are summed; every other dim is summed into the particle's log density. With a
  subsampled common plate the per-element terms are un-scaled (divided by ``size/subsample_size``)
  and the objective's total is multiplied by that ``scale`` afterwards, so the minibatch loss is an
  unbiased estimate of the full-data loss. Subsampling in a plate *not* shared by every site
  raises :class:`~vidiv.errors.ModelStructureError`.
* ``log_q_score``: log q of the guide sites that are not reparameterised (discrete ones), with
  the sampled values detached; the objectives feed it to the score-function terms.

Example
-------
>>> terms = particle_terms(key, params, model, guide, (), {}, num_particles=8)  # doctest: +SKIP
>>> terms.log_p.shape, terms.log_q.shape, terms.scale                          # doctest: +SKIP
((8,), (8,), 1.0)
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax import random
from numpyro.handlers import replay, seed, substitute, trace
from numpyro.primitives import Messenger

from ..errors import (
    ModelStructureError,
    check_observed,
    guide_factor_error,
    no_finite_start_error,
    no_inverse_error,
)
from ._host import host_checks, map_particles, warn_mutable_state

__all__ = [
    "delta_of",
    "detach_samples",
    "is_point_mass",
    "particle_terms",
    "ParticleTerms",
    "reduce_mutable_state",
]


class detach_samples(Messenger):
    """Stop the gradient of every latent sample's *value* (``lax.stop_gradient``).

    Use it outside ``trace`` so the trace records the detached value: the model replayed on that
    trace then gives ``log p(x, sg z)`` (gradient only through model parameters) and the guide's
    ``log q(sg z)`` gets its gradient only through the guide parameters. Only the value is
    detached: a ``Delta(v, log_density=...)`` site keeps the gradient of its ``log_density``
    (the path-space density of a diffusion guide, for example). ``only_nonreparam=True`` detaches
    only sites whose distribution has no reparameterised sampler (what NumPyro's importance traces
    do).

    Point masses are not detached (:func:`is_point_mass`): a ``Delta`` guide site (``AutoDelta``,
    the ``AutoDelta`` part of an ``AutoGuideList``, a hand-written ``dist.Delta(param)``,
    ``AutoLaplaceApproximation``'s latent) is a point *estimate*; its value keeps its gradient, so
    the model's log density carries it and it follows the same gradient as a model parameter (MAP
    / the IS log-likelihood). An auxiliary ``Delta`` that carries a density (``DiffusionGuide``'s
    trajectory end, ``log_density`` computed from the parameters) is detached like any sample.

    The sampler's intermediates (e.g. the base draw of a flow) are kept, detached, under the key
    ``"vidiv_intermediates"`` and removed from ``"intermediates"`` (they would let the gradient
    through); :func:`_site_log_prob` uses them to evaluate a flow that has no inverse.

    >>> with detach_samples():                                    # doctest: +SKIP
    ...     guide_trace = trace(guide).get_trace(*args)
    """

    def __init__(self, fn: Callable | None = None, only_nonreparam: bool = False) -> None:
        self.only_nonreparam = only_nonreparam
        super().__init__(fn)

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        if self.only_nonreparam and msg["fn"].has_rsample:
            return
        if is_point_mass(msg):
            return
        msg["value"] = jax.lax.stop_gradient(msg["value"])
        # cached intermediates (e.g. of a TransformedDistribution) would let the gradient through
        if msg["intermediates"]:
            msg["vidiv_intermediates"] = jax.lax.stop_gradient(msg["intermediates"])
        msg["intermediates"] = []


def delta_of(fn) -> dist.Delta | None:
    """The ``Delta`` under ``fn``'s wrappers (``Independent``, ``Expanded``, ``Masked``), or
    ``None``."""
    while hasattr(fn, "base_dist") and not isinstance(fn, dist.Delta):
        fn = fn.base_dist
    return fn if isinstance(fn, dist.Delta) else None


def is_point_mass(site: dict) -> bool:
    """``True`` for a latent site whose distribution is a ``Delta`` (possibly wrapped in
    ``Independent`` / ``Expanded`` / ``Masked``) that is a point estimate: a non-auxiliary one, or
    an auxiliary one without a density (``log_density`` left at its constant default 0, as in
    ``AutoLaplaceApproximation``'s ``_auto_latent``). An auxiliary ``Delta`` whose
    ``log_density`` is an array computed in the guide (``DiffusionGuide``) carries a density and is
    not a point mass. A non-auxiliary ``Delta`` whose value is a function of other (detached)
    samples only (``AutoContinuous``'s per-site ``Delta`` sites) has no parameter gradient, so
    keeping it is harmless."""
    delta = delta_of(site["fn"])
    if delta is None:
        return False
    if not site["infer"].get("is_auxiliary"):
        return True
    ld = delta.log_density
    return isinstance(ld, (int, float, np.ndarray, np.generic)) and not np.any(ld)


class ParticleTerms(NamedTuple):
    """Per-particle log densities, shape ``(S, *indep)`` (see the module docstring)."""

    log_p: jax.Array
    log_q: jax.Array
    log_q_score: jax.Array | None  # None when every guide site is reparameterised
    scale: float  # size / subsample_size of the common plates (1.0 without subsampling)
    mutable_state: dict | None
    log_q_stopped: jax.Array | None = None  # DReG: log q_{sg(phi)}(z(phi))
    # DReG: log p_theta(x, sg z) - log q_point (None: no model params and no point masses)
    log_p_model: jax.Array | None = None
    score_sites: tuple = ()  # names of the non-reparameterised guide sites
    has_latents: bool = True  # False: no latent sample site; every objective is log p(x | theta)
    # detach=True: log q of the point-mass guide sites (with its gradient; 0 without any). A
    # point estimate's log_density (AutoLaplaceApproximation's -log|J| of the unconstraining
    # transform) belongs to the MAP objective log p - log q, not to the guide's score terms
    log_q_point: jax.Array | None = None


def _no_inverse(site: dict, objective: str, why: str) -> ModelStructureError:
    return no_inverse_error(objective, site["name"], type(site["fn"]).__name__, why)


def _implicit_inverse(transform, x0: jax.Array, y: jax.Array) -> jax.Array | None:
    r"""``x = T^{-1}(y)`` for a transform without an inverse, from the sampler's own
    (detached) pre-image ``x0`` (``T(x0) = y`` at the draw): the value is ``x0`` and the
    derivative is the implicit one, :math:`\mathrm dx = J^{-1}(\mathrm dy -
    \partial_\phi T(x_0)\,\mathrm d\phi)` with :math:`J = \partial T/\partial x` at ``x0``
    (implicit function theorem), carried by ``d - sg(d)``, :math:`d = -J^{-1}(T(x_0) - y)`.
    ``None`` when the transform acts on more than vectors (event dim > 1)."""
    sg = jax.lax.stop_gradient
    x0 = sg(x0)
    e = transform.domain.event_dim
    r = transform(x0) - y
    if e == 0:  # elementwise: J is diagonal
        diag = jax.jvp(transform, (x0,), (jnp.ones_like(x0),))[1]
        d = -r / sg(diag)
    elif e == 1:
        flat = jnp.reshape(x0, (-1, x0.shape[-1]))
        jac = sg(jax.vmap(jax.jacfwd(transform))(flat))
        d = -jnp.linalg.solve(jac, jnp.reshape(r, flat.shape)[..., None])[..., 0]
        d = jnp.reshape(d, x0.shape)
    else:
        return None
    return x0 + (d - sg(d))


def _flow_log_prob(site: dict, fn, value, hints, objective: str) -> jax.Array:
    """``fn.log_prob(value)`` for a ``TransformedDistribution`` at a detached ``value``: NumPyro's
    own loop, with each transform that has no inverse inverted by :func:`_implicit_inverse` at the
    sampler's intermediate pre-image (``hints``), so ``log q_phi(z)`` at the fixed ``z`` keeps its
    exact gradient in the guide parameters."""
    from numpyro.distributions.util import sum_rightmost

    if len(hints) != len(fn.transforms):
        raise _no_inverse(site, objective, "the sampler's intermediates do not match its flow")
    event_dim = len(fn.event_shape)
    log_prob = 0.0
    y = value
    for i, transform in enumerate(reversed(fn.transforms)):
        try:
            x = transform.inv(y)
        except NotImplementedError as e:
            x = _implicit_inverse(transform, hints[-i - 1][0], y)
            if x is None:
                raise _no_inverse(site, objective, str(e)) from e
        t_log_det = transform.log_abs_det_jacobian(x, y, None)
        batch_ndim = event_dim - transform.codomain.event_dim
        log_prob = log_prob - sum_rightmost(t_log_det, batch_ndim)
        event_dim = transform.domain.event_dim + batch_ndim
        y = x
    return log_prob + sum_rightmost(
        fn.base_dist.log_prob(y), event_dim - len(fn.base_dist.event_shape)
    )


def _site_log_prob(site: dict, objective: str = "objective", hints=None) -> jax.Array:
    """Scaled log prob of a sample site. ``hints``: the sampler's detached intermediates for a
    site whose value is detached (default: the site's own ``"vidiv_intermediates"``), used only
    when the distribution needs an inverse its transform does not have."""
    fn, value = site["fn"], site["value"]
    try:
        lp = fn.log_prob(value, site["intermediates"]) if site["intermediates"] else fn.log_prob(
            value
        )
    except NotImplementedError as e:
        if "inverse" not in str(e):
            raise
        hints = site.get("vidiv_intermediates") if hints is None else hints
        if not hints or not isinstance(fn, dist.TransformedDistribution):
            raise _no_inverse(site, objective, str(e)) from e
        lp = _flow_log_prob(site, fn, value, hints, objective)
    scale = site["scale"]
    if scale is not None:
        lp = scale * lp
    return lp


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _validate(model_trace: dict, guide_trace: dict, objective: str) -> None:
    host_checks(model_trace, guide_trace, objective)
    for role, tr in (("model", model_trace), ("guide", guide_trace)):
        for name, site in tr.items():
            if site["type"] == "sample" and site["infer"].get("enumerate"):
                raise ModelStructureError(
                    f"{objective}: {role} site '{name}' is marked for enumeration "
                    f"(infer={{'enumerate': {site['infer']['enumerate']!r}}}), which this "
                    "objective does not support. Marginalise the discrete variable out by hand, "
                    "sample it in the guide instead (it then gets score-function terms), or use "
                    "numpyro.infer.TraceEnum_ELBO."
                )
    latents = [n for n, s in model_trace.items() if s["type"] == "sample" and not s["is_observed"]]
    for name in latents:
        if name not in guide_trace:
            raise ModelStructureError(
                f"{objective}: model latent site '{name}' is not sampled by the guide; every "
                "latent site of the model needs a guide site of the same name."
            )
    check_observed_sites(model_trace, objective)


OBS_MASK_HINT = "pass obs_mask=jnp.isfinite(data) to numpyro.sample so they are imputed"


def _warn_nonfinite_observed(who: str, site: str, count) -> None:
    n = int(count)
    if n:
        warnings.warn(
            f"{who}: observed site '{site}' contains {n} NaN/inf value(s) (seen under jax.jit, "
            "where vidiv cannot raise): this step's loss and gradients are NaN, and "
            "SVI.update would write NaN parameters. Drop, impute or mask the data "
            f"({OBS_MASK_HINT}); SVI.stable_update / SVI.run(..., stable_update=True) and "
            "vidiv.numpyro.fit skip such steps.",
            RuntimeWarning,
            stacklevel=2,
        )


def check_observed_sites(model_trace: dict, who: str) -> None:
    """:func:`vidiv.errors.check_observed` on every concrete observed site of a NumPyro trace
    (a masked distribution, e.g. ``obs_mask``, may hold NaN in the masked entries). A traced
    value (data passed through ``jax.jit``) cannot raise: a ``RuntimeWarning`` naming the site
    is given from the device when it holds NaN/inf (a ``jax.debug.callback`` that runs only
    then)."""
    for name, site in model_trace.items():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        if site["fn"].__class__.__name__ == "MaskedDistribution":
            continue
        value = site["value"]
        if _is_concrete(value):
            check_observed(who, name, value, OBS_MASK_HINT)
        elif jnp.issubdtype(jnp.result_type(value), jnp.inexact):
            bad = jnp.sum(~jnp.isfinite(value))
            warn = functools.partial(_warn_nonfinite_observed, who, name)
            jax.lax.cond(bad > 0, lambda n, warn=warn: jax.debug.callback(warn, n),
                         lambda n: None, bad)  # fmt: skip


def _plate_sizes(model_trace: dict, guide_trace: dict, name: str) -> int:
    for tr in (model_trace, guide_trace):
        if name in tr and tr[name]["type"] == "plate":
            return int(tr[name]["args"][0])
    raise ModelStructureError(f"plate '{name}' is used by a site but not recorded in the trace.")


def _common_plates(model_trace: dict, guide_trace: dict, objective: str):
    site_frames = [
        set(site["cond_indep_stack"])
        for tr in (model_trace, guide_trace)
        for site in tr.values()
        if site["type"] == "sample"
    ]
    common = set.intersection(*site_frames) if site_frames else set()
    for frame in set().union(*site_frames) - common:
        size = _plate_sizes(model_trace, guide_trace, frame.name)
        if size > frame.size:
            raise ModelStructureError(
                f"{objective}: plate '{frame.name}' is subsampled ({frame.size} of {size}) but "
                "is not shared by every sample site, so the bound cannot be applied per data "
                "point. Subsample only in a plate that encloses the whole model (every latent "
                "and observed site), or do not subsample."
            )
    scale = 1.0
    for frame in common:
        scale *= _plate_sizes(model_trace, guide_trace, frame.name) / frame.size
    return {frame.dim for frame in common}, scale


def _sum_to_indep(log_prob: jax.Array, indep_dims: set) -> jax.Array:
    axes = tuple(d for d in range(log_prob.ndim) if d - log_prob.ndim not in indep_dims)
    return jnp.sum(log_prob, axis=axes)


def _total(tr: dict, indep_dims: set, select: Callable[[dict], bool] = lambda s: True,
           objective: str = "objective", hints: dict | None = None):
    total = jnp.zeros(())
    for name, site in tr.items():
        if site["type"] == "sample" and select(site):
            lp = _site_log_prob(site, objective, (hints or {}).get(name))
            total = total + _sum_to_indep(lp, indep_dims)
    return total


def _mutable(tr: dict) -> dict:
    return {n: s["value"] for n, s in tr.items() if s["type"] == "mutable"}


def particle_terms(
    rng_key: jax.Array,
    param_map: dict,
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_particles: int,
    *,
    detach: bool = False,
    dreg: bool = False,
    vectorize: Callable | None = None,
    objective: str = "objective",
) -> ParticleTerms:
    """Trace ``num_particles`` guide/model pairs and return :class:`ParticleTerms`.

    Keys are split like NumPyro's ``RenyiELBO`` (``plate_key, key = split(rng_key)``; particle keys
    ``split(key, S)``; per particle ``model_seed, guide_seed = split(particle_key)``), so the same
    ``rng_key`` gives the same draws as ``RenyiELBO`` and as ``Trace_ELBO`` called with ``key``.
    Subsample indices come from ``plate_key`` and are shared by all particles.

    ``detach=True`` detaches every latent value (:class:`detach_samples`); otherwise only the
    non-reparameterised ones. ``dreg=True`` also returns ``log_q_stopped`` (guide replayed with
    stop-gradient parameters at the reparameterised samples) and ``log_p_model`` (model at the
    detached samples, only if the model has parameters).
    """
    plate_key, rng_key = random.split(rng_key)
    hide = ["sample", "prng_key", "control_flow"]
    model = seed(model, plate_key, hide_types=hide)
    guide = seed(guide, plate_key, hide_types=hide)
    info: dict[str, Any] = {}

    def single(key: jax.Array) -> dict:
        params = jax.tree.map(lambda x: x, param_map)  # fresh containers for mutable dicts
        model_seed, guide_seed = random.split(key)
        seeded_guide = seed(guide, guide_seed)
        with ExitStack() as stack:
            stack.enter_context(detach_samples(only_nonreparam=not detach))
            guide_trace = trace(substitute(seeded_guide, data=params)).get_trace(*args, **kwargs)
        params.update(_mutable(guide_trace))
        if detach or dreg:
            for name, site in guide_trace.items():
                if site["type"] == "sample" and site["is_observed"]:
                    name_ = "AlphaDivergence(gradient='dreg')" if dreg else objective
                    raise guide_factor_error(name_, name)
        seeded_model = seed(model, model_seed)
        model_trace = trace(substitute(replay(seeded_model, guide_trace), data=params)).get_trace(
            *args, **kwargs
        )
        _validate(model_trace, guide_trace, objective)
        indep_dims, scale = _common_plates(model_trace, guide_trace, objective)
        info["scale"] = scale

        def nonreparam(s: dict) -> bool:
            return not s["is_observed"] and not s["fn"].has_rsample

        info["has_latents"] = any(
            s["type"] == "sample" and not s["is_observed"] for s in model_trace.values()
        )
        log_p = _total(model_trace, indep_dims, objective=objective) / scale
        log_q = _total(guide_trace, indep_dims, objective=objective) / scale
        # a trace without sample sites in the common plates (an empty guide) gives a scalar
        shape = jnp.broadcast_shapes(jnp.shape(log_p), jnp.shape(log_q))
        out = {"log_p": jnp.broadcast_to(log_p, shape), "log_q": jnp.broadcast_to(log_q, shape)}
        sites = [s for s in guide_trace.values() if s["type"] == "sample"]
        info["score_sites"] = tuple(s["name"] for s in sites if nonreparam(s))
        if info["score_sites"] and not detach:
            log_q_score = _total(guide_trace, indep_dims, nonreparam, objective) / scale
            out["log_q_score"] = jnp.broadcast_to(log_q_score, shape)
        if detach:
            log_q_point = _total(guide_trace, indep_dims, is_point_mass, objective) / scale
            out["log_q_point"] = jnp.broadcast_to(log_q_point, shape)
        if dreg:
            out.update(
                _dreg_terms(seeded_guide, seeded_model, guide_trace, params, args, kwargs,
                            indep_dims, scale, info, objective, shape)
            )
        mutable = {**_mutable(guide_trace), **_mutable(model_trace)}
        warn_mutable_state(set(mutable), num_particles, objective)
        out["mutable"] = mutable or None
        return out

    vmap_fn = vectorize if vectorize is not None else (lambda f, keys: jax.vmap(f)(keys))
    out = map_particles(vmap_fn, single, random.split(rng_key, num_particles), objective)
    return ParticleTerms(
        log_p=out["log_p"],
        log_q=out["log_q"],
        log_q_score=out.get("log_q_score"),
        scale=info["scale"],
        mutable_state=out["mutable"],
        log_q_stopped=out.get("log_q_stopped"),
        log_p_model=out.get("log_p_model"),
        score_sites=info["score_sites"],
        has_latents=info["has_latents"],
        log_q_point=out.get("log_q_point"),
    )


def _dreg_terms(seeded_guide, seeded_model, guide_trace, params, args, kwargs, indep_dims, scale,
                info, objective, shape) -> dict:
    stopped = jax.lax.stop_gradient(params)
    replayed = trace(substitute(replay(seeded_guide, guide_trace), data=stopped)).get_trace(
        *args, **kwargs
    )
    # a flow without an inverse is evaluated at the draw's own (detached) pre-images
    hints = {
        name: jax.lax.stop_gradient(site["intermediates"])
        for name, site in guide_trace.items()
        if site["type"] == "sample" and site["intermediates"]
    }
    log_q_stopped = _total(replayed, indep_dims, objective=objective, hints=hints) / scale
    out = {"log_q_stopped": jnp.broadcast_to(log_q_stopped, shape)}
    # the model at the detached samples; point masses are not samples: the guide recomputes them
    # (not replayed), so one that is a parameter keeps its gradient while a Delta that is a
    # function of a sample (AutoContinuous's per-site Delta) sees the detached sample. With model
    # parameters they follow the IS weights (sum_s w_s grad log w_s, log q_point out of log w)
    points = [n for n, s in guide_trace.items() if s["type"] == "sample" and is_point_mass(s)]
    samples = {n: s for n, s in guide_trace.items() if n not in points}
    with detach_samples():
        guide_sg = trace(substitute(replay(seeded_guide, samples), data=params)).get_trace(
            *args, **kwargs
        )
    model_sg = trace(substitute(replay(seeded_model, guide_sg), data=params)).get_trace(
        *args, **kwargs
    )
    info["model_has_params"] = any(s["type"] == "param" for s in model_sg.values())
    if info["model_has_params"] or points:
        log_q_point = _total(guide_sg, indep_dims, is_point_mass, objective) / scale
        log_p_model = _total(model_sg, indep_dims) / scale - log_q_point
        out["log_p_model"] = jnp.broadcast_to(log_p_model, shape)
    return out


def reduce_mutable_state(state: dict | None) -> dict | None:
    """Collapse per-particle mutable state (leading axis S) to one value: the mean over particles
    for floating-point leaves (e.g. batch-norm running statistics), the first particle's value
    otherwise."""
    if state is None:
        return None

    def reduce(x):
        x = jnp.asarray(x)
        return jnp.mean(x, axis=0) if jnp.issubdtype(x.dtype, jnp.inexact) else x[0]

    return jax.tree.map(reduce, state)


def nonfinite_sites(model: Callable, args: tuple, kwargs: dict, rng_key: Any = None) -> list[str]:
    """Sites whose log density (summed, times its scale) is -inf or NaN at one draw from the
    prior of ``model`` (a fixed key unless ``rng_key``): what to name when the host's
    initialisation finds no valid start."""
    from numpyro import handlers

    key = random.PRNGKey(0) if rng_key is None else rng_key
    try:
        with handlers.block():
            tr = trace(seed(model, key)).get_trace(*args, **kwargs)
    except Exception:  # noqa: BLE001 - the model itself fails: the caller's error says so
        return []
    bad = []
    for name, site in tr.items():
        if site["type"] != "sample":
            continue
        try:
            lp = jnp.sum(site["fn"].log_prob(site["value"]))
        except Exception:  # noqa: BLE001 - a value outside a validated support
            bad.append(name)
            continue
        if not bool(jnp.isfinite(lp)):
            bad.append(name)
    return bad


@contextlib.contextmanager
def naming_invalid_start(who: str, model: Callable, args: tuple, kwargs: dict):
    """Turn the host's "Cannot find valid initial parameters" (raised by autoguides and
    ``initialize_model`` when the log density is not finite at any start) into a
    :class:`~vidiv.errors.NonFiniteError` naming the sites that are -inf/NaN at a prior draw."""
    try:
        yield
    except RuntimeError as err:
        if "valid initial parameters" not in str(err):
            raise
        raise no_finite_start_error(who, nonfinite_sites(model, args, kwargs)) from err
