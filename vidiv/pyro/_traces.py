r"""The one trace walk shared by vidiv's Pyro objectives.

:func:`trace_particles` runs the guide ``S`` times (vectorised: inside one particle plate at the
left-most batch dim, ``dim = -(max_plate_nesting + 1)``; or in a Python loop), replays the model on
each draw and returns per-particle log densities

.. math:: \log p_{s,n} = \log p(x_n, z_{s,n}),\qquad \log q_{s,n} = \log q(z_{s,n}),

of shape ``(S, *indep)``, where ``indep`` are the plates shared by *every* sample site of the model
and the guide (the data plate of a local-latent model, none for a model with a global latent).
Log densities are **unscaled** per datum: a subsampled common plate contributes its scale
``size / subsample_size`` as :attr:`Particles.scale`, which the objectives apply *outside* the
non-linear bound (``scale * sum_n L(x_n)``), as NumPyro's ``RenyiELBO`` does. Pyro's own
``RenyiELBO`` puts the scale inside the log-sum-exp, which is not an estimate of the full-data
bound. Subsampling in a plate that is not common to all sites is refused: the bound is not additive
over such a plate.

With ``per_datum=False`` every site is summed with its own scale (Pyro's usual subsampling
semantics) and the result has shape ``(S,)``; this is what a *linear* objective of the log ratio
(``LogVariance``) needs, and it allows subsampling in any plate.

:class:`DetachSamples` detaches every sampled value in the guide, so that ``log q(sg z)`` has a
gradient only through the guide's parameters and ``log p(x, sg z)`` only through the model's
(``ChiSquaredVIS``, ``LogVariance``, the DReG correction). It detaches the *value* only: a
``Delta(v, log_density=ld)`` site keeps the gradient of ``ld``. Point masses are not detached: a
guide site whose distribution is a ``Delta`` that is a point *estimate* (:func:`is_point_mass`:
``AutoDelta``, the ``AutoDelta`` part of an ``AutoGuideList``, ``dist.Delta(pyro.param(...))``,
``AutoLaplaceApproximation``'s latent) keeps its gradient and follows the model's ``log p`` like a
model parameter (MAP); its ``log q`` (the ``-log|J|`` of an unconstrained point estimate) is
returned apart as :attr:`Particles.log_q_point`, so the objectives put it into the MAP objective
``log p - log q_point`` (as ``Trace_ELBO`` does) and not into the guide's score terms. An auxiliary
``Delta`` with a density (``DiffusionGuide``'s trajectory end) is detached like any sample.

A model with no latent sample site (observed sites and parameters only) is accepted: ``log q = 0``,
every particle has the same ``log w = log p(x | theta)``, and every objective is
``-log p(x | theta)`` (maximum likelihood, as with Pyro's ``Trace_ELBO`` and an empty guide).

:func:`first_particle_matches` checks a vectorised pass against the model evaluated for one draw
(see :mod:`vidiv.pyro._host`).

Example
-------
>>> p = trace_particles(model, guide, (data,), {}, num_particles=8, max_plate_nesting=1)
>>> p.log_p.shape, p.log_q.shape, p.scale           # doctest: +SKIP
(torch.Size([8]), torch.Size([8]), 1.0)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from ..errors import (
    ModelStructureError,
    check_observed,
    guide_factor_error,
    no_inverse_error,
)
from ..estimators import check_log_weights

__all__ = [
    "delta_of",
    "DetachSamples",
    "NotVectorisedError",
    "first_particle_matches",
    "is_point_mass",
    "Particles",
    "trace_particles",
    "guess_max_plate_nesting",
]

PARTICLE_PLATE = "_vidiv_particles"


class NotVectorisedError(ModelStructureError):
    """A site's log prob does not have the shape the particle plate implies (internal: the
    objective then falls back to a loop over particles)."""


def delta_of(fn) -> dist.Delta | None:
    """The ``Delta`` under ``fn``'s wrappers (``Independent``, ``Expanded``, ``Masked``), or
    ``None``."""
    while not isinstance(fn, dist.Delta) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn if isinstance(fn, dist.Delta) else None


def is_point_mass(site) -> bool:
    """``True`` for a latent site whose distribution is a ``Delta`` (possibly wrapped in
    ``Independent`` / ``ExpandedDistribution`` / ``MaskedDistribution``) that is a point
    estimate: a non-auxiliary one (``AutoDelta``, ``dist.Delta(pyro.param(...))``, the per-site
    ``Delta`` an ``AutoContinuous`` guide emits), or an auxiliary one whose ``log_density`` is a
    constant (``AutoLaplaceApproximation``'s ``_auto_latent``). An auxiliary ``Delta(v,
    log_density=ld)`` whose ``ld`` carries a gradient reports a density (``DiffusionGuide``'s
    path log density), not a point estimate, and is detached. The same rule as
    :func:`vidiv.numpyro._traces.is_point_mass`."""
    fn = delta_of(site["fn"])
    if fn is None:
        return False
    if not site["infer"].get("is_auxiliary"):
        return True
    ld = fn.log_density
    return not (isinstance(ld, torch.Tensor) and ld.requires_grad)


class DetachSamples(Messenger):
    """Detach the value of every latent sample site except point masses (:func:`is_point_mass`);
    enter it *outside* ``poutine.trace``, so the trace and every later site see the detached
    value."""

    def _postprocess_message(self, msg) -> None:
        if msg["type"] == "sample" and not msg["is_observed"] and not is_point_mass(msg):
            value = msg["value"]
            if isinstance(value, torch.Tensor) and value.requires_grad:
                msg["value"] = value.detach()


@dataclass
class Particles:
    """Per-particle log densities and the traces they came from."""

    log_p: torch.Tensor  #: (S, *indep) log p(x, z_s), unscaled per datum of the common plates
    log_q: torch.Tensor  #: (S, *indep) log q(z_s)
    log_q_score: torch.Tensor | None  #: log q of the non-reparameterised guide sites, or None
    log_q_point: torch.Tensor | float  #: log q of the point-mass guide sites (0. without any)
    scale: float  #: size / subsample_size of the common plates (1.0 without subsampling)
    plates: tuple[str, ...]  #: names of the common plates, in dim order
    non_reparam: tuple[str, ...]  #: guide sites whose distribution has no rsample
    model_trace: Any
    guide_trace: Any  #: pruned guide trace (no subsample sites)
    raw_guide_traces: list  #: unpruned guide traces, for replay (one per loop particle)

    @property
    def log_w(self) -> torch.Tensor:
        return self.log_p - self.log_q


def guess_max_plate_nesting(model, guide, args, kwargs) -> int:
    """Number of batch dims the model's and guide's plates use (one blocked run of each)."""
    with poutine.block():
        gt = poutine.trace(guide).get_trace(*args, **kwargs)
        mt = poutine.trace(poutine.replay(model, trace=gt)).get_trace(*args, **kwargs)
    dims = [
        f.dim
        for tr in (gt, mt)
        for s in tr.nodes.values()
        if s["type"] == "sample"
        for f in s["cond_indep_stack"]
        if f.vectorized and f.name != PARTICLE_PLATE
    ]
    return -min(dims) if dims else 0


def _sites(trace):
    return [
        s
        for s in trace.nodes.values()
        if s["type"] == "sample"
        and not site_is_subsample(s)
        and not s["infer"].get("_deterministic", False)
    ]


def _frames(site):
    return [f for f in site["cond_indep_stack"] if f.name != PARTICLE_PLATE]


def _validate(model_sites, guide_sites, objective: str) -> None:
    for s in model_sites + guide_sites:
        if s["infer"].get("enumerate"):
            raise ModelStructureError(
                f"site {s['name']!r} asks for enumeration (infer={{'enumerate': "
                f"{s['infer']['enumerate']!r}}}), but {objective} does not enumerate. Use "
                "pyro.infer.TraceEnum_ELBO for enumerated models, or marginalise the discrete "
                "site by hand (e.g. a MixtureSameFamily likelihood) and drop the infer flag."
            )
    latents = [s["name"] for s in model_sites if not s["is_observed"]]
    guided = {s["name"] for s in guide_sites}
    missing = [n for n in latents if n not in guided]
    if missing:
        raise ModelStructureError(
            f"model latent site(s) {missing} have no site in the guide, so q cannot weight them. "
            "Add them to the guide (autoguides cover every latent site unless hidden) or observe "
            "them in the model."
        )


def _common_frames(sites, per_datum: bool):
    """Plates shared by all sites (sorted by dim) and the product of their subsample scales."""
    if not per_datum:
        return [], 1.0
    common = None
    for s in sites:
        here = {(f.name, f.dim, f.size, f.full_size) for f in _frames(s) if f.vectorized}
        common = here if common is None else common & here
    common = sorted(common or (), key=lambda f: f[1])
    names = {f[0] for f in common}
    for s in sites:
        for f in _frames(s):
            if f.full_size is not None and f.full_size != f.size and f.name not in names:
                raise ModelStructureError(
                    f"plate {f.name!r} is subsampled ({f.size} of {f.full_size}) but site "
                    f"{s['name']!r}'s plates are not shared by all sample sites; these objectives "
                    "support only subsampling in plates common to all sample sites (the bound is "
                    "not additive over a plate that a global latent sits outside). Use the full "
                    f"data for {f.name!r}, or make every latent local to that plate."
                )
    scale = 1.0
    for _, _, size, full_size in common:
        if full_size is not None and full_size != size:
            scale *= float(full_size) / float(size)
    return common, scale


def _reduce(lp, keep: tuple[int, ...], shape: tuple[int, ...], name: str, limit: int | None):
    """Sum a site's log prob over every batch dim except ``keep`` (negative dims, ascending),
    then broadcast to ``shape``."""
    if not isinstance(lp, torch.Tensor):
        lp = torch.as_tensor(lp)
    if limit is not None and lp.dim() > limit:
        raise NotVectorisedError(
            f"site {name!r} has log_prob shape {tuple(lp.shape)}: more batch dims than its "
            "plates declare. Declare every batch dim with pyro.plate, move event dims to the "
            "event shape with .to_event(), or pass max_plate_nesting."
        )
    need = -keep[0] if keep else 0
    if lp.dim() < need:
        lp = lp.reshape((1,) * (need - lp.dim()) + tuple(lp.shape))
    n = lp.dim()
    drop = [i for i in range(n) if i - n not in keep]
    if drop:
        lp = lp.sum(dim=drop)
    return lp.expand(shape)


def _flow(fn):
    """The ``TransformedDistribution`` under ``fn``'s wrappers, or ``None``."""
    while not isinstance(fn, dist.TransformedDistribution) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn if isinstance(fn, dist.TransformedDistribution) else None


