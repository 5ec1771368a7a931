"""Pyro results as ArviZ DataTrees.

``to_datatree(model, guide, *args, num_samples=1000, ...)`` draws ``num_samples`` values from
the fitted guide in one vectorised pass (a particle plate left of the model's plates), replays
the model on them and records, per draw, ``log p(x, z)``, ``log q(z)``, the per-observation log
likelihood of every observed site and the latent values (dims named after the plates), then
calls :func:`vidiv.diagnostics.to_datatree`. Works for any guide whose sites vectorise under a
``pyro.plate`` (AutoNormal, AutoMultivariateNormal, AutoLowRankMultivariateNormal, hand-written
guides with plates): the same requirement as ``vectorize_particles=True``.

Example::

    guide = pyro.infer.autoguide.AutoNormal(model)
    ...  # fit with SVI
    dt = vidiv.pyro.to_datatree(model, guide, x, y=y, num_samples=1000, losses=losses)
    print(vidiv.diagnostics.diagnose(dt))
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import prune_subsample_sites

from ..errors import ModelStructureError
from ._traces import _check_data

__all__ = ["to_datatree", "log_weights"]

_PARTICLES = "_vidiv_draws"


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().to(torch.float64).numpy()


def _unmasked_observed(trace) -> list[dict]:
    """The observed sample sites that no mask covers (``poutine.mask``, ``obs_mask``): their
    data must be finite; a masked site may hold NaN in the entries it masks out."""
    return [
        site for site in trace.nodes.values()
        if site["type"] == "sample" and site["is_observed"] and site.get("mask") is None
        and not isinstance(site["fn"], pyro.distributions.MaskedDistribution)
    ]


def _prototype(model, guide, args, kwargs, who: str = "vidiv.pyro.log_weights"):
    """One unvectorised (guide, model) trace pair: shapes, plates, observed values (refused
    by name, for ``who``, when they hold NaN or +-inf)."""
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    _check_data(_unmasked_observed(model_trace), who)
    for trace in (model_trace, guide_trace):
        for name, site in trace.nodes.items():
            for f in site.get("cond_indep_stack", ()):
                if f.full_size is not None and f.size != f.full_size:
                    raise ModelStructureError(
                        f"site {name!r} lies in plate {f.name!r} subsampled to {f.size} of "
                        f"{f.full_size}: to_datatree evaluates the whole data set. Call it with "
                        "the full data (subsample_size=None)."
                    )
    model_trace = prune_subsample_sites(model_trace)
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace.compute_log_prob()
    return model_trace, guide_trace


def _max_plate_nesting(*traces) -> int:
    dims = [
        -f.dim
        for trace in traces
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for f in site["cond_indep_stack"]
        if f.vectorized
    ]
    return max(dims, default=0)


def _site_dims(site, shape: tuple[int, ...], name: str, batch_ndim: int) -> list[str]:
    names = []
    frames = {f.dim: f for f in site["cond_indep_stack"] if f.vectorized}
    if _is_deterministic(site):  # pyro.deterministic puts every axis in the event shape
        batch_ndim = len(shape)
    for i in range(len(shape)):
        f = frames.get(i - batch_ndim) if i < batch_ndim else None
        names.append(f.name if f is not None and f.size == shape[i] else f"{name}_dim_{i}")
    return names


def _is_deterministic(site) -> bool:
    return bool(site.get("infer", {}).get("_deterministic", False))


def _vectorized_traces(model, guide, num_samples, args, kwargs, mpn):
    def vectorize(fn):
        def wrapped(*a, **k):
            with pyro.plate(_PARTICLES, num_samples, dim=-(mpn + 1)):
                return fn(*a, **k)

        return wrapped

    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(vectorize(guide)).get_trace(*args, **kwargs)
        model_trace = poutine.trace(
            poutine.replay(vectorize(model), trace=guide_trace)
        ).get_trace(*args, **kwargs)
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace = prune_subsample_sites(model_trace)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    return model_trace, guide_trace


def _per_draw_sum(trace, num_samples: int, mpn: int) -> torch.Tensor:
    total = 0.0
    for name, site in trace.nodes.items():
        if site["type"] != "sample":
            continue
        lp = site["log_prob"]
        if lp.dim() >= mpn + 1 and lp.shape[lp.dim() - mpn - 1] == num_samples:
            lp = lp.movedim(lp.dim() - mpn - 1, 0).reshape(num_samples, -1).sum(-1)
        elif lp.numel() == 1:
            lp = lp.reshape(()).expand(num_samples)
        else:
            raise ModelStructureError(
                f"site {name!r} has log_prob of shape {tuple(lp.shape)} without the draw "
                f"dimension ({num_samples}) at dim {-(mpn + 1)}: the site does not vectorise under "
                "a particle plate. Declare its batch dims with pyro.plate (or .to_event)."
            )
        total = total + lp
    return total


def _per_draw(value: torch.Tensor, proto_shape, num_samples: int, name: str) -> torch.Tensor:
    target = (num_samples, *proto_shape)
    if value.numel() != int(np.prod(target)):
        raise ModelStructureError(
            f"site {name!r} has shape {tuple(value.shape)} under {num_samples} vectorised draws "
            f"but {tuple(proto_shape)} for one draw; it does not vectorise under a particle "
            "plate. Use pyro.plate for its batch dims."
        )
    return value.reshape(target)


class _Draws(NamedTuple):
    samples: dict
    log_p: torch.Tensor
    log_q: torch.Tensor
    log_lik: dict
    observed: dict
    dims: dict


def _collect(proto_model, value_of, loglik_of):
    samples, log_lik, observed, dims = {}, {}, {}, {}
    for name, site in proto_model.nodes.items():
        if site["type"] != "sample":
            continue
        shape = tuple(site["value"].shape)
        batch_ndim = len(shape) - site["fn"].event_dim
        if site["is_observed"] and not _is_deterministic(site):
            log_lik[name] = loglik_of(name, tuple(site["log_prob"].shape))
            observed[name] = site["value"]
        else:
            samples[name] = value_of(name, shape)
        dims[name] = _site_dims(site, shape, name, batch_ndim)
    return samples, log_lik, observed, dims


def _sequential(model, guide, num_samples, args, kwargs, proto_model):
    """Fallback for models that do not vectorise: one trace per draw."""
    traces = []
    with poutine.block(), torch.no_grad():
        for _ in range(num_samples):
            gt = prune_subsample_sites(poutine.trace(guide).get_trace(*args, **kwargs))
            mt = prune_subsample_sites(
                poutine.trace(poutine.replay(model, trace=gt)).get_trace(*args, **kwargs)
            )
            mt.compute_log_prob()
            gt.compute_log_prob()
            traces.append((mt, gt))
    log_p = torch.stack([mt.log_prob_sum() for mt, _ in traces])
    log_q = torch.stack([gt.log_prob_sum() for _, gt in traces])
    parts = _collect(
        proto_model,
        lambda name, shape: torch.stack([mt.nodes[name]["value"] for mt, _ in traces]),
        lambda name, shape: torch.stack([mt.nodes[name]["log_prob"] for mt, _ in traces]),
    )
    return _Draws(parts[0], log_p, log_q, *parts[1:])


def log_weights(model, guide, num_samples: int, args=(), kwargs=None, *, full: bool = False):
    """Draws from ``guide`` with ``log p(x, z)`` and ``log q(z)`` per draw (no gradient).

    Vectorised under a particle plate when the model and guide allow it (as for
    ``vectorize_particles=True``); otherwise (e.g. ``X @ z`` with a batched ``z``) it falls back,
    with a warning, to one trace per draw. Returns ``(log_p, log_q)`` of shape
    ``(num_samples,)``, or with ``full=True`` a record that also holds the latent draws,
    per-observation log likelihoods, observed values and plate dims.
    """
    kwargs = kwargs or {}
    proto_model, proto_guide = _prototype(model, guide, args, kwargs)
    mpn = _max_plate_nesting(proto_model, proto_guide)
    try:
        model_trace, guide_trace = _vectorized_traces(
            model, guide, num_samples, args, kwargs, mpn
        )
        log_p = _per_draw_sum(model_trace, num_samples, mpn)
        log_q = _per_draw_sum(guide_trace, num_samples, mpn)
        if not full:
            return log_p, log_q
        parts = _collect(
            proto_model,
            lambda name, shape: _per_draw(
                model_trace.nodes[name]["value"], shape, num_samples, name
            ),
            lambda name, shape: _per_draw(
                model_trace.nodes[name]["log_prob"], shape, num_samples, name
            ),
        )
        return _Draws(parts[0], log_p, log_q, *parts[1:])
    except (RuntimeError, ValueError, IndexError, ModelStructureError) as err:
        warnings.warn(
            f"model/guide do not vectorise over draws ({type(err).__name__}: "
            f"{str(err).splitlines()[0]}); drawing {num_samples} samples one trace at a time. "
            "Write the model so that batched latents broadcast (e.g. z @ X.T, not X @ z) "
            "to make this fast.",
            stacklevel=3,
        )
    draws = _sequential(model, guide, num_samples, args, kwargs, proto_model)
    return draws if full else (draws.log_p, draws.log_q)


def _base_dist(fn):
    while hasattr(fn, "base_dist"):  # Independent, Masked, Expanded wrappers
        fn = fn.base_dist
    return fn


def _guide_site_kinds(guide_trace) -> tuple[list[str], list[str]]:
    """(Delta sites, discrete sites) among the guide's latent, non-auxiliary sample sites."""
    delta, discrete = [], []
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        if site.get("infer", {}).get("is_auxiliary", False):
            continue
        fn = _base_dist(site["fn"])
        if isinstance(fn, pyro.distributions.Delta):
            delta.append(name)
        elif getattr(getattr(fn, "support", None), "is_discrete", False):
            discrete.append(name)
    return delta, discrete


