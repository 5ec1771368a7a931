r"""Forward chi-square variational importance sampling (Li, Wang, Li & Wu, ICLR 2024).

For fixed model parameters, minimising :math:`\chi^2(p(z|x)\,\|\,q)` over the guide is minimising
:math:`V = E_q[w^2]`; the model parameters maximise the IS log marginal likelihood. The two
surrogates below carry exactly those gradients; the adapters sample ``z`` without gradient.

Example
-------
>>> import numpy as np
>>> from vidiv.estimators import vis_guide_surrogate
>>> float(vis_guide_surrogate(np.array([0.0, -1.0]), np.array([-0.5, -0.5])))  # log mean w^2
0.4337...
"""

from __future__ import annotations

from .._backend import Array, log_num, stop_gradient
from ._checks import check_log_weights, check_pair
from ._math import lse

__all__ = ["vis_guide_surrogate", "vis_model_surrogate", "vis_surrogates"]


def vis_guide_surrogate(log_p: Array, log_q: Array) -> Array:
    r"""Guide objective of VIS: value :math:`\log\hat V = \log\frac1S\sum_s w_s^2`.

    The gradient is the score form :math:`-\sum_s \mathrm{softmax}(2\log w)_s\,\nabla\log q(z_s)`
    (``log_p`` is detached here; the caller passes ``z`` detached, so only ``log q`` carries a
    gradient). It is a self-normalised estimate of :math:`\nabla_\phi\log V(\phi) =
    -E_q[w^2\nabla\log q]/E_q[w^2]` itself (for fixed samples it is half the gradient of
    :math:`\log\hat V` through ``log q``, hence the surrogate ``0.5 r + 0.5 sg(r)`` of the reference
    code). Unlike the reparameterised CUBO it cannot collapse the guide.

    Bad input: NaN / ``+inf`` log weights or all ``-inf`` in a batch element raise
    :class:`~vidiv.errors.NonFiniteError`; a ``-inf`` particle has weight 0 (value and gradient).
    Under ``jax.jit``: NaN / ``+-inf`` values there (zero gradient for ``-inf``).
    """
    check_pair(log_p, log_q)
    S = log_p.shape[0]
    log_w = stop_gradient(log_p) - log_q
    check_log_weights(log_w, "vis_guide_surrogate log weights log_p - log_q")
    r = lse(2.0 * log_w, axis=0) - log_num(S)
    return 0.5 * r + 0.5 * stop_gradient(r)


def vis_model_surrogate(log_p: Array, log_q: Array) -> Array:
    r"""Model objective of VIS: value :math:`\log\hat p(x) = \log\frac1S\sum_s w_s` with
    ``log q`` detached, so the gradient is :math:`\sum_s \mathrm{softmax}(\log w)_s\nabla_\theta\log
    p_\theta(x, z_s)` (the IS log-likelihood gradient for the model parameters). Bad input as
    for :func:`vis_guide_surrogate`."""
    check_pair(log_p, log_q)
    S = log_p.shape[0]
    log_w = log_p - stop_gradient(log_q)
    check_log_weights(log_w, "vis_model_surrogate log weights log_p - log_q")
    return lse(log_w, axis=0) - log_num(S)


def vis_surrogates(log_p: Array, log_q: Array, log_q_point: Array | float = 0.0) -> tuple:
    r"""``(model surrogate, guide surrogate)`` of one VIS step, with point-mass guide sites.

    ``log_q_point`` is the part of ``log_q`` that belongs to point estimates (``Delta`` sites whose
    value is a parameter, e.g. ``AutoLaplaceApproximation``'s latent, whose ``log_density`` is the
    :math:`-\log|J|` of the unconstraining map). A point estimate is not a sample: it follows the IS
    log-likelihood of :math:`\log p - \log q_\delta` (MAP with its Jacobian, as ``Trace_ELBO``
    has it), and the score terms of the guide surrogate exclude it. Values are unchanged:
    :math:`\log\hat p(x)` and :math:`\log\hat V`.

    >>> import numpy as np
    >>> m, g = vis_surrogates(np.array([0.0, -1.0]), np.array([-0.5, -0.5]))
    >>> round(float(m), 4), round(float(g), 4)
    (0.1201, 0.4338)
    """
    rest = log_q - log_q_point
    model = vis_model_surrogate(log_p - log_q_point, stop_gradient(rest))
    point_sg = stop_gradient(log_q_point) if hasattr(log_q_point, "shape") else log_q_point
    guide = vis_guide_surrogate(log_p, rest + point_sg)
    return model, guide
