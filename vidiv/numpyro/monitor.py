"""``vidiv.numpyro.fit``: run a NumPyro ``SVI`` in jitted chunks with a progress bar, a periodic
PSIS k-hat and an optional early stop on a loss plateau.

The steps between two checks run as one ``jax.lax.scan`` over ``svi.update`` inside ``jax.jit``
(compiled once: the last, shorter chunk reuses the same program with the surplus steps switched
off by ``lax.cond``). Between chunks the host draws ``num_khat_samples`` values from the guide
(one more jitted, vmapped function), computes the Pareto k-hat and updates the bar. A step whose
loss, optimiser state or constrained parameters are non-finite is not applied (the state stays
at the last finite one); training then stops with a ``RuntimeWarning`` that names the step.

NumPyro's own loop does not do this: ``SVI.run(rng_key, n, ...)`` with a large step size can end
with NaN parameters and a NaN loss trace and no message. Outside ``fit``, pass
``SVI.run(..., stable_update=True)`` (skips steps whose loss or gradient is not finite) or use
``svi.stable_update`` in a hand-written loop, and check ``jnp.isfinite`` on the losses.

Example::

    svi = SVI(model, guide, numpyro.optim.Adam(lambda i: 0.05 * 0.999**i), Trace_ELBO())
    result = vidiv.numpyro.fit(svi, random.PRNGKey(0), 2000, x, y=y)
    result.params, result.losses, result.khat
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer import SVI

from ..diagnostics.monitor import FitResult, as_early_stop, check_fit_args
from ..diagnostics.psis import psis_khat
from ..errors import InvalidArgumentError, NonFiniteError, VidivError
from ._host import check_rng_key
from ._traces import check_observed_sites, naming_invalid_start
from .results import make_log_weights_fn

__all__ = ["fit"]


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.result_type(x), jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def fit(
    svi: SVI,
    rng_key,
    num_steps: int,
    *args,
    monitor_every: int = 100,
    num_khat_samples: int = 500,
    progress_bar: bool = True,
    early_stop: Any = None,
    init_state=None,
    **kwargs,
) -> FitResult:
    """Run ``svi`` for up to ``num_steps`` steps from ``svi.init(rng_key, *args, **kwargs)`` (or
    ``init_state``), checking the loss and the k-hat every ``monitor_every`` steps.

    Returns a :class:`~vidiv.diagnostics.FitResult`: ``params`` (``svi.get_params(state)``),
    ``losses`` (numpy, one per step run), ``khat`` ((step, k-hat) rows), ``state`` (the final
    ``SVIState``), ``stopped_early``, and ``info["num_compilations"]`` (1 for the training
    chunk) and, after a non-finite step, ``info["nonfinite_step"]`` (1-based: the step that was
    not applied; ``losses`` then has ``nonfinite_step - 1`` entries and ``params``/``state``
    are those after step ``nonfinite_step - 1``, with a ``RuntimeWarning``). Host loops need
    ``SVI.run(..., stable_update=True)`` for the same protection.
    ``early_stop``: as in :func:`vidiv.pyro.fit`.
    """
    if not isinstance(svi, SVI):
        raise InvalidArgumentError(
            f"fit expects a numpyro.infer.SVI, got {type(svi).__name__}; build one with "
            "numpyro.infer.SVI(model, guide, optim, loss=...)."
        )
    check_fit_args(num_steps, monitor_every, num_khat_samples)
    stopper = as_early_stop(early_stop, monitor_every)
    if init_state is None:
        check_rng_key(rng_key, "fit")
        # NaN / +-inf data: name the site before the guide's initialisation fails on it with
        # the host's "Cannot find valid initial parameters"
        try:
            with handlers.block():
                model_trace = handlers.trace(handlers.seed(svi.model, rng_key)).get_trace(
                    *args, **{**svi.static_kwargs, **kwargs}
                )
        except Exception:  # noqa: BLE001 - svi.init below reports what the model needs
            model_trace = {}
        check_observed_sites(model_trace, "fit")
    if init_state is None:
        with naming_invalid_start("fit", svi.model, args, {**svi.static_kwargs, **kwargs}):
            state = svi.init(rng_key, *args, **kwargs)
    else:
        state = init_state
    all_kwargs = {**svi.static_kwargs, **kwargs}
    counter = {"n": 0}
    loss_dtype = jax.eval_shape(lambda s: svi.update(s, *args, **kwargs), state)[1].dtype

    def chunk(st, active):
        counter["n"] += 1  # runs only while tracing: counts compilations

        def body(carry, on):
            def run(c):
                s, _ = c
                new, loss = svi.update(s, *args, **kwargs)
                ok = (jnp.isfinite(loss) & _all_finite(new.optim_state)
                      & _all_finite(svi.get_params(new)))
                new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, s)
                return (new, ok), jnp.where(ok, loss, jnp.nan)

            def skip(c):
                return c, jnp.full((), jnp.nan, dtype=loss_dtype)

            return jax.lax.cond(on & carry[1], run, skip, carry)

        (st, _), chunk_losses = jax.lax.scan(body, (st, jnp.array(True)), active)
        return st, chunk_losses

    chunk = jax.jit(chunk)
    log_w_fn = (
        make_log_weights_fn(svi.model, svi.guide, args, all_kwargs, num_khat_samples)
        if num_khat_samples
        else None
    )
    khat_key = jax.random.fold_in(rng_key, 7919)
    losses: list[np.ndarray] = []
    khats: list[tuple[int, float]] = []
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc="vidiv.numpyro.fit", leave=True)
    done, stopped, nonfinite = 0, False, None
    try:
        while done < num_steps:
            n = min(monitor_every, num_steps - done)
            active = jnp.arange(monitor_every) < n
            state, chunk_losses = chunk(state, active)
            chunk_losses = np.asarray(chunk_losses)[:n]
            bad = np.flatnonzero(~np.isfinite(chunk_losses))
            if bad.size:
                nonfinite = done + int(bad[0]) + 1
                chunk_losses = chunk_losses[: bad[0]]
            losses.append(chunk_losses)
            done += chunk_losses.shape[0]
            khat_now = math.nan
            if log_w_fn is not None:
                lp, lq = log_w_fn(svi.get_params(state), jax.random.fold_in(khat_key, done))
                try:
                    khat_now = psis_khat(np.asarray(lp, np.float64) - np.asarray(lq, np.float64))
                except VidivError:  # NaN weights or too few usable draws: record NaN
                    pass
                khats.append((done, khat_now))
            if bar is not None:
                bar.update(chunk_losses.shape[0])
                last = float(chunk_losses[-1]) if chunk_losses.size else math.nan
                bar.set_postfix(loss=f"{last:.4g}", khat=f"{khat_now:.2f}", refresh=False)
            if nonfinite == 1:
                raise NonFiniteError(
                    "vidiv.numpyro.fit: the loss or the state is non-finite at step 1, from the "
                    "initial parameters (nothing was updated). Check the data for NaN/inf, the "
                    "model for invalid parameter values, and the guide's initialisation (e.g. "
                    "init_loc_fn, init_scale)."
                )
            if nonfinite is not None:
                warnings.warn(
                    f"vidiv.numpyro.fit: the loss or the state became non-finite at step "
                    f"{nonfinite} of {num_steps}; training stopped, the step was not applied "
                    f"and the result holds the last finite state (after step {nonfinite - 1}) "
                    f"and its {nonfinite - 1} losses. Use a smaller or decaying step size "
                    "(e.g. numpyro.optim.ClippedAdam(0.01, clip_norm=10.0) or a schedule), "
                    "or start the guide closer to the data (e.g. init_scale=0.01). Running "
                    "the host loop yourself? Use SVI.run(..., stable_update=True), which "
                    "skips steps whose loss or gradient is not finite; without it the "
                    "parameters turn NaN without a word.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            if stopper is not None and n == monitor_every:
                recent = np.concatenate(losses)[-(stopper.window or monitor_every):]
                if stopper.update(recent):
                    stopped = done < num_steps
                    break
    finally:
        if bar is not None:
            bar.close()
    info = {"num_compilations": counter["n"]}
    if nonfinite is not None:
        info["nonfinite_step"] = nonfinite
    return FitResult(
        params=svi.get_params(state),
        losses=np.concatenate(losses) if losses else np.zeros(0),
        khat=np.asarray(khats, dtype=float).reshape(-1, 2),
        state=state,
        stopped_early=stopped,
        info=info,
    )