def to_datatree(
    model,
    guide,
    *args,
    num_samples: int = 1000,
    losses: Any = None,
    objective: str | None = None,
    **kwargs,
):
    """Draw from the fitted ``guide`` and return an ArviZ ``xarray.DataTree``.

    Parameters
    ----------
    model, guide : the Pyro model and (fitted) guide; ``*args, **kwargs`` are the model's.
    num_samples : number of guide draws (S).
    losses : loss trace (array), or the :class:`~vidiv.diagnostics.FitResult` of
        :func:`vidiv.pyro.fit` (its k-hat trace is stored too).
    objective : name stored in the root attrs (e.g. ``"Trace_ELBO"``).

    The tree holds ``posterior`` (latent and deterministic sites; plate names as dims),
    ``sample_stats`` (log_p, log_q, log_weight), ``log_likelihood`` and ``observed_data`` for
    every observed site, ``optimization`` when ``losses`` is given, and the k-hat / IS-ESS /
    log Z summary in the root attrs, with ``point_mass`` / ``point_mass_sites`` /
    ``log_q_density`` read off the guide's trace (Delta sites, e.g. AutoDelta; see
    :func:`vidiv.diagnostics.datatree.guide_attrs`), so that ``diagnose`` reports a point
    estimate as one. A ``"/"`` in a site or plate name is stored as ``"."``, the renaming in
    the root attr ``renamed_sites`` (see :mod:`vidiv.diagnostics.names`).

    Raises :class:`~vidiv.errors.NonFiniteError` when an observed site that no mask covers
    holds NaN or +-inf data (naming the site and the count).
    """
    from .. import diagnostics
    from ..errors import check_num_particles

    check_num_particles(num_samples, name="num_samples")
    # first: NaN / +-inf data named by site (the draws would carry -inf log p silently)
    proto_model, proto_guide = _prototype(model, guide, args, kwargs, "vidiv.pyro.to_datatree")
    draws = log_weights(model, guide, num_samples, args, kwargs, full=True)
    delta_sites, discrete_sites = _guide_site_kinds(proto_guide)
    deterministic = [n for n, site in proto_model.nodes.items()
                     if site["type"] == "sample" and _is_deterministic(site)]
    if not draws.samples:
        raise ModelStructureError(
            "the model has no latent sample sites to put in the posterior group; check that "
            "the model and the guide are the ones fitted."
        )
    khat_trace = None
    from ..diagnostics.monitor import FitResult

    if isinstance(losses, FitResult):
        losses, khat_trace = losses.losses, losses.khat
    samples = {k: _np(v) for k, v in draws.samples.items()}
    kinds = diagnostics.guide_attrs(samples, delta_sites, discrete_sites, deterministic)
    return diagnostics.to_datatree(
        samples,
        log_p=_np(draws.log_p),
        log_q=_np(draws.log_q),
        log_likelihood={k: _np(v) for k, v in draws.log_lik.items()},
        observed={k: _np(v) for k, v in draws.observed.items()},
        losses=losses,
        khat_trace=khat_trace,
        dims=draws.dims,
        attrs={
            "objective": objective or "unknown",
            "backend": "pyro",
            "guide": getattr(guide, "__name__", type(guide).__name__),
            "pyro_version": pyro.__version__,
            "torch_version": torch.__version__,
            **kinds,
        },
    )
