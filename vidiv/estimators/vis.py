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

from .._backend import Array, log_num, logsumexp, stop_gradient
from ._checks import check_pair

__all__ = ["vis_guide_surrogate", "vis_model_surrogate"]


def vis_guide_surrogate(log_p: Array, log_q: Array) -> Array:
    r"""Guide objective of VIS: value :math:`\log\hat V = \log\frac1S\sum_s w_s^2`.

    The gradient is the score form :math:`-\sum_s \mathrm{softmax}(2\log w)_s\,\nabla\log q(z_s)`
    (``log_p`` is detached here; the caller passes ``z`` detached, so only ``log q`` carries a
    gradient). It is a self-normalised estimate of :math:`\nabla_\phi\log V(\phi) =
    -E_q[w^2\nabla\log q]/E_q[w^2]` itself (for fixed samples it is half the gradient of
    :math:`\log\hat V` through ``log q``, hence the surrogate ``0.5 r + 0.5 sg(r)`` of the reference
    code). Unlike the reparameterised CUBO it cannot collapse the guide.
    """
    check_pair(log_p, log_q)
    S = log_p.shape[0]
    r = logsumexp(2.0 * (stop_gradient(log_p) - log_q), axis=0) - log_num(S)
    return 0.5 * r + 0.5 * stop_gradient(r)


def vis_model_surrogate(log_p: Array, log_q: Array) -> Array:
    r"""Model objective of VIS: value :math:`\log\hat p(x) = \log\frac1S\sum_s w_s` with
    ``log q`` detached, so the gradient is :math:`\sum_s \mathrm{softmax}(\log w)_s\nabla_\theta\log
    p_\theta(x, z_s)` (the IS log-likelihood gradient for the model parameters)."""
    check_pair(log_p, log_q)
    S = log_p.shape[0]
    return logsumexp(log_p - stop_gradient(log_q), axis=0) - log_num(S)
