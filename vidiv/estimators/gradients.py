r"""Gradient estimators that change *only* the gradient of an objective, not its value.

Every surrogate has the form ``sg(value - carrier) + carrier`` (``sg`` = stop-gradient): its value
is the objective the user sees and its gradient is the gradient of ``carrier``.

* :func:`renyi_dreg_surrogate` -- doubly-reparameterised gradient of the Renyi bound
  (Tucker, Lawson, Gu & Maddison, ICLR 2019, generalised from IWAE to any alpha).
* :func:`score_surrogate` -- the score-function term for guide sites that are not
  reparameterised (discrete sites), with a VIMCO leave-one-out baseline (Mnih & Rezende 2016),
  unbiased for the gradient of the expected K-sample bound.
"""

from __future__ import annotations

import math

from .._backend import Array, namespace, stop_gradient
from ._checks import check_log_weights, check_pair
from ._math import lse, weighted_sum
from .bounds import _renyi

__all__ = ["surrogate", "renyi_dreg_surrogate", "score_surrogate", "leave_one_out_bounds"]


def surrogate(value: Array, carrier: Array) -> Array:
    """``sg(value - carrier) + carrier``: the value of ``value``, the gradient of ``carrier``."""
    return stop_gradient(value - carrier) + carrier


def _vr_weights(log_w: Array, alpha: float, value: Array) -> Array:
    r"""Detached :math:`\hat w = \mathrm{softmax}((1-\alpha)\log w)` over axis 0, with 0 for a
    zero-weight (``-inf``) particle, and 0 everywhere in a batch element whose bound ``value`` is
    not finite (``alpha >= 1`` with a ``-inf`` particle: no gradient step improves ``-inf``)."""
    xp = namespace(log_w)
    lw = stop_gradient(log_w)
    alive = lw > -math.inf
    x = xp.where(alive, (1.0 - alpha) * xp.where(alive, lw, 0.0), -math.inf)
    w_hat = xp.exp(x - lse(x, axis=0, keepdims=True))
    return stop_gradient(xp.where(alive & xp.isfinite(value), w_hat, 0.0))


def renyi_dreg_surrogate(
    log_p: Array, log_q_stopped: Array, alpha: float, log_p_model: Array | None = None
) -> Array:
    r"""Renyi bound with the doubly-reparameterised (DReG) guide gradient.

    Inputs: ``log_p = log p(x, z_s)`` and ``log_q_stopped = log q_{sg(phi)}(z_s)`` -- the guide
    density evaluated with *detached* guide parameters at reparameterised samples ``z_s(phi)``, so
    the guide gradient flows only through the samples. With
    :math:`\hat w = \mathrm{softmax}((1-\alpha)\log w)` the guide gradient is

    .. math:: \sum_s \big[\alpha\,\hat w_s + (1-\alpha)\,\hat w_s^2\big]\,
              \frac{\partial \log w_s}{\partial z_s}\frac{\partial z_s}{\partial\phi},

    which has the expectation of the standard reparameterised VR gradient and, because the score
    term :math:`-\hat w_s\nabla_\phi\log q_\phi(z_s)` is replaced by its reparameterised
    equivalent, much lower variance. ``alpha = 0`` is IWAE-DReG (weights :math:`\hat w^2`),
    ``alpha = 1`` is "sticking the landing".

    If the model has learnable parameters, pass ``log_p_model = log p_theta(x, sg(z_s))`` (the
    same model density with the samples detached) so those parameters keep the standard gradient
    :math:`\sum_s \hat w_s\nabla_\theta\log p_\theta(x, z_s)`.

    Zero weights: a particle with ``log p = -inf`` (a sample outside the model's support) has
    :math:`\hat w_s = 0` and contributes exactly nothing, value or gradient (the sums skip it
    instead of forming :math:`0\cdot(-\infty)`), as in :func:`renyi_bound`: for ``alpha < 1``
    the value is the bound over all S particles and the gradient is the DReG gradient of the
    finite particles alone. For ``alpha >= 1`` such a particle makes the bound ``-inf`` and the
    gradient is zero. NaN / ``+inf`` log weights or all ``-inf`` raise
    :class:`~vidiv.errors.NonFiniteError` (under ``jax.jit``: NaN / ``+-inf`` values).
    """
    check_pair(log_p, log_q_stopped)
    alpha = float(alpha)
    lw = log_p - log_q_stopped
    check_log_weights(lw, "renyi_dreg_surrogate log weights log_p - log_q_stopped")
    value = _renyi(stop_gradient(lw), alpha)
    w_hat = _vr_weights(lw, alpha, value)
    coef = alpha * w_hat + (1.0 - alpha) * w_hat * w_hat
    carrier = weighted_sum(coef, lw)
    if log_p_model is not None:
        check_pair(log_p_model, log_q_stopped)
        carrier = carrier + weighted_sum(w_hat - coef, log_p_model)
    return surrogate(value, carrier)


