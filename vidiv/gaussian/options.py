"""Validated FBGVI options, shared by the Pyro and NumPyro drivers (one set of rules, one set of
error messages)."""

from __future__ import annotations

from typing import Any, NamedTuple

from vidiv.errors import InvalidArgumentError, check_num_particles

from .schedule import check_step_size, resolve_schedule

__all__ = ["FBGVIOptions", "fbgvi_options"]


class FBGVIOptions(NamedTuple):
    step_size: float | None
    num_samples: int
    hessian: str
    variant: str
    schedule: Any
    init_scale: float
    antithetic: bool


def _choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidArgumentError(f"{name} must be one of {choices}, got {value!r}.")
    return value


def fbgvi_options(
    step_size: float | None = None,
    num_samples: int = 1,
    hessian: str = "exact",
    variant: str = "fbgvi",
    schedule: Any = None,
    init_scale: float = 0.1,
    antithetic: bool = False,
) -> FBGVIOptions:
    """Check the drivers' arguments; raise :class:`~vidiv.errors.InvalidArgumentError` with a
    fix-it message on bad input.

    >>> fbgvi_options(num_samples=4, antithetic=True).num_samples
    4
    """
    n = check_num_particles(num_samples, name="num_samples")
    if antithetic and n % 2:
        raise InvalidArgumentError(
            f"antithetic=True pairs each draw ε with −ε, so num_samples must be even, got "
            f"{num_samples}; pass e.g. num_samples={n + 1}."
        )
    return FBGVIOptions(
        check_step_size(step_size),
        n,
        _choice(hessian, "hessian", ("exact", "stein")),
        _choice(variant, "variant", ("fbgvi", "bwgd")),
        resolve_schedule(schedule),
        check_step_size(init_scale, name="init_scale"),
        bool(antithetic),
    )
