"""``vidiv.pyro.fit``: run a Pyro ``SVI`` with a progress bar, a periodic PSIS k-hat and an
optional early stop on a loss plateau.

Every ``monitor_every`` steps it draws ``num_khat_samples`` values from the guide (vectorised,
no gradient), computes the Pareto k-hat of ``log p - log q`` and shows it next to the loss. The
k-hat costs one vectorised model + guide evaluation; set ``num_khat_samples=0`` to switch it off.
A step that would leave a NaN/inf parameter is undone and training stops with a warning that
names the step (see :func:`fit`).

Example::

    svi = pyro.infer.SVI(model, guide, pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.999}),
                         loss=pyro.infer.Trace_ELBO())
    result = vidiv.pyro.fit(svi, 2000, x, y, monitor_every=100, early_stop=True)
    result.losses.shape, result.khat[-1]      # (steps,), (step, k-hat)
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import numpy as np
import pyro
import torch
from pyro import poutine
from torch.distributions import constraints, transform_to

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


_ADVICE = (
    "Use a smaller or decaying step size (e.g. pyro.optim.ClippedAdam({'lr': 0.01, "
    "'lrd': 0.999, 'clip_norm': 10.0})), start the guide closer to the data (e.g. "
    "init_scale=0.01) or check the model for invalid parameter values."
)

# what torch.distributions / pyro validation say when a parameter or value is out of range
_REJECTED = ("invalid values", "to be within the support", "not positive-definite")


def _torch_optimizer(obj):
    """The ``torch.optim.Optimizer`` inside a Pyro per-parameter optimiser (or a scheduler)."""
    inner = getattr(obj, "optimizer", None)  # lr schedulers wrap their optimiser
    return inner if isinstance(inner, torch.optim.Optimizer) else obj


class _Snapshot:
    """The parameters of one step and their optimiser state, copied before the update.

    A Pyro optimiser keeps one ``torch.optim.Optimizer`` per parameter, whose public
    ``state`` (moment buffers, step counts) and ``param_groups`` (e.g. ClippedAdam's decayed
    ``lr``) the update changes in place. The parameters and the state tensors are copied into
    one flat buffer (one ``torch.cat``; no ``state_dict`` round trip, no ``deepcopy``) and
    written back only by :meth:`restore`. Optimisers this step creates are dropped again on
    :meth:`restore`, so the next step starts them afresh, as if the step had never run."""

    def __init__(self, optim, params):
        self.optim, self.new, self.groups, self.states, self.custom = optim, [], [], [], []
        tensors = [p for p in params]
        for p in params:
            obj = optim.optim_objs.get(p)
            if obj is None:
                self.new.append(p)
                continue
            opt = _torch_optimizer(obj)
            if not isinstance(opt, torch.optim.Optimizer):  # custom: its public state_dict
                self.custom.append((obj, copy.deepcopy(obj.state_dict())))
                continue
            for group in opt.param_groups:  # hyper-parameters: immutable values but tensors
                self.groups.append((group, {n: v.clone() if isinstance(v, torch.Tensor) else v
                                            for n, v in group.items() if n != "params"}))
            for key, state in opt.state.items():
                kept = {}
                for n, v in state.items():
                    if isinstance(v, torch.Tensor):
                        tensors.append(v)
                    else:
                        kept[n] = copy.copy(v)
                self.states.append((opt, key, dict(state), kept))
        self.tensors = tensors
        self.flat = torch.cat([t.detach().reshape(-1).to(tensors[0].dtype) for t in tensors])

    def restore(self) -> None:
        with torch.no_grad():
            offset = 0
            for t in self.tensors:
                n = t.numel()
                t.copy_(self.flat[offset:offset + n].view(t.shape))
                offset += n
        for opt, key, entries, kept in self.states:
            opt.state[key] = {**entries, **kept}
        for group, old in self.groups:
            group.update(old)
        for obj, state in self.custom:
            obj.load_state_dict(state)
        for p in self.new:
            self.optim.optim_objs.pop(p, None)
            self.optim.grad_clip.pop(p, None)


def _finite(tensors) -> torch.Tensor:
    """A 0-d bool tensor: every entry of every tensor is finite (no host sync)."""
    return torch.isfinite(torch.cat([t.detach().reshape(-1) for t in tensors])).all()


class _Constraints:
    """The param store's constraints by name, read through its public ``get_state()`` once
    per new parameter (a constraint never changes after the parameter is created)."""

    def __init__(self):
        self.known: dict = {}

    def checks(self, params: dict) -> list[tuple[str, torch.Tensor]]:
        """``(name, ok)`` for each constrained parameter: its constrained value is finite and
        inside its constraint (e.g. a positive scale has not underflowed to 0); no sync."""
        if any(n not in self.known for n in params):
            self.known = dict(pyro.get_param_store().get_state()["constraints"])
        out = []
        for name, p in params.items():
            c = self.known.get(name, constraints.real)
            if c is constraints.real:  # identity transform: the unconstrained check covers it
                continue
            value = transform_to(c)(p.detach())
            out.append((name, torch.isfinite(value).all() & c.check(value).all()))
        return out


def _guarded_step(svi, args, kwargs, known: _Constraints,
                  first: bool) -> tuple[float, str | None, bool]:
    """``svi.step`` that never leaves a non-finite parameter behind.

    Computes the loss and gradients as ``SVI.step`` does. A non-finite loss or gradient, or a
    distribution rejecting its arguments while the loss is computed, skips the update; an
    update that makes a parameter NaN/inf (unconstrained or constrained) or puts it outside its
    constraint is undone together with its optimiser state. Returns ``(loss, why, updated)``:
    ``why`` is ``None`` when the step was applied, else what went wrong, and ``updated`` says
    whether the failure came from the update (``False``: at the state the step started from).
    At the ``first`` step a distribution's refusal is raised as it is (the model or the data
    is at fault, not the fit).
    """
    capture = poutine.trace(param_only=True)
    try:
        with capture:
            loss = svi.loss_and_grads(svi.model, svi.guide, *args, **kwargs)
    except ValueError as err:
        sites = [s for s in capture.trace.nodes.values() if s["type"] == "param"]
        pyro.infer.util.zero_grads({s["value"].unconstrained() for s in sites})
        if not first and (isinstance(err, NonFiniteError)
                          or any(r in str(err) for r in _REJECTED)):
            first_line = str(err).splitlines()[0] if str(err) else ""
            return math.nan, f"the loss failed: {type(err).__name__}: {first_line}", False
        raise
    params = {n: s["value"].unconstrained() for n, s in capture.trace.nodes.items()
              if s["type"] == "param"}
    value = float(sum(loss) if isinstance(loss, tuple) else loss)
    leaves = set(params.values())
    why = None
    if not math.isfinite(value):
        why = f"the loss is {value}"
    else:
        grads = {n: p.grad for n, p in params.items() if p.grad is not None}
        if grads and not bool(_finite(grads.values())):
            bad = [n for n, g in grads.items() if not bool(_finite([g]))]
            why = f"the gradient of {bad} is not finite (loss {value:.6g})"
    if why is not None or not params:
        pyro.infer.util.zero_grads(leaves)
        return value, why, False
    snapshot = _Snapshot(svi.optim, list(params.values()))
    svi.optim(leaves)
    pyro.infer.util.zero_grads(leaves)
    checks = [("", _finite(params.values()))] + known.checks(params)
    if not bool(torch.stack([ok for _, ok in checks]).all()):  # one host sync per step
        bad = [n for n, p in params.items() if not bool(_finite([p]))]
        bad += [n for n, ok in checks[1:] if not bool(ok) and n not in bad]
        snapshot.restore()
        return value, f"the update made {bad} non-finite or invalid (loss {value:.6g})", True
    return value, None, False


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
    (``svi.optim.get_state()``), ``stopped_early`` and, after a non-finite step,
    ``info["nonfinite_step"]``.

    Each step is guarded: a non-finite loss or gradient, an update that makes a parameter
    NaN/inf or puts it outside its constraint (e.g. a positive scale that underflowed to 0), or
    (after step 1) a distribution rejecting its arguments while the loss is computed, is not
    applied. Training then stops with a ``RuntimeWarning`` naming the step; the param store and
    the optimiser keep the last finite state, that after the previous step (the parameters and
    the optimiser state of that step are restored in place), ``losses`` holds the losses of the
    applied steps and ``info["nonfinite_step"]`` the step that was not applied. A non-finite
    loss or gradient at step 1 raises :class:`~vidiv.errors.NonFiniteError` instead: the
    initial state itself is bad (the data, the model or the initialisation is at fault).

    The guard costs, per step, one flat copy of the step's parameters and their optimiser
    buffers and one host sync for the finiteness and constraint checks (measured on a 2-site
    model on a CPU: +0.5 ms on an 8 ms step with AutoMultivariateNormal, +1.0 ms on 7.4 ms
    with AutoNormal). A loop of your own around ``svi.step`` has no such guard: check
    ``math.isfinite(loss)`` each step.
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
    stopped, nonfinite = False, None
    known = _Constraints()
    khat_now = math.nan
    try:
        for step in range(1, num_steps + 1):
            loss, why, updated = _guarded_step(svi, args, kwargs, known, step == 1)
            if why is not None and step == 1 and not updated:
                raise NonFiniteError(
                    f"vidiv.pyro.fit: at step 1, {why}, at the initial parameters (nothing was "
                    "updated): the initial state is bad. Check the data for NaN/inf, the model "
                    "for invalid parameter values, and the guide's initialisation (e.g. "
                    "init_loc_fn, init_scale)."
                )
            if why is not None:
                nonfinite = step
                warnings.warn(
                    f"vidiv.pyro.fit stopped at step {step} of {num_steps}: {why}. The step was "
                    f"not applied: the param store and the optimiser hold the last finite state "
                    f"(after step {step - 1}) and result.losses the {step - 1} finite losses. "
                    f"{_ADVICE}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
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
        info={} if nonfinite is None else {"nonfinite_step": nonfinite},
    )
