r"""The learned drift :math:`u_\theta(x,t)` as backend-agnostic array code.

Both adapters evaluate the *same* function on their own arrays (torch parameters in Pyro,
``numpyro.param`` arrays in NumPyro), which is what makes the Pyro/NumPyro conformance exact:

.. math:: u_\theta(x,t) = f_\theta\big(x, e(t)\big) + g_\theta\big(e(t)\big)\odot
          \mathrm{clip}\big(\nabla\log\rho(x), -c, c\big),

``f`` an MLP on the state and the time features
:math:`e(t)=(t/T, \sin(\pi 2^j t/T), \cos(\pi 2^j t/T))_{j<J}`, ``g`` a one-hidden-layer MLP of
time only (the "score" parameterisation of PIS, Zhang & Chen 2022, also used by sde_sampler with
``clip_score=10``; without a score the second term is dropped). Activations are SiLU
(:math:`x\,\mathrm{sigmoid}(x)`, identical in torch and jax). Weights are stored ``(in, out)``.
The last layer of each network starts at zero, so the untrained guide is the reference SDE.

Example
-------
>>> import numpy as np
>>> shapes = mlp_shapes(3, (4,), 2)
>>> params = [np.zeros(s) for s in shapes]
>>> mlp_apply(params, np.ones((5, 3))).shape
(5, 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .._backend import Array, namespace
from ..errors import InvalidArgumentError

__all__ = [
    "check_hidden",
    "time_features",
    "mlp_shapes",
    "mlp_apply",
    "control_value",
    "NUM_FREQ",
    "feature_dim",
]

NUM_FREQ = 4


def check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    """Validate the hidden layer widths of the drift network (a non-empty sequence of ints >= 1)."""
    try:
        out = tuple(int(h) for h in hidden)
        ok = bool(out) and all(h >= 1 and h == h0 for h, h0 in zip(out, hidden, strict=True))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidArgumentError(
            f"hidden must be a non-empty sequence of positive integers, got {hidden!r}; "
            "e.g. hidden=(64, 64)."
        )
    return out


def feature_dim(num_freq: int = NUM_FREQ) -> int:
    """Length of :func:`time_features`."""
    return 1 + 2 * num_freq


def time_features(t: Array, T: float, num_freq: int = NUM_FREQ) -> Array:
    """Time embedding of shape ``(*t.shape, 1 + 2*num_freq)``."""
    xp = namespace(t)
    s = t / T
    feats = [s]
    for j in range(num_freq):
        w = math.pi * (2.0**j)
        feats += [xp.sin(w * s), xp.cos(w * s)]
    return xp.stack(feats, axis=-1)


def mlp_shapes(in_dim: int, hidden: Sequence[int], out_dim: int) -> list[tuple[int, ...]]:
    """``[W0, b0, W1, b1, ...]`` shapes, weights ``(in, out)``."""
    dims = [int(in_dim), *(int(h) for h in hidden), int(out_dim)]
    shapes: list[tuple[int, ...]] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        shapes += [(a, b), (b,)]
    return shapes


def _silu(h: Array, xp) -> Array:
    return h / (1.0 + xp.exp(-h))


def mlp_apply(params: Sequence[Array], h: Array) -> Array:
    """SiLU MLP: ``params = [W0, b0, ..., WL, bL]``, no activation after the last layer."""
    xp = namespace(h, params[0])
    n = len(params) // 2
    for i in range(n):
        h = xp.matmul(h, params[2 * i]) + params[2 * i + 1]
        if i < n - 1:
            h = _silu(h, xp)
    return h


def control_value(
    net_params: Sequence[Array],
    coef_params: Sequence[Array] | None,
    x: Array,
    t_feat: Array,
    score: Array | None = None,
    clip: float = 10.0,
) -> Array:
    """:math:`u(x,t)` for ``x`` of shape ``(B, d)`` and ``t_feat`` of shape ``(E,)``.

    Non-finite entries of ``x`` and ``score`` (a diverged trajectory) are replaced by 0 *before*
    the network: the trajectory itself stays non-finite, so the log-variance filter drops it, and
    its zero loss weight cannot become ``0 * inf = NaN`` in the weights' gradient."""
    xp = namespace(x)
    x = xp.where(xp.isfinite(x), x, xp.zeros_like(x))
    if score is not None:
        score = xp.where(xp.isfinite(score), score, xp.zeros_like(score))
    tf = xp.broadcast_to(t_feat, (*x.shape[:-1], t_feat.shape[-1]))
    u = mlp_apply(net_params, xp.concat([x, tf], axis=-1))
    if score is not None and coef_params is not None:
        g = mlp_apply(coef_params, t_feat)
        u = u + g * xp.clip(score, -clip, clip)
    return u
