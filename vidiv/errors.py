"""Exceptions raised by vidiv.

Every message names the argument, site or array that was wrong and says what to do about it.
All errors derive from :class:`VidivError`, itself a :class:`ValueError`, so code that already
catches ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "VidivError",
    "InvalidArgumentError",
    "ModelStructureError",
    "NonFiniteError",
    "UnsupportedSupportError",
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


def check_num_particles(num_particles: int, minimum: int = 1, name: str = "num_particles") -> int:
    """Validate a particle count, returning it as an ``int``."""
    if isinstance(num_particles, bool) or not isinstance(num_particles, int | float):
        raise InvalidArgumentError(
            f"{name} must be an integer >= {minimum}, got {num_particles!r} "
            f"({type(num_particles).__name__})."
        )
    if int(num_particles) != num_particles or num_particles < minimum:
        why = " (the variance over particles needs at least two)" if minimum == 2 else ""
        raise InvalidArgumentError(
            f"{name} must be an integer >= {minimum}{why}, got {num_particles!r}; "
            f"pass e.g. {name}={max(minimum, 16)}."
        )
    return int(num_particles)


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Validate a finite real alpha (the Renyi order), returning it as a ``float``."""
    import math

    try:
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