def _log_densities(sites, keep, shape, common_scale, limit, want_score=False,
                   objective="this objective"):
    """(total, score part, point-mass part) of the sites' log densities; the last two only
    with ``want_score`` (a guide)."""
    total, point = 0.0, 0.0
    score = None
    for s in sites:
        try:
            lp = s["fn"].log_prob(s["value"], *s["args"], **s["kwargs"])
        except ValueError as err:  # distribution validation rejects NaN data first
            _check_data([s], objective)
            raise err
        except (KeyError, NotImplementedError) as err:
            # a flow without an inverse (BlockAutoregressive) at a detached draw: its cache
            # holds only the draw it made itself
            if not isinstance(s["value"], torch.Tensor) or _flow(s["fn"]) is None:
                raise
            why = f"{type(err).__name__}: {str(err).strip(chr(34))}"
            raise no_inverse_error(objective, s["name"], type(s["fn"]).__name__, why) from err
        rel = s["scale"] / common_scale if common_scale != 1.0 else s["scale"]
        lp = scale_and_mask(lp, rel, s["mask"])
        lp = _reduce(lp, keep, shape, s["name"], limit)
        total = total + lp
        if want_score and not s["fn"].has_rsample:
            score = lp if score is None else score + lp
        if want_score and is_point_mass(s):
            point = point + lp
    return total, score, point


