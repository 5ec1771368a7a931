"""Per-step time of vidiv's objectives against the hosts' own, side by side in one process.

Logistic regression (N = 1000, D = 20), AutoNormal guide, 32 particles, alpha = 0.5:
vidiv AlphaDivergence vs the host RenyiELBO and Trace_ELBO (and vidiv ChiSquaredVIS /
LogVariance for reference), Pyro (vectorised particles) and NumPyro (jitted SVI.update).
Each configuration is timed in interleaved rounds and the median per-step time is kept, so
machine load affects all objectives alike. Writes benchmarks/results/step_time.json.

    python -m benchmarks.step_time [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
N, D, K, ALPHA = 1000, 20, 32, 0.5


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    beta = rng.normal(size=D) * 0.5
    y = (rng.random(N) < 1 / (1 + np.exp(-X @ beta))).astype(float)
    return X, y


def _interleaved(steppers: dict, rounds: int, steps: int) -> dict[str, float]:
    """Median over rounds of the mean per-step time; objectives alternate within each round."""
    times = {k: [] for k in steppers}
    for _ in range(rounds):
        for name, step in steppers.items():
            t0 = time.perf_counter()
            step(steps)
            times[name].append((time.perf_counter() - t0) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_pyro(rounds: int, steps: int) -> dict[str, float]:
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import SVI, RenyiELBO, Trace_ELBO
    from pyro.infer.autoguide import AutoNormal

    import vidiv.pyro as vp

    torch.set_num_threads(1)
    X, y = (torch.tensor(a, dtype=torch.float32) for a in _data())

    def model(X, y):
        beta = pyro.sample("beta", dist.Normal(torch.zeros(D), 1.0).to_event(1))
        with pyro.plate("data", N):
            pyro.sample("y", dist.Bernoulli(logits=(X * beta).sum(-1)), obs=y)

    losses = {
        "host Trace_ELBO": Trace_ELBO(
            num_particles=K, vectorize_particles=True, max_plate_nesting=1
        ),
        "host RenyiELBO": RenyiELBO(
            alpha=ALPHA, num_particles=K, vectorize_particles=True, max_plate_nesting=1
        ),
        "vidiv AlphaDivergence": vp.AlphaDivergence(
            alpha=ALPHA, num_particles=K, max_plate_nesting=1
        ),
        "vidiv AlphaDivergence (dreg)": vp.AlphaDivergence(
            alpha=ALPHA, num_particles=K, gradient="dreg", max_plate_nesting=1
        ),
    }
    steppers = {}
    for name, loss in losses.items():
        pyro.clear_param_store()
        guide = AutoNormal(model)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), loss=loss)
        svi.step(X, y)  # set up params

        def run(n, svi=svi):
            for _ in range(n):
                svi.step(X, y)

        steppers[name] = run
    return _interleaved(steppers, rounds, steps)


def bench_numpyro(rounds: int, steps: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import SVI, RenyiELBO, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal

    import vidiv.numpyro as vn

    X, y = (jnp.asarray(a, dtype=jnp.float32) for a in _data())

    def model(X, y):
        beta = numpyro.sample("beta", dist.Normal(jnp.zeros(D), 1.0).to_event(1))
        with numpyro.plate("data", N):
            numpyro.sample("y", dist.Bernoulli(logits=(X * beta).sum(-1)), obs=y)

    losses = {
        "host Trace_ELBO": Trace_ELBO(num_particles=K),
        "host RenyiELBO": RenyiELBO(alpha=ALPHA, num_particles=K),
        "vidiv AlphaDivergence": vn.AlphaDivergence(alpha=ALPHA, num_particles=K),
        "vidiv AlphaDivergence (dreg)": vn.AlphaDivergence(
            alpha=ALPHA, num_particles=K, gradient="dreg"
        ),
    }
    steppers = {}
    for name, loss in losses.items():
        svi = SVI(model, AutoNormal(model), numpyro.optim.Adam(0.01), loss=loss)
        state = svi.init(jax.random.PRNGKey(0), X, y)
        update = jax.jit(svi.update)
        jax.block_until_ready(update(state, X, y))  # compile outside the timing
        holder = {"state": state}

        def run(n, update=update, holder=holder):
            s = holder["state"]
            for _ in range(n):
                s, loss_value = update(s, X, y)
            jax.block_until_ready(loss_value)
            holder["state"] = s

        steppers[name] = run
    return _interleaved(steppers, rounds, steps)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (smoke run)")
    args = parser.parse_args(argv)
    rounds, steps = (3, 10) if args.quick else (15, 50)
    out = {
        "config": {
            "N": N,
            "D": D,
            "particles": K,
            "alpha": ALPHA,
            "rounds": rounds,
            "steps_per_round": steps,
            "machine": platform.processor() or platform.machine(),
            "note": "median per-step seconds over interleaved rounds; 1 torch thread",
        }
    }
    for backend, fn in (("pyro", bench_pyro), ("numpyro", bench_numpyro)):
        t = fn(rounds, steps)
        base = t["host RenyiELBO"]
        out[backend] = {
            k: {"seconds_per_step": v, "ratio_to_host_renyi": v / base} for k, v in t.items()
        }
    print(f"{'backend':8s} {'objective':32s} {'ms/step':>9s} {'vs RenyiELBO':>13s}")
    for backend in ("pyro", "numpyro"):
        for name, r in out[backend].items():
            print(
                f"{backend:8s} {name:32s} {1e3 * r['seconds_per_step']:9.3f} "
                f"{r['ratio_to_host_renyi']:13.3f}"
            )
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "step_time.json").write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
