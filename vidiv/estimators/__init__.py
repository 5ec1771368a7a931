r"""Backend-agnostic estimators over per-particle log densities.

Pure functions of arrays ``log_p``, ``log_q`` of shape ``(S, *batch)`` (particles on axis 0); they
accept numpy, torch and jax arrays (jax tracers included) and draw no random numbers. Each returns
a value whose gradient, where the inputs carry one, is the estimator named in its docstring.

============================  ==================================================================
``elbo``                      mean log w
``log_marginal``              log mean w (IWAE / IS estimate of log p(x))
``renyi_bound``               VR bound, any finite alpha, exact and continuous at alpha = 1
``cubo``                      chi-square upper bound (value; do not minimise it by reparam.)
``vis_guide_surrogate``       log V-hat with the forward chi-square score gradient
``vis_model_surrogate``       IS log-likelihood with log q detached (model parameters)
``log_variance``              VarGrad log-variance loss
``renyi_dreg_surrogate``      Renyi bound with the DReG guide gradient
``score_surrogate``           VIMCO score term for non-reparameterised sites
``weights``                   ``normalized``, ``is_ess``, ``log_z``
============================  ==================================================================
"""

from . import weights
from ._checks import check_log_weights
from .bounds import cubo, elbo, log_marginal, renyi_bound
from .gradients import leave_one_out_bounds, renyi_dreg_surrogate, score_surrogate, surrogate
from .variance import log_variance
from .vis import vis_guide_surrogate, vis_model_surrogate, vis_surrogates

__all__ = [
    "elbo",
    "log_marginal",
    "renyi_bound",
    "cubo",
    "vis_guide_surrogate",
    "vis_surrogates",
    "vis_model_surrogate",
    "log_variance",
    "renyi_dreg_surrogate",
    "score_surrogate",
    "leave_one_out_bounds",
    "surrogate",
    "weights",
    "check_log_weights",
]
