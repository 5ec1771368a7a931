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
>>> round(float(renyi_bound(log_w, np.zeros(3), alpha=0.0)), 4)  # IWAE: log mean exp(log_w)
-0.9945
"""

from __future__ import annotations

from .._backend import Array, log_num, namespace
from ._checks import check_log_weights, check_pair
from ._math import lse, mean, mean_log_w, power_mean

__all__ = ["elbo", "log_marginal", "renyi_bound", "cubo"]

# Below this |1 - alpha| the Renyi bound is evaluated by a cancellation-free expansion.
_SMALL_EPS = 1e-3


def _log_weights(log_p: Array, log_q: Array, who: str) -> Array:
    """``log_p - log_q`` after the shape and value checks every bound shares."""
    check_pair(log_p, log_q)
    log_w = log_p - log_q
    check_log_weights(log_w, f"{who} log weights log_p - log_q")
    return log_w


def elbo(log_p: Array, log_q: Array) -> Array:
    r"""Evidence lower bound :math:`\frac1S\sum_s \log w_s`.

    Gradient: reparameterised (whatever the inputs carry). Shape: ``batch``.

    Bad input: NaN or ``+inf`` log weights, or a batch element whose log weights are all
    ``-inf``, raise :class:`~vidiv.errors.NonFiniteError`. A batch element with *some*
    ``-inf`` particles is ``-inf`` (the mean of a ``-inf``), with a zero gradient: no step
    improves it. Under ``jax.jit`` nothing is raised: those elements are ``-inf`` (zero gradient)
    or NaN, never finite.
    """
    return mean_log_w(_log_weights(log_p, log_q, "elbo"))


def log_marginal(log_p: Array, log_q: Array) -> Array:
    r"""Importance-sampling estimate of :math:`\log p(x)`:
    :math:`\log \frac1S \sum_s w_s` (the IWAE bound, biased low for finite S).

    Gradient: :math:`\sum_s \bar w_s \nabla \log w_s` with self-normalised weights
    :math:`\bar w = \mathrm{softmax}(\log w)`.

    Bad input: NaN / ``+inf`` log weights, or all ``-inf`` in a batch element, raise
    :class:`~vidiv.errors.NonFiniteError`; a ``-inf`` particle otherwise has weight 0 (value and
    gradient). Under ``jax.jit``: NaN / ``+inf`` / ``-inf`` (zero gradient) there instead.
    """
    log_w = _log_weights(log_p, log_q, "log_marginal")
    return lse(log_w, axis=0) - log_num(log_w.shape[0])


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

    Otherwise the power mean is evaluated with its dominant log weight
    :math:`r = \max_s\log w_s` (:math:`\epsilon > 0`; the minimum for :math:`\epsilon < 0`)
    shifted out, :math:`r + \frac1\epsilon[\log\sum_s e^{\epsilon(\log w_s - r)} - \log S]`,
    so the value is finite wherever the bound is: float32 ``log w = (3e38, -3e38)`` at
    ``alpha = -1`` gives ``3e38`` with gradient ``(1, 0)`` (``(1-alpha) * 3e38`` itself
    overflows).

    Gradient: :math:`\sum_s \mathrm{softmax}((1-\alpha)\log w)_s \nabla\log w_s` (reparameterised
    VR gradient).

    Bad input: NaN / ``+inf`` log weights, or all ``-inf`` in a batch element, raise
    :class:`~vidiv.errors.NonFiniteError`. A ``-inf`` particle otherwise has weight 0 for
    ``alpha < 1`` (finite value, zero gradient for that particle) and makes the bound ``-inf``
    for ``alpha >= 1`` (:math:`w^{1-\alpha} = \infty`), with a zero gradient. Under ``jax.jit``
    nothing is raised and those elements are NaN or ``+-inf``, never finite.
    """
    return _renyi(_log_weights(log_p, log_q, "renyi_bound"), float(alpha))


def _renyi(log_w: Array, alpha: float) -> Array:
    """:func:`renyi_bound` of checked log weights ``log_w`` (``alpha`` a float)."""
    xp = namespace(log_w)
    eps = 1.0 - alpha
    if eps == 0.0:
        return mean_log_w(log_w)
    far = power_mean(log_w, eps)
    if abs(eps) >= _SMALL_EPS:
        return far
    # near alpha = 1: centre, then use expm1/log1p where every eps*c is small
    centre = mean(log_w, axis=0)
    z = eps * (log_w - xp.where(xp.isfinite(centre), centre, 0.0))
    # entries with -inf/inf log weights make the centred form undefined; fall back per element
    finite = xp.all(xp.isfinite(z), axis=0)
    small = finite & xp.all(xp.abs(xp.where(xp.isfinite(z), z, 0.0)) < 1.0, axis=0)
    z_safe = xp.clip(xp.where(xp.isfinite(z), z, 0.0), -1.0, 1.0)
    centre = xp.where(small, centre, 0.0)
    near = centre + xp.log1p(xp.mean(xp.expm1(z_safe), axis=0)) / eps
    return xp.where(small, near, far)


def cubo(log_p: Array, log_q: Array, n: float = 2.0) -> Array:
    r"""CUBO_n (Dieng et al. 2017): :math:`\frac1n\big[\log\frac1S\sum_s w_s^n\big]`, the
    chi-square upper bound for ``n = 2`` (equal to ``renyi_bound`` at ``alpha = 1 - n``).

    A *value*: its Monte Carlo estimate is biased low, and minimising it with reparameterised
    gradients collapses q onto a point (the estimate then falls far below ``log p(x)``). To
    minimise a chi-square divergence use :func:`vis_guide_surrogate` (score form, detached
    samples), as ``ChiSquaredVIS`` does.

    Computed with the largest log weight shifted out (see :func:`renyi_bound`): finite with a
    finite gradient wherever the bound is finite, e.g. float32 ``log w = (3e38, -3e38)`` gives
    ``3e38`` (``2 * 3e38`` overflows). Bad input as for :func:`renyi_bound` with ``alpha < 1``:
    NaN / ``+inf`` / all ``-inf`` raise :class:`~vidiv.errors.NonFiniteError`, a ``-inf``
    particle has weight 0.
    """
    n = float(n)
    if n < 1.0:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(f"cubo needs n >= 1 (n = 2 is the chi-square bound), got n={n}.")
    return _renyi(_log_weights(log_p, log_q, "cubo"), 1.0 - n)
