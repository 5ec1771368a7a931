"""Step-size schedules and the default step size for FBGVI / BWGD.

A schedule is a callable ``k ↦ factor`` (k = 0, 1, … the step index) multiplying a base step η₀:
η_k = η₀ · factor(k). It uses arithmetic only, so it is traceable under ``jax.jit``.

* ``"constant"``: factor 1. Deterministic oracles converge linearly at η₀ ≤ 1/λ_max(∇²V); with noisy
  gradients the iterate hovers at an error floor of order η₀ d.
* ``Decay(tau, power)``: factor (1 + k/τ)^(−power). With power = 1 the stochastic error
  decays like 1/k (Robbins–Monro) once η₀·τ·α ≳ 1 for α-strongly log-concave targets.

The default η₀ is ``fraction / λ_max(H)`` for a Hessian (estimate) H at the initial mean: for a
β-smooth target η ≤ 1/β is the regime of the paper's convergence guarantees.

Example::

    >>> import numpy as np
    >>> s = resolve_schedule("decay")
    >>> [round(float(s(k)), 3) for k in (0, 100, 300)]
    [1.0, 0.5, 0.25]
    >>> default_step_size(np.diag([1.0, 4.0]))
    0.125
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidiv.errors import InvalidArgumentError, NonFiniteError

__all__ = [
    "Constant",
    "Decay",
    "resolve_schedule",
    "default_step_size",
    "curvature_capped",
    "check_step_size",
]


@dataclass(frozen=True)
class Constant:
    """factor(k) = 1."""

    def __call__(self, k: Any) -> Any:
        return 1.0 + 0.0 * k


@dataclass(frozen=True)
class Decay:
    """factor(k) = (1 + k/tau)^(−power)."""

    tau: float = 100.0
    power: float = 1.0

    def __post_init__(self):
        if not (np.isfinite(self.tau) and self.tau > 0):
            raise InvalidArgumentError(
                f"Decay(tau=...) must be a positive number, got {self.tau!r}."
            )
        if not (np.isfinite(self.power) and self.power > 0):
            raise InvalidArgumentError(
                f"Decay(power=...) must be a positive number, got {self.power!r}; use power=1."
            )

    def __call__(self, k: Any) -> Any:
        return (1.0 + k / self.tau) ** (-self.power)


def resolve_schedule(schedule: None | str | Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Turn ``None`` / ``"constant"`` / ``"decay"`` / a callable into a factor schedule."""
    if schedule is None or schedule == "constant":
        return Constant()
    if schedule == "decay":
        return Decay()
    if callable(schedule):
        return schedule
    raise InvalidArgumentError(
        f"schedule must be None, 'constant', 'decay', vidiv.gaussian.Decay(tau, power) or a "
        f"callable k -> factor, got {schedule!r}."
    )


def check_step_size(step_size: Any, name: str = "step_size") -> float | None:
    """``None`` (use the default) or a finite positive float; otherwise InvalidArgumentError."""
    if step_size is None:
        return None
    try:
        value = float(step_size)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"{name} must be a positive number or None (curvature-based default), "
            f"got {step_size!r}."
        ) from None
    if not (np.isfinite(value) and value > 0):
        raise InvalidArgumentError(
            f"{name} must be a finite positive number, got {step_size!r}; pass e.g. {name}=0.1 "
            "or leave it None for the default 0.5 / λ_max(∇²V) at the initial point."
        )
    return value


def default_step_size(hess: Any, fraction: float = 0.5, fallback: float = 1e-2) -> float:
    """``fraction / λ_max(sym H)`` (a host float); ``fallback`` if H has no positive eigenvalue.

    Computed once at initialisation, outside any jit, from a Hessian (or Stein estimate) at m₀.
    """
    h = np.asarray(hess.detach().cpu() if hasattr(hess, "detach") else hess, dtype=float)
    if not np.isfinite(h).all():
        raise NonFiniteError(
            "FBGVI: the Hessian of -log p at the starting Gaussian has NaN/inf entries, so no "
            "step size can be derived from it (in float32 a start with a very wide direction, "
            "e.g. a Laplace fit whose Hessian was not positive definite, overflows). Enable "
            'float64 (jax.config.update("jax_enable_x64", True) / '
            "torch.set_default_dtype(torch.float64)), reparameterise the model, or pass "
            "step_size= and init='isotropic'.")
    lam = np.linalg.eigvalsh(0.5 * (h + h.T))
    top = float(lam[-1]) if lam.size else 0.0
    if not np.isfinite(top) or top <= 0:
        return float(fallback)
    return float(fraction / top)


def curvature_capped(step_size: Any, hess: Any, fraction: float = 0.5) -> Any:
    r"""``min(step_size, fraction / λ_max(sym H))`` for the current Hessian estimate ``H``
    (no cap when H has no positive eigenvalue). Backend-agnostic and jit-safe.

    With η ≤ ½/λ_max the forward map ``I − ηH`` keeps every eigenvalue in [½, 1] along positive
    curvature, so a step never overshoots where the posterior is sharper than at the start (e.g.
    a hierarchical scale moving into its funnel). The drivers apply it when no ``step_size`` is
    given; an explicit ``step_size`` is used as is.

    >>> import numpy as np
    >>> float(curvature_capped(1.0, np.diag([4.0, 1.0])))
    0.125
    """
    from .._backend import namespace

    xp = namespace(hess)
    h = 0.5 * (hess + xp.permute_dims(hess, (1, 0)))
    top = xp.linalg.eigvalsh(h)[-1]
    positive = top > 0
    cap = xp.where(positive, fraction / xp.where(positive, top, xp.ones_like(top)), xp.inf)
    return xp.minimum(xp.asarray(step_size, dtype=h.dtype), cap)
