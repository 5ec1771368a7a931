r"""Pyro host conventions shared by vidiv's Pyro objectives: the keywords Pyro's ``ELBO`` accepts,
Pyro's own model--guide checks, and the fallback for models written for one draw.

Keywords
--------
``pyro.infer.ELBO`` (and so ``Trace_ELBO``, ``TraceGraph_ELBO``, ``TraceMeanField_ELBO``,
``JitTrace_ELBO``, ...) accepts ``num_particles``, ``max_plate_nesting``, ``max_iarange_nesting``,
``vectorize_particles``, ``strict_enumeration_warning``, ``ignore_jit_warnings``, ``jit_options``,
``retain_graph`` and ``tail_adaptive_beta``. vidiv's objectives accept every one of them:

* ``num_particles``, ``max_plate_nesting`` (``max_iarange_nesting`` is its old name),
  ``vectorize_particles`` and ``retain_graph`` (passed to ``backward`` in ``loss_and_grads``)
  mean what they mean for the host;
* ``strict_enumeration_warning`` has no effect: vidiv's objectives do not enumerate (a site marked
  ``infer={'enumerate': ...}`` is refused by name), so there is no enumeration to warn about;
* ``ignore_jit_warnings`` and ``jit_options`` have no effect: vidiv does not ``torch.jit``-compile
  the loss (the particle plate already batches the work), so there are no JIT warnings;
* ``tail_adaptive_beta`` belongs to ``TraceTailAdaptive_ELBO``'s weighting and has no effect.

They are stored under their names, as the host stores them.

Checks
------
:func:`host_check_pass` runs the guide and the model once, for *one* draw and outside vidiv's
particle plate, and applies the checks ``Trace_ELBO`` applies when validation is enabled
(``pyro.infer.util.is_validation_enabled()``, on by default): ``check_model_guide_match`` (shapes
and event dims at every site, guide sites missing from the model, plates in the guide but not the
model, ``pyro.factor`` in a guide without ``has_rsample``) and ``check_site_shape`` (log-prob
shapes against the plates). The host's warnings are given unchanged; its errors are raised as
:class:`~vidiv.errors.ModelStructureError` starting with the host's message (which names the site),
followed by what to do. Because the pass is unvectorised, no message can mention vidiv's particle
plate.

Models written for one draw
---------------------------
With ``vectorize_particles=None`` (vidiv's default; the host's is ``False``) the ``S`` particles
are drawn in one pass inside a particle plate. A model written for one draw (``X @ w``,
``torch.mv``, indexing a latent) either fails there or silently mixes particles. The first call
for a (model, guide) pair therefore checks that the vectorised pass runs *and* that its first
particle's ``log p`` equals the model's ``log p`` at that particle's latent values for one draw; if
not, the objective falls back, once and with a :class:`UserWarning` (:func:`warn_loop_fallback`),
to a Python loop over particles, which is what the host does by default.

``vectorize_particles=True`` declares the model vectorised, as for the host's ELBO: the model is
never run for one draw (beyond the host's own nesting guess when ``max_plate_nesting`` is not
given), Pyro's checks run on the vectorised traces (:func:`check_traces`) and there is no
fallback. ``vectorize_particles=False`` always loops.
"""

from __future__ import annotations

import math
import warnings

import torch
from pyro import poutine
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_model_guide_match, check_site_shape

from ..errors import ModelStructureError
from ._traces import _check_data

__all__ = ["HOST_DEFAULTS", "host_check_pass", "model_nesting", "warn_loop_fallback"]

#: keywords of ``pyro.infer.ELBO.__init__`` beyond those vidiv's objectives name explicitly
HOST_DEFAULTS = {
    "max_iarange_nesting": None,
    "strict_enumeration_warning": True,
    "ignore_jit_warnings": False,
    "jit_options": None,
    "retain_graph": None,
    "tail_adaptive_beta": -1.0,
}

