"""Gaussian variational inference in Bures–Wasserstein space: pure array maths.

Forward-backward Gaussian VI (Diao, Balasubramanian, Chewi, Salim, ICML 2023) and the BWGD baseline,
Stein (Hessian-free) and autodiff-average Hessian estimators, Gaussian KL / entropy closed forms and
step-size schedules. Arrays in, arrays out (numpy, torch, jax); the adapters ``vidiv.pyro.FBGVI``
and ``vidiv.numpyro.FBGVI`` draw the samples and differentiate the model's potential.
"""

from vidiv.gaussian.hessian import mean_gradient, mean_hessian, stein_hessian
from vidiv.gaussian.kl import free_energy, gaussian_entropy, gaussian_kl, logdet_spd
from vidiv.gaussian.schedule import (
    Constant,
    Decay,
    check_step_size,
    curvature_capped,
    default_step_size,
    resolve_schedule,
)
from vidiv.gaussian.steps import (
    backward_eigenvalues,
    backward_step,
    bwgd_step,
    fbgvi_step,
    forward_step,
    symmetrize,
    whitened_step,
)

__all__ = [
    "Constant",
    "Decay",
    "backward_eigenvalues",
    "backward_step",
    "bwgd_step",
    "check_step_size",
    "default_step_size",
    "curvature_capped",
    "fbgvi_step",
    "forward_step",
    "free_energy",
    "gaussian_entropy",
    "gaussian_kl",
    "logdet_spd",
    "mean_gradient",
    "mean_hessian",
    "resolve_schedule",
    "stein_hessian",
    "symmetrize",
    "whitened_step",
]
