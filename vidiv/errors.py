"""Exceptions raised by vidiv.

Every message names the argument, site or array that was wrong and says what to do about it.
All errors derive from :class:`VidivError`, itself a :class:`ValueError`, so code that already
catches ``ValueError`` keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "VidivError",
    "InvalidArgumentError",
    "ModelStructureError",
    "NonFiniteError",
    "UnsupportedSupportError",
    "guide_factor_error",
    "check_observed",
    "no_inverse_error",
    "model_params_error",
    "point_mass_latent_error",
]


class VidivError(ValueError):
    """Base class of every error vidiv raises on bad input."""


class InvalidArgumentError(VidivError):
    """An argument has a value the method cannot use (e.g. ``alpha=nan``, ``num_particles=0``)."""


class ModelStructureError(VidivError):
    """The model or guide has a structure the objective cannot handle (no latent sites,
    an enumerated site, a subsampled plate that is not shared by every site, ...)."""


class NonFiniteError(VidivError):
    """Log weights, data or iterates are NaN or all ``-inf``."""


class UnsupportedSupportError(VidivError):
    """A latent site has a support no mirror map / transform in vidiv covers."""


def model_params_error(driver: str, host: str, shown: list[str], hide: str) -> ModelStructureError:
    """The refusal of model parameters by a driver that cannot learn them (MirroredSVGD, FBGVI).
    ``host``: ``"pyro"`` or ``"numpyro"``; ``shown``: the parameters (``name = value`` where
    small); ``hide``: the host's expression that hides them."""
    names = [s.split(" = ")[0] for s in shown]
    return ModelStructureError(
        f"{driver} cannot learn model parameters, and the model has {host}.param sites "
        f"{names}: it would hold them at their current values ({', '.join(shown)}). Fit them "
        f"by maximum likelihood with {host}.infer.SVI(model, guide, optim, loss=...) and "
        f"loss=vidiv.{host}.AlphaDivergence() or vidiv.{host}.ChiSquaredVIS() (both learn model "
        f"and guide parameters); or give them a prior ({host}.sample) so that they become "
        "latents; or, to keep them fixed on purpose, pass them in as model arguments or hide "
        f"them: {hide}."
    )


def point_mass_latent_error(driver: str, host: str, name: str) -> ModelStructureError:
    """The refusal of a latent point mass (``Delta``) by a driver that moves densities."""
    return ModelStructureError(
        f"latent site {name!r} is a point mass (Delta): it has no density for {driver} to move. "
        f"If it is a function of other sites, record it with {host}.deterministic({name!r}, "
        "value); if it is a free point estimate, give it a prior distribution, or fit it with "
        f"{host}.infer.SVI and an AutoDelta guide."
    )


def no_inverse_error(objective: str, site: str, distribution: str, why: str) -> ModelStructureError:
    """The refusal of a guide site whose log q at a detached draw needs the inverse of a flow
    that has none (Pyro's ``BlockAutoregressive``; NumPyro's where no intermediate helps)."""
    return ModelStructureError(
        f"{objective}: site '{site}' needs log q at a detached sample, which its distribution "
        f"({distribution}) can only give through the inverse of its transform, and that transform "
        f"has none ({why}). Use a guide with an invertible flow (AutoIAFNormal, AutoNormal, "
        "AutoMultivariateNormal) with this objective, or use AlphaDivergence(gradient='reparam') "
        "(reparameterised gradients need no inverse)."
    )


def check_observed(who: str, site: str, value, mask_hint: str) -> None:
    """Raise :class:`NonFiniteError` if the observed ``value`` of ``site`` holds NaN or +-inf,
    naming how many and what to do (``mask_hint``: the host's way to mask entries out).

    >>> check_observed("FBGVI", "y", [0.0, 1.0], "obs_mask")  # finite: nothing happens
    """
    import numpy as np

    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - a traced value: checked where it is concrete
        return
    if not np.issubdtype(arr.dtype, np.inexact):
        return
    nan, pinf, ninf = (int(f(arr).sum()) for f in (np.isnan, np.isposinf, np.isneginf))
    if not (nan or pinf or ninf):
        return
    parts = [f"{n} {what}" for n, what in ((nan, "NaN"), (pinf, "+inf"), (ninf, "-inf")) if n]
    raise NonFiniteError(
        f"{who}: observed site '{site}' contains {' and '.join(parts)} value(s) out of "
        f"{arr.size}. Drop or impute the missing data, or mask those entries out ({mask_hint})."
    )


def guide_factor_error(objective: str, site: str) -> ModelStructureError:
    """The refusal of a guide with a ``factor`` site (``AutoDAIS`` and its variants) by an
    objective whose gradient needs ``log q`` at a fixed sample (score forms, DReG)."""
    return ModelStructureError(
        f"{objective}: the guide has a factor site '{site}' (pyro.factor / numpyro.factor; "
        "AutoDAIS-type guides add one). Its log q is then an importance weight of the guide's "
        "own annealing path, not a density of the sample that can be evaluated with the "
        f"parameters varied at a fixed draw, which {objective}'s gradient needs. Use "
        "AlphaDivergence() (reparameterised gradient: valid on the guide's extended space), "
        "the host's Trace_ELBO, or a guide without factor sites."
    )


