r"""Path-space core of the diffusion guides: reference SDEs, Euler–Maruyama steps, the path
log-RND in its log-variance and KL forms, trajectory filtering and benchmark targets.

Pure array code (numpy, torch or jax through ``vidiv._backend``); no random numbers, no autodiff.
The adapters ``vidiv.pyro.DiffusionGuide`` / ``vidiv.numpyro.DiffusionGuide`` own the noise,
the network parameters and the gradients. Method: Richter & Berner, "Improved sampling via learned
diffusions", ICLR 2024; notation in ``vidiv.paths.rnd``.
"""

from . import targets
from .control import check_hidden, control_value, feature_dim, mlp_apply, mlp_shapes, time_features
from .filter import (
    MAX_RND,
    PathLoss,
    check_max_rnd,
    check_trajectories,
    kept_mask,
    path_log_variance,
)
from .modes import check_estimator, estimator_scope, resolve_estimator
from .options import GuideOptions, check_continuous_latents, guide_options
from .rnd import ito_term, log_rnd, path_log_q, running_cost
from .rollout import Rollout, em_step, rollout
from .sde import PIS, VP, ReferenceSDE, Schedule, check_num_steps, make_sde

__all__ = [
    "ReferenceSDE",
    "PIS",
    "VP",
    "Schedule",
    "make_sde",
    "check_num_steps",
    "em_step",
    "rollout",
    "Rollout",
    "running_cost",
    "ito_term",
    "path_log_q",
    "log_rnd",
    "time_features",
    "check_hidden",
    "mlp_shapes",
    "mlp_apply",
    "control_value",
    "feature_dim",
    "kept_mask",
    "path_log_variance",
    "check_trajectories",
    "check_max_rnd",
    "PathLoss",
    "MAX_RND",
    "estimator_scope",
    "resolve_estimator",
    "check_estimator",
    "targets",
    "guide_options",
    "check_continuous_latents",
    "GuideOptions",
]
