"""Backend-free pieces of the training monitor used by ``vidiv.pyro.fit`` and
``vidiv.numpyro.fit``: the result record and the plateau rule for early stopping.

Plateau rule: at every check (each ``monitor_every`` steps) take the mean loss over the last
``window`` steps; if its relative change since the previous check,
``|m_t - m_{t-1}| / max(|m_{t-1}|, 1e-12)``, is below ``tol`` for ``patience`` consecutive
checks, training stops.

Example
-------
>>> stop = EarlyStop(tol=1e-3, patience=2, window=10)
>>> [stop.update([5.0] * 10) for _ in range(3)]
[False, False, True]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["FitResult", "EarlyStop", "as_early_stop"]


@dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes
    ----------
    params : dict name -> constrained parameter value (framework arrays)
    losses : numpy array (num_steps_run,), the loss at every step
    khat : numpy array (n_checks, 2) of (step, k-hat) pairs (step = steps done when measured)
    state : the host's optimiser state (Pyro: ``svi.optim.get_state()``; NumPyro: ``SVIState``)
    stopped_early : whether the plateau rule ended training before ``num_steps``
    info : extra facts (e.g. ``num_compilations`` of the NumPyro chunk)
    """

    params: dict
    losses: np.ndarray
    khat: np.ndarray
    state: Any
    stopped_early: bool = False
    info: dict = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(self.losses.shape[0])


@dataclass
class EarlyStop:
    r"""Stop when the ``window``-step moving-average loss changes by less than ``tol``
    (relative) for ``patience`` consecutive checks. ``window=None`` uses ``monitor_every``.

    ``noise_aware=True`` also counts a check as flat when the average fell by less than two
    standard errors of the difference of the two window means,
    :math:`\bar\ell_{k-1} - \bar\ell_k < 2\sqrt{s_{k-1}^2/n + s_k^2/n}` (a stochastic loss
    whose decrease is lost in its own noise: a relative ``tol`` alone never fires on it).

    >>> stop = EarlyStop(patience=2, window=50, noise_aware=True)
    >>> noise = np.random.default_rng(0).normal(size=200)
    >>> [stop.update(5.0 + noise[: 50 * (k + 1)]) for k in range(4)]
    [False, False, True, True]
    """

    tol: float = 1e-4
    patience: int = 3
    window: int | None = None
    noise_aware: bool = False
    _last: float | None = field(default=None, init=False, repr=False)
    _last_se: float = field(default=0.0, init=False, repr=False)
    _count: int = field(default=0, init=False, repr=False)

    def __post_init__(self):
        if not (self.tol > 0 and np.isfinite(self.tol)):
            raise InvalidArgumentError(f"early_stop tol must be a positive number, got {self.tol}.")
        if int(self.patience) != self.patience or self.patience < 1:
            raise InvalidArgumentError(
                f"early_stop patience must be an integer >= 1, got {self.patience}."
            )
        if self.window is not None and (int(self.window) != self.window or self.window < 1):
            raise InvalidArgumentError(
                f"early_stop window must be an integer >= 1 or None, got {self.window}."
            )

    def reset(self) -> None:
        self._last, self._count, self._last_se = None, 0, 0.0

    def update(self, recent_losses) -> bool:
        """Feed the losses seen so far (at least the last ``window``); True = stop now."""
        losses = np.asarray(recent_losses, dtype=float).reshape(-1)
        window = self.window or losses.shape[0]
        tail = losses[-window:]
        tail = tail[np.isfinite(tail)]
        if tail.size == 0:
            return False
        avg = float(tail.mean())
        se = float(tail.std(ddof=1) / np.sqrt(tail.size)) if tail.size > 1 else 0.0
        if self._last is not None:
            rel = abs(avg - self._last) / max(abs(self._last), 1e-12)
            flat = rel < self.tol
            if self.noise_aware:
                flat = flat or self._last - avg < 2.0 * np.hypot(se, self._last_se)
            self._count = self._count + 1 if flat else 0
        self._last, self._last_se = avg, se
        return self._count >= self.patience


def as_early_stop(early_stop: Any, monitor_every: int) -> EarlyStop | None:
    """``None``/``False`` -> no early stop; ``True`` -> defaults; dict -> ``EarlyStop(**dict)``."""
    if early_stop is None or early_stop is False:
        return None
    if early_stop is True:
        stop = EarlyStop(window=monitor_every)
    elif isinstance(early_stop, EarlyStop):
        stop = EarlyStop(early_stop.tol, early_stop.patience, early_stop.window or monitor_every,
                         early_stop.noise_aware)
    elif isinstance(early_stop, dict):
        kw = dict(early_stop)
        kw.setdefault("window", monitor_every)
        stop = EarlyStop(**kw)
    else:
        raise InvalidArgumentError(
            "early_stop must be None, True, a dict like {'tol': 1e-4, 'patience': 3} or an "
            f"EarlyStop, got {early_stop!r}."
        )
    return stop


def check_fit_args(num_steps: int, monitor_every: int, num_khat_samples: int) -> None:
    for name, value, lo in (
        ("num_steps", num_steps, 1),
        ("monitor_every", monitor_every, 1),
        ("num_khat_samples", num_khat_samples, 0),
    ):
        if isinstance(value, bool) or int(value) != value or value < lo:
            raise InvalidArgumentError(f"{name} must be an integer >= {lo}, got {value!r}.")
    if 0 < num_khat_samples < 10:
        raise InvalidArgumentError(
            f"num_khat_samples={num_khat_samples} is too few for a Pareto k-hat (needs >= 10, "
            "a few hundred for a useful value); pass e.g. 500, or 0 to switch the monitor off."
        )