def _is_bool(x) -> bool:
    """``True``, ``np.True_``, a boolean 0-d array or tensor: not numbers here."""
    if isinstance(x, bool):
        return True
    dtype = getattr(x, "dtype", None)
    return dtype is not None and str(dtype).rsplit(".", 1)[-1] in ("bool", "bool_")


def _as_integer(x) -> int | None:
    """``x`` as an ``int`` if it is an integral number (``int``, ``np.int64``, a 0-d integer
    array or tensor, an integral float such as ``8.0``), else ``None``."""
    import operator

    if _is_bool(x) or isinstance(x, str | bytes):
        return None
    try:
        return operator.index(x)
    except TypeError:
        pass
    if getattr(x, "ndim", 0) != 0:
        return None
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else None


def check_num_particles(num_particles: int, minimum: int = 1, name: str = "num_particles") -> int:
    """Validate a particle count, returning it as an ``int``: any integral number (``8``,
    ``np.int64(8)``, a 0-d integer tensor, ``8.0``) ``>= minimum``; booleans are refused.

    >>> import numpy as np
    >>> check_num_particles(np.int64(8)), check_num_particles(8.0)
    (8, 8)
    """
    value = _as_integer(num_particles)
    if value is None or value < minimum:
        why = " (the variance over particles needs at least two)" if minimum == 2 else ""
        raise InvalidArgumentError(
            f"{name} must be an integer >= {minimum}{why}, got {num_particles!r} "
            f"({type(num_particles).__name__}); pass e.g. {name}={max(minimum, 16)}."
        )
    return value


def no_finite_start_error(who: str, sites: list[str]) -> NonFiniteError:
    """The error for a model whose log density is not finite where ``who`` starts: ``sites``
    are the sites whose log density was -inf/NaN at a draw from the prior (may be empty)."""
    where = (
        f"the log density of site(s) {sites} is -inf or NaN at a draw from the prior"
        if sites else "no site's log density is non-finite at a prior draw, but the joint is"
    )
    return NonFiniteError(
        f"{who}: the model's log density is not finite at any starting point tried ({where}). "
        "A factor that is -inf everywhere, observed data outside the likelihood's support or "
        "a constraint no parameter value meets gives this: check those sites' values (e.g. "
        "numpyro.handlers.trace / pyro.poutine.trace of the model and site['fn'].log_prob)."
    )


def check_start_log_p(who: str, finite: Any, sites: Callable[[], list[str]], given: bool) -> None:
    """Refuse initial particles where ``log p(x, theta)`` is -inf or NaN (``finite``: one bool
    per particle): such a particle has no gradient and the first step would be NaN. ``sites``
    is called only on failure (it names the sites that are non-finite at a prior draw);
    ``given``: the particles came from the user's ``init``."""
    import numpy as np

    ok = np.asarray(finite, dtype=bool).reshape(-1)
    n_bad = int((~ok).sum())
    if not n_bad:
        return
    if n_bad == ok.size and not given:
        raise no_finite_start_error(who, sites())
    origin = "given by init" if given else "drawn from the prior"
    raise NonFiniteError(
        f"{who}: log p(x, theta) is -inf or NaN at {n_bad} of {ok.size} initial particles "
        f"({origin}); a particle there has no gradient, so the first step would be NaN. "
        "Start every particle where the model's density is positive: pass init with values "
        "inside that region (check the model's factor sites and truncations)."
    )


def check_positive(value: float, name: str, example: str, allow_inf: bool = False) -> float:
    """Validate a positive real option (a scale, a clip), returning it as a ``float``: ``None``,
    booleans, strings, NaN, ``<= 0`` and (unless ``allow_inf``) ``inf`` are refused, the message
    saying what to pass (``example``, e.g. ``"init_scale=0.1"``).

    >>> check_positive(0.5, "init_scale", "init_scale=0.1")
    0.5
    """
    import math

    try:
        if value is None or _is_bool(value) or isinstance(value, str | bytes):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (v > 0 and (allow_inf or math.isfinite(v))):
        kind = "positive number" if allow_inf else "finite positive number"
        raise InvalidArgumentError(f"{name} must be a {kind}, got {value!r}; pass e.g. {example}.")
    return v


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Validate a finite real alpha (the Renyi order), returning it as a ``float``."""
    import math

    try:
        if _is_bool(alpha) or isinstance(alpha, str | bytes):
            raise TypeError
        value = float(alpha)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"{name} must be a finite real number, got {alpha!r}; e.g. {name}=0.5 "
            "(alpha=0 is IWAE, alpha=1 the ELBO)."
        ) from None
    if not math.isfinite(value):
        raise InvalidArgumentError(
            f"{name} must be finite, got {alpha!r}. For VR-max (alpha -> -inf) use a large "
            "negative value such as -50; alpha=0 is IWAE and alpha=1 the ELBO."
        )
    return value