MASK_HINT = "poutine.mask, or obs_mask=torch.isfinite(data) to pyro.sample"


def _check_data(sites, who: str = "this objective") -> None:
    for s in sites:
        v = s["value"]
        if s["is_observed"] and isinstance(v, torch.Tensor) and v.is_floating_point():
            check_observed(who, s["name"], v.detach().cpu().numpy(), MASK_HINT)


def _check_finite(log_w, model_sites, objective: str) -> None:
    bad = torch.isnan(log_w).any() | torch.isposinf(log_w).any()
    if log_w.dim():
        bad = bad | torch.isneginf(log_w).all(0).any()
    if not bool(bad):
        return
    _check_data(model_sites, objective)
    check_log_weights(log_w, name=f"{objective} log weights log p(x, z) - log q(z)")


def _one_pass(model, guide, args, kwargs, plate, detach, replay):
    stack = contextlib.ExitStack()
    with stack:
        if detach:
            stack.enter_context(DetachSamples())
        if replay is not None and detach:
            # point masses are recomputed, not replayed: a Delta that is a function of a
            # sample (AutoContinuous's per-site Delta) then sees the detached sample
            replay = _without_point_masses(replay)
        g = guide if replay is None else poutine.replay(guide, trace=replay)
        raw = poutine.trace(plate(g) if plate else g).get_trace(*args, **kwargs)
    mt = poutine.trace(poutine.replay(plate(model) if plate else model, trace=raw))
    mt = mt.get_trace(*args, **kwargs)
    return raw, mt