def leave_one_out_bounds(log_w: Array, alpha: float) -> Array:
    r"""VIMCO baselines: for each particle k the Renyi bound with :math:`\log w_k` replaced by the
    mean of the other particles' log weights. Shape ``(S, *batch)``; needs ``S >= 2``.

    The mean of the others is summed over :math:`j \ne k` directly (not as the total minus
    :math:`\log w_k`), so a ``-inf`` particle gives ``-inf`` means for the others' baselines and
    a finite one for its own (never the NaN of ``-inf - (-inf)``). The baseline of the only particle
    with positive weight is then ``-inf`` (every other weight, and their mean, is 0). The log
    weights are not checked here (:func:`score_surrogate` checks them)."""
    check_pair(log_w, log_w, min_particles=2)
    xp = namespace(log_w)
    S = log_w.shape[0]
    batch_ones = (1,) * (log_w.ndim - 1)
    eye = xp.reshape(xp.eye(S, dtype=xp.bool), (S, S) + batch_ones)
    rows = xp.expand_dims(log_w, axis=1)  # rows[j, k] = log_w[j]
    others = xp.sum(xp.where(eye, 0.0, rows) / (S - 1), axis=0)  # (S, *batch): mean of the rest
    # matrix[j, k] = log_w[j] for j != k, others[k] on the diagonal; particles on axis 0
    matrix = xp.where(eye, xp.expand_dims(others, axis=0), rows)
    return _renyi(matrix, float(alpha))


def score_surrogate(log_w: Array, log_q_score: Array, alpha: float) -> Array:
    r"""Zero-valued term carrying the score-function gradient of the expected K-sample Renyi
    bound for non-reparameterised guide sites:

    .. math:: \sum_k \big(\hat L_\alpha - \hat L_\alpha^{(-k)}\big)\,\nabla_\phi\log q_\phi(z_k),

    where :math:`\hat L^{(-k)}` is the VIMCO leave-one-out baseline (:func:`leave_one_out_bounds`).
    ``log_q_score`` is the log density of the non-reparameterised sites only (samples detached);
    add the result to the surrogate whose pathwise part already differentiates
    ``log w = log p - log q``. With one particle there is no baseline (plain REINFORCE).

    Zero weights (``log w_k = -inf``, a value outside the model's support), for ``alpha < 1``:
    the learning signal of particle k is the finite :math:`\hat L - \hat L^{(-k)} < 0`, which
    lowers :math:`q(z_k)` (the score term is how the guide learns to avoid that value; dropping
    it would bias the gradient); the other particles' baselines treat it as weight 0. A particle
    whose baseline is ``-inf`` (the only one with positive weight) gets the plain REINFORCE
    signal :math:`\hat L`, as with one particle: any baseline that does not depend on
    :math:`z_k` keeps the estimate unbiased. For ``alpha >= 1`` a zero weight makes
    :math:`\hat L = -\infty` and the term carries no gradient. NaN / ``+inf`` log weights or all
    ``-inf`` raise :class:`~vidiv.errors.NonFiniteError` (under ``jax.jit``: zero gradient).
    """
    check_pair(log_w, log_q_score)
    xp = namespace(log_w, log_q_score)
    lw = stop_gradient(log_w)
    check_log_weights(lw, "score_surrogate log weights")
    bound = _renyi(lw, float(alpha))
    if lw.shape[0] >= 2:
        baseline = leave_one_out_bounds(lw, alpha)
        learning_signal = bound - xp.where(xp.isfinite(baseline), baseline, 0.0)
    else:
        learning_signal = xp.broadcast_to(bound, lw.shape)
    learning_signal = stop_gradient(xp.where(xp.isfinite(bound), learning_signal, 0.0))
    carrier = weighted_sum(learning_signal, log_q_score)
    return carrier - stop_gradient(carrier)