_FACTOR_FIX = (
    "Pass has_rsample=True to pyro.factor in the guide if the factor comes from reparameterised "
    "sampling, has_rsample=False otherwise."
)
_SHAPE_FIX = (
    "The guide must sample each latent site with the model's shape (batch and event dims; vidiv, "
    "like Pyro, does not broadcast between them): fix the guide's distribution at that site, e.g. "
    "its .expand(...) / .to_event(...), or the plate it is sampled in."
)
_SITE_FIX = (
    "Declare every batch dim of the site with a pyro.plate (with a distinct dim= for nested "
    "plates), move event dims into the event shape with .to_event(...), or pass a larger "
    "max_plate_nesting."
)


def model_nesting(*traces) -> int:
    """Number of batch dims the plates of these (unvectorised) traces use."""
    dims = [
        -f.dim
        for tr in traces
        for s in tr.nodes.values()
        if s["type"] == "sample"
        for f in s["cond_indep_stack"]
        if f.vectorized and f.dim is not None
    ]
    return max(dims, default=0)


def host_check_pass(model, guide, args, kwargs, max_plate_nesting: float, objective: str):
    """One unvectorised guide draw and model replay (blocked, no gradient) with Pyro's checks.

    Returns ``(model_trace, guide_trace)`` (pruned of subsample sites, log probs computed). Errors
    raised by the user's model or guide themselves propagate unchanged, as under ``Trace_ELBO``.
    """
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        return check_traces(model_trace, guide_trace, max_plate_nesting, objective)


def check_traces(model_trace, guide_trace, max_plate_nesting: float, objective: str):
    """Pyro's checks (``check_model_guide_match``, ``check_site_shape``) on a model and guide
    trace: unvectorised ones, or the vectorised ones of the particle plate with the model's own
    ``max_plate_nesting`` (the particle dim sits left of it, as in the host's vectorised ELBO).

    Returns the traces pruned of subsample sites, with log probs computed (no gradient)."""
    with torch.no_grad():
        nesting = max_plate_nesting
        if math.isinf(nesting):
            nesting = model_nesting(model_trace, guide_trace)
        validate = is_validation_enabled()
        if validate:
            try:
                check_model_guide_match(model_trace, guide_trace, nesting)
            except ValueError as e:
                msg = str(e).rstrip(".")
                if "disagree" in msg:
                    msg = f"{msg}. {_SHAPE_FIX}"
                elif "has_rsample" not in msg:  # Pyro's own message already says what to pass
                    msg = f"{msg}. {_FACTOR_FIX}"
                raise ModelStructureError(f"{objective}: {msg}") from e
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        try:
            model_trace.compute_log_prob()
        except ValueError:  # distribution validation meets NaN data first: say which site
            _check_data([s for s in model_trace.nodes.values() if s["type"] == "sample"],
                        objective)
            raise
        guide_trace.compute_log_prob()
        if validate:
            for tr in (model_trace, guide_trace):
                for site in tr.nodes.values():
                    if site["type"] != "sample":
                        continue
                    try:  # as the host's nesting guess does: with the user's bound, else inf
                        check_site_shape(site, max_plate_nesting)
                    except ValueError as e:
                        msg = " ".join(str(e).split())
                        raise ModelStructureError(f"{objective}: {msg}. {_SITE_FIX}") from e
    return model_trace, guide_trace


def warn_loop_fallback(objective: str, num_particles: int, err: BaseException | str) -> None:
    """The warning given once when a model does not run, or runs wrongly, in the particle plate."""
    why = err if isinstance(err, str) else f"{type(err).__name__}: {str(err).splitlines()[0]}"
    warnings.warn(
        f"{objective}: the model/guide do not broadcast over a batch of {num_particles} "
        f"particles ({why}), though they run for one draw; falling back to a Python loop over "
        "particles (slower, same result). To make it fast, write the model so that latents with "
        "extra leading batch dims broadcast: e.g. (X * w).sum(-1) instead of X @ w or "
        "torch.mv(X, w), w[..., i] instead of w[i]. Pass "
        "vectorize_particles=False to use the loop without this warning.",
        UserWarning,
        stacklevel=4,
    )
