r"""Evidence bounds over per-particle log densities.

Inputs are ``log_p = log p(x, z_s)`` and ``log_q = log q(z_s)`` with the particles on axis 0,
shape ``(S, *batch)``; ``log_w = log_p - log_q``. Everything is computed in log space. Each
function returns an array whose *value* is the estimate and whose *gradient* (when the inputs
carry one, in torch or jax) is the estimator stated in the docstring.

Example
-------
>>> import numpy as np
>>> from vidiv.estimators import renyi_bound
>>> log_w = np.array([-1.0, -2.0, -0.5])
>>> float(renyi_bound(log_w, np.zeros(3), alpha=0.0))   # IWAE: log mean exp(log_w)
-1.0518...
"""

from __future__ import annotations

from .._backend import Array, log_num, logsumexp, namespace
from ._checks import check_pair

__all__ = ["elbo", "log_marginal", "renyi_bound", "cubo"]

# Below this |1 - alpha| the Renyi bound is evaluated by a cancellation-free expansion.
_SMALL_EPS = 1e-3


def elbo(log_p: Array, log_q: Array) -> Array:
    r"""Evidence lower bound :math:`\frac1S\sum_s \log w_s`.

    Gradient: reparameterised (whatever the inputs carry). Shape: ``batch``.
    """
    check_pair(log_p, log_q)
    xp = namespace(log_p, log_q)
    return xp.mean(log_p - log_q, axis=0)


def log_marginal(log_p: Array, log_q: Array) -> Array:
    r"""Importance-sampling estimate of :math:`\log p(x)`:
    :math:`\log \frac1S \sum_s w_s` (the IWAE bound, biased low for finite S).

    Gradient: :math:`\sum_s \bar w_s \nabla \log w_s` with self-normalised weights
    :math:`\bar w = \mathrm{softmax}(\log w)`.
    """
    check_pair(log_p, log_q)
    S = log_p.shape[0]
    return logsumexp(log_p - log_q, axis=0) - log_num(S)


def renyi_bound(log_p: Array, log_q: Array, alpha: float) -> Array:
    r"""Variational Renyi bound (Li & Turner 2016):

    .. math::
        \hat L_\alpha = \frac{1}{1-\alpha}\Big[\log\sum_s e^{(1-\alpha)\log w_s} - \log S\Big].

    ``alpha = 1`` is the ELBO exactly and the function is continuous across it: for
    :math:`|1-\alpha| < 10^{-3}` it is evaluated as
    :math:`\bar{\ell} + \frac{1}{\epsilon}\log(1 + \frac1S\sum_s \mathrm{expm1}(\epsilon c_s))`
    with :math:`\epsilon = 1-\alpha`, :math:`c = \log w - \bar\ell` centred, which has no
    cancellation. ``alpha = 0`` is IWAE (:func:`log_marginal`); ``alpha < 0`` sits on the upper
    side of ``log p(x)`` in expectation over infinitely many particles (``cubo`` is
    ``alpha = 1 - n``).

    Gradient: :math:`\sum_s \mathrm{softmax}((1-\alpha)\log w)_s \nabla\log w_s` (reparameterised
    VR gradient).
    """
    check_pair(log_p, log_q)
    alpha = float(alpha)
    xp = namespace(log_p, log_q)
    log_w = log_p - log_q
    eps = 1.0 - alpha
    if eps == 0.0:
        return xp.mean(log_w, axis=0)
    S = log_w.shape[0]
    if abs(eps) >= _SMALL_EPS:
        return (logsumexp(eps * log_w, axis=0) - log_num(S)) / eps
    # near alpha = 1: centre, then use expm1/log1p where every eps*c is small
    mean = xp.mean(log_w, axis=0)
    z = eps * (log_w - xp.where(xp.isfinite(mean), mean, 0.0))
    # entries with -inf/inf log weights make the centred form undefined; fall back per element
    finite = xp.all(xp.isfinite(z), axis=0)
    small = finite & xp.all(xp.abs(xp.where(xp.isfinite(z), z, 0.0)) < 1.0, axis=0)
    z_safe = xp.clip(xp.where(xp.isfinite(z), z, 0.0), -1.0, 1.0)
    near = mean + xp.log1p(xp.mean(xp.expm1(z_safe), axis=0)) / eps
    far = (logsumexp(eps * log_w, axis=0) - log_num(S)) / eps
    return xp.where(small, near, far)


def cubo(log_p: Array, log_q: Array, n: float = 2.0) -> Array:
    r"""CUBO_n (Dieng et al. 2017): :math:`\frac1n\big[\log\frac1S\sum_s w_s^n\big]`, the
    chi-square upper bound for ``n = 2`` (equal to ``renyi_bound`` at ``alpha = 1 - n``).

    A *value*: its Monte Carlo estimate is biased low, and minimising it with reparameterised
    gradients collapses q onto a point (the estimate then falls far below ``log p(x)``). To
    minimise a chi-square divergence use :func:`vis_guide_surrogate` (score form, detached
    samples), as ``ChiSquaredVIS`` does.
    """
    n = float(n)
    if n < 1.0:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(f"cubo needs n >= 1 (n = 2 is the chi-square bound), got n={n}.")
    return renyi_bound(log_p, log_q, alpha=1.0 - n)
