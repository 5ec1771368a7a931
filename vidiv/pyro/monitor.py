"""``vidiv.pyro.fit``: run a Pyro ``SVI`` with a progress bar, a periodic PSIS k-hat and an
optional early stop on a loss plateau.

Every ``monitor_every`` steps it draws ``num_khat_samples`` values from the guide (vectorised,
no gradient), computes the Pareto k-hat of ``log p - log q`` and shows it next to the loss. The
k-hat costs one vectorised model + guide evaluation; set ``num_khat_samples=0`` to switch it off.

Example::

    svi = pyro.infer.SVI(model, guide, pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.999}),
                         loss=pyro.infer.Trace_ELBO())
    result = vidiv.pyro.fit(svi, 2000, x, y, monitor_every=100, early_stop=True)
    result.losses.shape, result.khat[-1]      # (steps,), (step, k-hat)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyro
import torch

from ..diagnostics.monitor import FitResult, as_early_stop, check_fit_args
from ..diagnostics.psis import psis_khat
from ..errors import InvalidArgumentError, NonFiniteError, VidivError
from .results import log_weights

__all__ = ["fit"]


def _khat(svi, num_samples: int, args, kwargs) -> float:
    log_p, log_q = log_weights(svi.model, svi.guide, num_samples, args, kwargs)
    lw = (log_p - log_q).detach().cpu().to(torch.float64).numpy()
    try:
        return psis_khat(lw)
    except VidivError:  # NaN weights or too few usable draws: record NaN, keep training
        return math.nan


def fit(
    svi,
    num_steps: int,
    *args,
    monitor_every: int = 100,
    num_khat_samples: int = 500,
    progress_bar: bool = True,
    early_stop: Any = None,
    **kwargs,
) -> FitResult:
    """Run ``svi.step(*args, **kwargs)`` ``num_steps`` times, monitoring loss and k-hat.

    Parameters
    ----------
    svi : ``pyro.infer.SVI`` (any loss: Trace_ELBO, vidiv objectives, ...).
    num_steps : maximum number of steps.
    monitor_every : steps between k-hat checks (and plateau checks).
    num_khat_samples : guide draws per k-hat (0 = no k-hat).
    progress_bar : show a tqdm bar with the loss and the last k-hat.
    early_stop : ``None``/``False``, ``True`` (tol 1e-4, patience 3, window = monitor_every), a
        dict of :class:`~vidiv.diagnostics.EarlyStop` arguments, or an ``EarlyStop``.

    Returns
    -------
    :class:`~vidiv.diagnostics.FitResult` with ``params`` (constrained param-store values,
    detached), ``losses`` (numpy), ``khat`` ((step, k-hat) rows), ``state``
    (``svi.optim.get_state()``) and ``stopped_early``. A non-finite loss stops training with a
    :class:`~vidiv.errors.NonFiniteError` naming the step.
    """
    if not isinstance(svi, pyro.infer.SVI):
        raise InvalidArgumentError(
            f"fit expects a pyro.infer.SVI, got {type(svi).__name__}; build one with "
            "pyro.infer.SVI(model, guide, optim, loss=...)."
        )
    check_fit_args(num_steps, monitor_every, num_khat_samples)
    stopper = as_early_stop(early_stop, monitor_every)
    losses: list[float] = []
    khats: list[tuple[int, float]] = []
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc="vidiv.pyro.fit", leave=True)
    stopped = False
    khat_now = math.nan
    try:
        for step in range(1, num_steps + 1):
            loss = float(svi.step(*args, **kwargs))
            if not math.isfinite(loss):
                raise NonFiniteError(
                    f"the loss became {loss} at step {step}: lower the learning rate, start the "
                    "guide closer to the data (e.g. init_scale=0.01) or check the model for "
                    "invalid parameter values."
                )
            losses.append(loss)
            check = step % monitor_every == 0 or step == num_steps
            if check and num_khat_samples:
                khat_now = _khat(svi, num_khat_samples, args, kwargs)
                khats.append((step, khat_now))
            if bar is not None:
                bar.update(1)
                if check or step == 1:
                    bar.set_postfix(loss=f"{loss:.4g}", khat=f"{khat_now:.2f}", refresh=False)
            if check and stopper is not None and step % monitor_every == 0:
                if stopper.update(losses[-(stopper.window or monitor_every):]):
                    stopped = step < num_steps
                    break
    finally:
        if bar is not None:
            bar.close()
    params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    return FitResult(
        params=params,
        losses=np.asarray(losses, dtype=float),
        khat=np.asarray(khats, dtype=float).reshape(-1, 2),
        state=svi.optim.get_state(),
        stopped_early=stopped,
    )