def _without_point_masses(trace):
    out = trace.copy()
    for name, site in list(out.nodes.items()):
        if site["type"] == "sample" and not site["is_observed"] and is_point_mass(site):
            out.remove_node(name)
    return out


def _subsample_only(trace):
    sub = trace.copy()
    for name, site in list(sub.nodes.items()):
        if not site_is_subsample(site):
            sub.remove_node(name)
    return sub


def trace_particles(
    model,
    guide,
    args: tuple,
    kwargs: dict,
    num_particles: int,
    max_plate_nesting: int | None,
    *,
    detach: bool = False,
    per_datum: bool = True,
    vectorize: bool = True,
    replay: list | None = None,
    subsample_from=None,
    objective: str = "this objective",
    check_finite: bool = True,
) -> Particles:
    """Draw ``num_particles`` guide samples, replay the model, return :class:`Particles`.

    ``max_plate_nesting`` is the model's own nesting (the particle plate goes one dim further
    left); it is only needed when ``vectorize``. ``replay`` (the ``raw_guide_traces`` of an earlier
    call) re-evaluates the same draws, e.g. with ``detach=True`` for ``log q_phi(sg z)``;
    ``subsample_from`` (a guide trace) reuses only its minibatch indices. ``check_finite=False``
    skips the NaN / +inf / all -inf check of the log weights (for an objective that filters them).
    """
    S = int(num_particles)
    if vectorize:
        dim = -(int(max_plate_nesting) + 1)
        passes = [(pyro.plate(PARTICLE_PLATE, S, dim=dim), None if replay is None else replay[0])]
    else:
        passes = [(None, None if replay is None else replay[i]) for i in range(S)]
    raws, mts = [], []
    for plate, rp in passes:
        if rp is None and (raws or subsample_from is not None):
            # looped particles (and chunks) share one minibatch: per-datum bounds need it
            rp = _subsample_only(raws[0] if raws else subsample_from)
        raw, mt = _one_pass(model, guide, args, kwargs, plate, detach, rp)
        raws.append(raw)
        mts.append(mt)
    model_sites = _sites(mts[0])
    guide_sites = _sites(raws[0])
    _validate(model_sites, guide_sites, objective)
    factors = [s["name"] for s in guide_sites if s["is_observed"]]
    if detach and factors:  # log q at a fixed sample (score forms, DReG's detached pass)
        raise guide_factor_error(objective, factors[0])
    common, scale = _common_frames(model_sites + guide_sites, per_datum)
    sizes = tuple(int(f[2]) for f in common)
    dims = tuple(f[1] for f in common)
    lps, lqs, scores, points = [], [], [], []
    for raw, mt in zip(raws, mts, strict=True):
        ms, gs = (model_sites, guide_sites) if raw is raws[0] else (_sites(mt), _sites(raw))
        if vectorize:
            keep, shape, limit = (dim,) + dims, (S,) + sizes, -dim
        else:
            keep, shape, limit = dims, sizes, None
        lp, _, _ = _log_densities(ms, keep, shape, scale, limit, objective=objective)
        lq, sc, pt = _log_densities(gs, keep, shape, scale, limit, want_score=True,
                                    objective=objective)
        lps.append(lp)
        lqs.append(lq)
        scores.append(sc)
        points.append(pt)
    if vectorize:
        log_p, log_q, log_q_score, log_q_point = lps[0], lqs[0], scores[0], points[0]
    else:
        log_p, log_q = torch.stack(lps), torch.stack(lqs)
        log_q_point = torch.stack(points) if isinstance(points[0], torch.Tensor) else 0.0
        log_q_score = None if scores[0] is None else torch.stack(scores)
    if not isinstance(log_p, torch.Tensor):  # a model without sample sites
        log_p = torch.zeros(shape if vectorize else (S,) + sizes)
    if not isinstance(log_q, torch.Tensor):  # a guide without sample sites
        log_q = torch.zeros_like(log_p)
    if check_finite:
        _check_finite((log_p - log_q).detach(), model_sites, objective)
    non_reparam = tuple(s["name"] for s in guide_sites if not s["fn"].has_rsample)
    return Particles(
        log_p=log_p,
        log_q=log_q,
        log_q_score=log_q_score,
        log_q_point=log_q_point,
        scale=scale,
        plates=tuple(f[0] for f in common),
        non_reparam=non_reparam,
        model_trace=mts[0],
        guide_trace=poutine.util.prune_subsample_sites(raws[0]),
        raw_guide_traces=raws,
    )


