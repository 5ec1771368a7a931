r"""Euler–Maruyama rollout of a controlled SDE, as a pure step function.

One step (``x`` of shape ``(..., d)``, scalars per step from :class:`~vidiv.paths.Schedule`):

.. math:: X_{k+1} = X_k + (a_k X_k + \sigma_k v_k)\,\Delta t_k + \sigma_k\sqrt{\Delta t_k}\,\xi_k,
          \qquad \xi_k\sim\mathcal N(0,I),

with :math:`v=\mathrm{sg}(u)` for the log-variance estimator (the trajectory carries no gradient:
no backpropagation through the solver) and :math:`v=u` for the path KL (reparameterised through
the whole chain). The adapters call :func:`em_step` inside ``lax.scan`` (NumPyro) or a loop over
time with particles vectorised (Pyro); :func:`rollout` is the same loop for a control given as a
function, used by the tests and by numpy code.

Example
-------
>>> import numpy as np
>>> from vidiv.paths import make_sde, rollout
>>> sde = make_sde("pis"); xi = np.random.default_rng(0).standard_normal((50, 4000, 1))
>>> out = rollout(lambda x, t: 0.0 * x, np.zeros((4000, 1)), xi, sde.schedule(50))
>>> abs(float(out.x.var()) - 1.0) < 0.1
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from .._backend import Array, namespace, stop_gradient
from .rnd import ito_term, running_cost
from .sde import Schedule

__all__ = ["em_step", "rollout", "Rollout"]


class Rollout(NamedTuple):
    """End point ``x`` (``(..., d)``), accumulated ``running`` cost and ``ito`` term (``(...)``)."""

    x: Array
    running: Array
    ito: Array


def em_step(
    x: Array,
    u: Array,
    xi: Array,
    dt: Array | float,
    sigma: Array | float,
    drift: Array | float,
    estimator: str = "lv",
) -> tuple[Array, Array, Array]:
    """One Euler–Maruyama step and its path log-RND increments.

    ``u`` is the control at ``(x, t_k)``, ``xi`` standard normal noise of ``x``'s shape.
    Returns ``(x_next, running_increment, ito_increment)``. For ``"lv"`` the state update uses
    ``sg(u)`` and ``sg(x)``."""
    xp = namespace(x, u, xi)
    sqrt_dt = xp.sqrt(dt) if not isinstance(dt, int | float) else math.sqrt(dt)
    dw = sqrt_dt * xi
    if estimator == "lv":
        v = stop_gradient(u)
        x = stop_gradient(x)
    else:
        v = u
    x_next = x + (drift * x + sigma * v) * dt + sigma * dw
    return x_next, running_cost(u, v, dt, estimator), ito_term(u, dw)


def rollout(
    control: Callable[[Array, float], Array],
    x0: Array,
    xi: Array,
    schedule: Schedule,
    estimator: str = "lv",
) -> Rollout:
    """Run the controlled chain for ``len(schedule.t)`` steps from ``x0`` with noise ``xi`` of shape
    ``(N, *x0.shape)``; ``control(x, t)`` returns ``u`` of ``x``'s shape."""
    xp = namespace(x0)
    x = x0
    running = xp.zeros(x0.shape[:-1], dtype=x0.dtype)
    ito = xp.zeros(x0.shape[:-1], dtype=x0.dtype)
    for k in range(len(schedule.t)):
        u = control(x, float(schedule.t[k]))
        x, r, i = em_step(
            x, u, xi[k], float(schedule.dt[k]), float(schedule.sigma[k]),
            float(schedule.drift[k]), estimator,
        )
        running = running + r
        ito = ito + i
    return Rollout(x, running, ito)
