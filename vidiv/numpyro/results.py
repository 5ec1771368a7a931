"""NumPyro results as ArviZ DataTrees.

``to_datatree(model, guide, params, *args, rng_key=..., num_samples=1000, ...)`` draws
``num_samples`` values from the fitted guide with ``jax.vmap`` over seeded draws, evaluates
``log q(z)`` (``numpyro.infer.util.log_density`` of the guide) and ``log p(x, z)`` (of the model
with the draws substituted), the per-observation log likelihood of every observed site and the
latent values (dims named after the plates), and calls :func:`vidiv.diagnostics.to_datatree`.
Works for any guide (AutoNormal, AutoMultivariateNormal, custom guides, FB-GVI's guide).

Example::

    res = svi.run(random.PRNGKey(0), 2000, x, y=y)
    dt = vidiv.numpyro.to_datatree(model, guide, res.params, x, y=y,
                                   rng_key=random.PRNGKey(1), losses=res.losses)
    print(vidiv.diagnostics.diagnose(dt))
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.infer.util import log_density

from ..errors import InvalidArgumentError, ModelStructureError
from ._traces import _is_concrete, check_observed_sites

__all__ = ["to_datatree", "make_log_weights_fn"]


def _is_observed(site) -> bool:
    return site["type"] == "sample" and site["is_observed"]


def _check_no_subsampling(trace) -> None:
    for name, site in trace.items():
        size, sub = site["args"][:2] if site["type"] == "plate" else (0, None)
        if sub is not None and sub != size:
            raise ModelStructureError(
                f"plate {name!r} is subsampled to {site['args'][1]} of {site['args'][0]}: "
                "to_datatree evaluates the whole data set. Call it with the full data "
                "(subsample_size=None)."
            )


def _one_draw(model, guide, params, args, kwargs, key):
    gk, mk = jax.random.split(key)
    log_q, guide_trace = log_density(handlers.seed(guide, gk), args, kwargs, params)
    latents = {
        name: site["value"]
        for name, site in guide_trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    log_p, model_trace = log_density(
        handlers.seed(model, mk), args, kwargs, {**params, **latents}
    )
    return log_p, log_q, model_trace


def make_log_weights_fn(model, guide, args=(), kwargs=None, num_samples: int = 1000):
    """A jitted ``f(params, rng_key) -> (log_p, log_q)`` (each of shape ``(num_samples,)``),
    compiled once per parameter shapes; used by the training monitor."""
    kwargs = kwargs or {}

    def f(params, rng_key):
        def one(key):
            lp, lq, _ = _one_draw(model, guide, params, args, kwargs, key)
            return lp, lq

        return jax.vmap(one)(jax.random.split(rng_key, num_samples))

    return jax.jit(f)


def _site_dims(site, name: str) -> list[str]:
    shape = tuple(jnp.shape(site["value"]))
    if site["type"] == "sample":
        batch_ndim = len(shape) - site["fn"].event_dim
    else:  # deterministic: name axes after the enclosing plates whose sizes match
        batch_ndim = len(shape)
    frames = {f.dim: f for f in site.get("cond_indep_stack", [])}
    out = []
    for i in range(len(shape)):
        f = frames.get(i - batch_ndim) if i < batch_ndim else None
        out.append(f.name if f is not None and f.size == shape[i] else f"{name}_dim_{i}")
    return out


def _prototype(model, guide, params, args, kwargs, rng_key):
    """The model trace of one draw, obtained by abstract evaluation (no eager op-by-op run):
    site names, shapes, plates and the (concrete) observed values."""
    holder = {}

    def one(key):
        lp, _, trace = _one_draw(model, guide, params, args, kwargs, key)
        holder["trace"] = trace
        return lp

    jax.eval_shape(one, rng_key)
    trace = holder["trace"]
    try:
        for site in trace.values():
            if _is_observed(site):
                np.asarray(site["value"])
    except jax.errors.TracerArrayConversionError:  # observed values computed from draws
        trace = _one_draw(model, guide, params, args, kwargs, rng_key)[2]
    return trace


def _base_dist(fn):
    while hasattr(fn, "base_dist"):  # Independent, Masked, Expanded wrappers
        fn = fn.base_dist
    return fn


def _abstract_trace(fn, params, args, kwargs, rng_key) -> dict:
    """The trace of ``fn`` (a model or guide, with ``params`` substituted) by abstract
    evaluation: shapes and sites, and concrete values only for what does not depend on the key
    (e.g. observed data)."""
    holder = {}

    def one(key):
        _, trace = log_density(handlers.seed(fn, key), args, kwargs or {}, params)
        holder["trace"] = trace
        return 0.0

    jax.eval_shape(one, rng_key)
    return holder["trace"]


def check_data(model, params, args, kwargs, rng_key) -> None:
    """Refuse NaN / +-inf observed data by site before any guide runs on it (an autoguide's
    initialisation would fail with the host's "Cannot find valid initial parameters")."""
    try:
        trace = _abstract_trace(model, params, args, kwargs, rng_key)
    except Exception:  # noqa: BLE001 - a model that needs the guide's draws: draws() reports
        return
    # only data that is concrete outside the abstract evaluation (not, e.g., a subsample)
    concrete = {n: s for n, s in trace.items() if _is_concrete(s.get("value"))}
    check_observed_sites(concrete, "vidiv.numpyro.to_datatree")


def guide_site_kinds(guide, params, args=(), kwargs=None, *, rng_key) -> tuple[list, list]:
    """(Delta sites, discrete sites) among the guide's latent, non-auxiliary sample sites, read
    off one abstractly evaluated guide trace."""
    delta, discrete = [], []
    for name, site in _abstract_trace(guide, params, args, kwargs, rng_key).items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        if (site.get("infer") or {}).get("is_auxiliary", False):
            continue
        fn = _base_dist(site["fn"])
        if isinstance(fn, numpyro.distributions.Delta):
            delta.append(name)
        elif getattr(getattr(fn, "support", None), "is_discrete", False):
            discrete.append(name)
    return delta, discrete


def draws(model, guide, params, args=(), kwargs=None, *, rng_key, num_samples: int = 1000):
    """Latent draws, log p, log q, per-observation log likelihoods, observed values and dims."""
    kwargs = kwargs or {}
    proto = _prototype(model, guide, params, args, kwargs, rng_key)
    _check_no_subsampling(proto)
    latent = [
        n for n, s in proto.items()
        if (s["type"] == "sample" and not s["is_observed"]) or s["type"] == "deterministic"
    ]
    observed = [n for n, s in proto.items() if _is_observed(s)]

    def one(key):
        lp, lq, tr = _one_draw(model, guide, params, args, kwargs, key)
        values = {n: tr[n]["value"] for n in latent}
        loglik = {n: tr[n]["fn"].log_prob(tr[n]["value"]) for n in observed}
        return lp, lq, values, loglik

    keys = jax.random.split(rng_key, num_samples)
    # eager vmap: one batched pass, no XLA compile of a fresh closure on every call
    log_p, log_q, values, loglik = jax.jit(jax.vmap(one))(keys)
    dims = {n: _site_dims(proto[n], n) for n in latent + observed}
    obs_values = {n: proto[n]["value"] for n in observed}
    dims["_deterministic"] = [n for n in latent if proto[n]["type"] == "deterministic"]
    return log_p, log_q, values, loglik, obs_values, dims


def to_datatree(
    model,
    guide,
    params: dict,
    *args,
    rng_key=None,
    num_samples: int = 1000,
    losses: Any = None,
    objective: str | None = None,
    **kwargs,
):
    """Draw from the fitted ``guide`` (with ``params``, e.g. ``svi_result.params``) and return an
    ArviZ ``xarray.DataTree``; see :func:`vidiv.pyro.to_datatree` for the groups.

    ``rng_key`` defaults to ``jax.random.PRNGKey(0)``. ``losses`` may be the loss array or the
    :class:`~vidiv.diagnostics.FitResult` of :func:`vidiv.numpyro.fit` (k-hat trace included).
    Root attrs ``point_mass`` / ``point_mass_sites`` / ``log_q_density`` come from the guide's
    trace (Delta sites, e.g. AutoDelta), so ``diagnose`` reports a point estimate as one. A
    ``"/"`` in a site or plate name is stored as ``"."``, the renaming in the root attr
    ``renamed_sites`` (see :mod:`vidiv.diagnostics.names`). Raises
    :class:`~vidiv.errors.NonFiniteError` when an unmasked observed site holds NaN or +-inf
    data, naming the site and the count.
    """
    from .. import diagnostics
    from ..diagnostics.monitor import FitResult
    from ..errors import check_num_particles

    check_num_particles(num_samples, name="num_samples")
    if not isinstance(params, dict):
        raise InvalidArgumentError(
            f"params must be the dict of fitted parameters (svi.get_params(state) or "
            f"svi_result.params), got {type(params).__name__}."
        )
    key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    check_data(model, params, args, kwargs, key)
    log_p, log_q, values, loglik, obs, dims = draws(
        model, guide, params, args, kwargs, rng_key=key, num_samples=num_samples
    )
    if not values:
        raise ModelStructureError(
            "the model has no latent sample sites to put in the posterior group; check that "
            "the model and the guide are the ones fitted."
        )
    deterministic = dims.pop("_deterministic")
    delta_sites, discrete_sites = guide_site_kinds(guide, params, args, kwargs, rng_key=key)
    khat_trace = None
    if isinstance(losses, FitResult):
        losses, khat_trace = losses.losses, losses.khat

    def np64(x):
        return np.asarray(x, dtype=np.float64)

    samples = {k: np64(v) for k, v in values.items()}
    kinds = diagnostics.guide_attrs(samples, delta_sites, discrete_sites, deterministic)
    return diagnostics.to_datatree(
        samples,
        log_p=np64(log_p),
        log_q=np64(log_q),
        log_likelihood={k: np64(v) for k, v in loglik.items()},
        observed={k: np.asarray(v) for k, v in obs.items()},
        losses=None if losses is None else np64(losses),
        khat_trace=khat_trace,
        dims=dims,
        attrs={
            "objective": objective or "unknown",
            "backend": "numpyro",
            "guide": getattr(guide, "__name__", type(guide).__name__),
            "numpyro_version": numpyro.__version__,
            "jax_version": jax.__version__,
            **kinds,
        },
    )
