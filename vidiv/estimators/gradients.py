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

from .._backend import Array, namespace, softmax, stop_gradient
from ._checks import check_pair
from .bounds import renyi_bound

__all__ = ["surrogate", "renyi_dreg_surrogate", "score_surrogate", "leave_one_out_bounds"]


def surrogate(value: Array, carrier: Array) -> Array:
    """``sg(value - carrier) + carrier``: the value of ``value``, the gradient of ``carrier``."""
    return stop_gradient(value - carrier) + carrier


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
    """
    check_pair(log_p, log_q_stopped)
    alpha = float(alpha)
    lw = log_p - log_q_stopped
    value = renyi_bound(stop_gradient(log_p), stop_gradient(log_q_stopped), alpha)
    w_hat = stop_gradient(softmax((1.0 - alpha) * stop_gradient(lw), axis=0))
    coef = alpha * w_hat + (1.0 - alpha) * w_hat * w_hat
    xp = namespace(log_p, log_q_stopped)
    carrier = xp.sum(coef * lw, axis=0)
    if log_p_model is not None:
        check_pair(log_p_model, log_q_stopped)
        carrier = carrier + xp.sum((w_hat - coef) * log_p_model, axis=0)
    return surrogate(value, carrier)


def leave_one_out_bounds(log_w: Array, alpha: float) -> Array:
    r"""VIMCO baselines: for each particle k the Renyi bound with :math:`\log w_k` replaced by the
    mean of the other particles' log weights. Shape ``(S, *batch)``; needs ``S >= 2``."""
    xp = namespace(log_w)
    S = log_w.shape[0]
    others = (xp.sum(log_w, axis=0) - log_w) / (S - 1)  # (S, *batch): mean of the rest, per k
    batch_ones = (1,) * (log_w.ndim - 1)
    eye = xp.reshape(xp.eye(S, dtype=xp.bool), (S, S) + batch_ones)
    # matrix[j, k] = log_w[j] for j != k, others[k] on the diagonal; particles on axis 0
    matrix = xp.where(eye, xp.expand_dims(others, axis=0), xp.expand_dims(log_w, axis=1))
    return renyi_bound(matrix, xp.zeros_like(matrix), alpha)


def score_surrogate(log_w: Array, log_q_score: Array, alpha: float) -> Array:
    r"""Zero-valued term carrying the score-function gradient of the expected K-sample Renyi
    bound for non-reparameterised guide sites:

    .. math:: \sum_k \big(\hat L_\alpha - \hat L_\alpha^{(-k)}\big)\,\nabla_\phi\log q_\phi(z_k),

    where :math:`\hat L^{(-k)}` is the VIMCO leave-one-out baseline (:func:`leave_one_out_bounds`).
    ``log_q_score`` is the log density of the non-reparameterised sites only (samples detached);
    add the result to the surrogate whose pathwise part already differentiates
    ``log w = log p - log q``. With one particle there is no baseline (plain REINFORCE).
    """
    check_pair(log_w, log_q_score)
    xp = namespace(log_w, log_q_score)
    lw = stop_gradient(log_w)
    bound = renyi_bound(lw, xp.zeros_like(lw), alpha)
    if lw.shape[0] >= 2:
        learning_signal = bound - leave_one_out_bounds(lw, alpha)
    else:
        learning_signal = xp.broadcast_to(bound, lw.shape)
    carrier = xp.sum(stop_gradient(learning_signal) * log_q_score, axis=0)
    return carrier - stop_gradient(carrier)
