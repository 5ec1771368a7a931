"""Array-namespace dispatch for the backend-agnostic core.

The core (``vidiv.estimators``, ``gaussian``, ``particles``, ``paths``) is written against the
Python array API standard. :func:`namespace` returns the namespace of the caller's arrays
(numpy, torch or jax.numpy, through ``array-api-compat``); the helpers below add the few
operations the standard lacks (``logsumexp``, ``stop_gradient``, ``softmax``) and dispatch to
each framework's native, autodiff-aware implementation.

No framework is imported unless the caller's array already comes from it: array-api-compat's
``is_torch_array`` / ``is_jax_array`` only look at modules that are already loaded.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat as _compat
import numpy as np

Array = Any

__all__ = [
    "namespace",
    "framework",
    "logsumexp",
    "softmax",
    "stop_gradient",
    "log_num",
    "as_float",
]


def namespace(*arrays: Array):
    """The array namespace shared by ``arrays`` (python scalars are ignored)."""
    arrs = [a for a in arrays if a is not None and not isinstance(a, int | float)]
    if not arrs:
        return _compat.array_namespace(np.asarray(0.0))
    return _compat.array_namespace(*arrs)


def framework(x: Array) -> str:
    """``"torch"``, ``"jax"`` or ``"numpy"`` for an array (jax tracers count as jax)."""
    if _compat.is_torch_array(x):
        return "torch"
    if _compat.is_jax_array(x):
        return "jax"
    return "numpy"


def logsumexp(x: Array, axis: int = 0, keepdims: bool = False) -> Array:
    """``log(sum(exp(x), axis))`` without overflow; all ``-inf`` gives ``-inf``.

    Dispatches to ``torch.logsumexp`` / ``jax.nn.logsumexp`` so gradients are the softmax
    (and finite where at least one entry is finite).
    """
    fw = framework(x)
    if fw == "torch":
        import torch

        return torch.logsumexp(x, dim=axis, keepdim=keepdims)
    if fw == "jax":
        import jax

        return jax.nn.logsumexp(x, axis=axis, keepdims=keepdims)
    from scipy.special import logsumexp as _lse

    x = np.asarray(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _lse(x, axis=axis, keepdims=keepdims)


def softmax(x: Array, axis: int = 0) -> Array:
    """Normalised ``exp(x)`` along ``axis``, computed in log space."""
    fw = framework(x)
    if fw == "torch":
        import torch

        return torch.softmax(x, dim=axis)
    if fw == "jax":
        import jax

        return jax.nn.softmax(x, axis=axis)
    x = np.asarray(x)
    return np.exp(x - logsumexp(x, axis=axis, keepdims=True))


def stop_gradient(x: Array) -> Array:
    """Block gradients (``detach`` in torch, ``lax.stop_gradient`` in jax, identity in numpy)."""
    fw = framework(x)
    if fw == "torch":
        return x.detach()
    if fw == "jax":
        import jax

        return jax.lax.stop_gradient(x)
    return x


def log_num(n: int) -> float:
    """``log n`` as a python float (particle counts are static)."""
    return math.log(n)


def as_float(x: Array) -> float:
    """Convert a 0-d array of any backend to a python float (not for use under jit)."""
    fw = framework(x)
    if fw == "torch":
        return float(x.detach().cpu().item())
    return float(np.asarray(x))