def first_particle_matches(model, args, kwargs, p: Particles, proto_model, mpn: int) -> bool:
    """Whether the first particle of a *vectorised* pass has the model's ``log p`` for one draw.

    The model is run unvectorised, conditioned on the first particle's latent values (and on the
    pass's minibatch indices), and its scaled, masked ``log p`` total is compared with
    ``p.log_p[0]`` (relative tolerance 1e-4). A model that indexes or contracts a latent along
    the particle dim (``w[0]``, ``X @ w``) gives a different number, or fails to run: ``False``.
    ``proto_model`` is a model trace for one draw (the shapes to reshape each value to).
    """
    S = int(p.log_p.shape[0])
    data = {}
    for s in _sites(p.model_trace):
        if s["is_observed"]:
            continue
        v = s["value"]
        axis = v.dim() - s["fn"].event_dim - (mpn + 1)
        if axis >= 0 and v.shape[axis] == S:
            v = v.select(axis, 0)
        proto = proto_model.nodes.get(s["name"])
        if proto is None or v.numel() != proto["value"].numel():
            return False
        data[s["name"]] = v.reshape(proto["value"].shape)
    try:
        with poutine.block(), torch.no_grad():
            conditioned = poutine.condition(model, data=data)
            replayed = poutine.replay(conditioned, trace=_subsample_only(p.model_trace))
            mt = poutine.trace(replayed).get_trace(*args, **kwargs)
            total = 0.0
            for s in _sites(mt):
                lp = s["fn"].log_prob(s["value"], *s["args"], **s["kwargs"])
                total = total + scale_and_mask(lp, s["scale"], s["mask"]).sum()
    except Exception:  # noqa: BLE001 -- the draw does not fit the model for one draw
        return False
    ours = (p.log_p[0].detach().sum() * p.scale).double()
    total = torch.as_tensor(total, dtype=torch.float64)
    if not (bool(torch.isfinite(ours)) and bool(torch.isfinite(total))):
        return bool(ours == total)
    return bool(abs(ours - total) <= 1e-4 * (1.0 + abs(total)))


def nonfinite_sites(model, args: tuple, kwargs: dict) -> list[str]:
    """Sites whose log density (summed) is -inf or NaN at one draw from the prior of
    ``model`` (the global torch RNG is left as it was): what to name when the host's
    initialisation finds no valid start."""
    try:
        with torch.random.fork_rng(devices=[]), pyro.poutine.block():
            tr = pyro.poutine.trace(model).get_trace(*args, **kwargs)
    except Exception:  # noqa: BLE001 - the model itself fails: the caller's error says so
        return []
    bad = []
    for name, site in tr.nodes.items():
        if site["type"] != "sample" or type(site["fn"]).__name__ == "_Subsample":
            continue
        try:
            with pyro.validation_enabled(False):
                lp = site["fn"].log_prob(site["value"]).sum()
        except Exception:  # noqa: BLE001 - cannot be evaluated there
            bad.append(name)
            continue
        if not bool(torch.isfinite(lp)):
            bad.append(name)
    return bad
