"""NumPyro half of ``benchmarks/fbgvi.py``: ``vidiv.numpyro.FBGVI`` and NumPyro's Adam-SVI +
``AutoMultivariateNormal`` on the benchmark targets (float64, CPU), and the measured Hessian cost.

Each runner returns ``(steps to KL < 0.1 / < 0.01 or None, final KL, seconds per step)`` per seed,
KL(q‖π) checked every ``chunk`` steps; one compilation per configuration, shared by the seeds.

Example::

    python -m benchmarks.fbgvi --backend numpyro --dims 10
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpyro
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal
from numpyro.infer.initialization import init_to_value

from benchmarks import fbgvi_report as report
from vidiv.gaussian import gaussian_kl
from vidiv.numpyro import FBGVI


def _kl_fn(target):
    m_star, c_star = jnp.asarray(target["mean"]), jnp.asarray(target["cov"])
    return jax.jit(lambda m, L: gaussian_kl(m, L @ L.T, m_star, c_star))


def _trace(step_chunk, state, get_ml, kl, max_steps, chunk):
    box = [state]

    def advance():
        box[0] = jax.block_until_ready(step_chunk(box[0]))

    return report.trace(advance, lambda: kl(*get_ml(box[0])), max_steps, chunk)


def run_fbgvi(target, seeds, max_steps, chunk, hessian, num_samples, antithetic, schedule, eta):
    """One configuration over ``seeds`` (one compilation); eta: multiple of the default η₀."""
    probe = FBGVI(target["model"], init_scale=1.0)
    probe.init(jax.random.PRNGKey(0), *target["args"])
    fb = FBGVI(target["model"], num_samples=num_samples, hessian=hessian, antithetic=antithetic,
               schedule=schedule, step_size=eta * probe.eta0, init_scale=1.0)  # fmt: skip

    def step_chunk(s):
        return fb.run(None, chunk, *target["args"], progress_bar=False, init_state=s).state

    kl, runs = _kl_fn(target), []
    for seed in seeds:
        state = fb.init(jax.random.PRNGKey(seed), *target["args"])
        jax.block_until_ready(step_chunk(state))  # compile (first seed) outside the timing
        runs.append(_trace(step_chunk, state, lambda s: (s.mean, s.scale_tril), kl, max_steps,
                           chunk))  # fmt: skip
    return runs


def run_advi(target, seeds, max_steps, chunk, lr, decay, particles=1):
    d = target["d"]
    guide = AutoMultivariateNormal(
        target["model"],
        init_scale=1.0,
        init_loc_fn=init_to_value(values={target["site"]: jnp.zeros(d)}),
    )
    sched = (lambda i: lr * 0.01 ** (i / max_steps)) if decay else lr
    svi = SVI(target["model"], guide, numpyro.optim.Adam(sched), Trace_ELBO(particles))

    @jax.jit
    def step_chunk(s):
        return jax.lax.scan(
            lambda s, _: (svi.update(s, *target["args"])[0], None), s, None, length=chunk
        )[0]

    def get_ml(s):
        p = svi.get_params(s)
        return p["auto_loc"], p["auto_scale_tril"]

    kl, runs = _kl_fn(target), []
    for seed in seeds:
        state = svi.init(jax.random.PRNGKey(seed), *target["args"])
        jax.block_until_ready(step_chunk(state))
        runs.append(_trace(step_chunk, state, get_ml, kl, max_steps, chunk))
    return runs


def hessian_cost_ratio(target, n: int = 400) -> float:
    """Measured t(Hessian) / t(value + gradient) of the driver's potential, per point.

    ``lax.map`` over n random points (one evaluation at a time, as in a one-sample step). The
    model arguments are jit inputs passed through an optimisation barrier with each point, so XLA
    can neither constant-fold nor hoist out of the loop the parts that do not depend on the point
    (for a Gaussian target the whole Hessian would otherwise be computed once and the "measured"
    cost would be ~0); best of 7 interleaved rounds after compilation.
    """
    fb = FBGVI(target["model"], init_scale=1.0)
    fb.init(jax.random.PRNGKey(0), *target["args"])
    flat = fb._flat  # the driver's own flat potential (benchmark only: time what a step pays)

    def per_point(f):
        def one(x, args):
            x, args = jax.lax.optimization_barrier((x, args))
            return f(flat.potential(args, {}))(x)

        return jax.jit(lambda xs, args: jax.lax.map(lambda x: one(x, args), xs))

    xs = jnp.asarray(target["mean"]) + 0.3 * jax.random.normal(
        jax.random.PRNGKey(1), (n, target["d"])
    )
    fns = [per_point(jax.value_and_grad), per_point(jax.hessian)]
    for f in fns:
        jax.block_until_ready(f(xs, target["args"]))

    def clock(f):
        t0 = time.perf_counter()
        jax.block_until_ready(f(xs, target["args"]))
        return time.perf_counter() - t0

    rounds = [[clock(f) for f in fns] for _ in range(7)]  # interleaved, best of each
    return min(r[1] for r in rounds) / min(r[0] for r in rounds)
