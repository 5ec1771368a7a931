"""GPU check for the NumPyro paths: every method jitted at 10^2, 10^3 and 10^4 particles.

On a logistic regression (N = 1000, D = 20) and the eight schools model, each NumPyro method's
step is jitted once and run several times; the script checks that the step was traced exactly once
(no recompilation per step) and records compile time and per-step time. Writes
benchmarks/results/gpu.json (or gpu_<platform>.json when not on a GPU).

    python -m benchmarks.gpu_check            # full: 1e2, 1e3, 1e4 particles (meant for a GPU)
    python -m benchmarks.gpu_check --reduced  # CPU smoke mode (what the test suite runs)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def _models():
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    from vidiv._demo import models as demo

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 20))
    y = (rng.random(1000) < 1 / (1 + np.exp(-X @ (0.5 * rng.normal(size=20))))).astype(float)
    X, y = jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32)

    def logistic():
        beta = numpyro.sample("beta", dist.Normal(jnp.zeros(20), 1.0).to_event(1))
        with numpyro.plate("data", 1000):
            numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)

    return {"logistic_regression": logistic, "eight_schools": demo.numpyro_model()}


def _counted(fn: Callable, counter: list) -> Callable:
    def wrapped(*args):
        counter[0] += 1  # runs only while jax traces the function
        return fn(*args)

    return wrapped


def _time_step(step: Callable, state, repeats: int) -> dict:
    import jax

    counter = [0]
    jitted = jax.jit(_counted(step, counter))
    t0 = time.perf_counter()
    state, out = jitted(state)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeats):
        state, out = jitted(state)
    jax.block_until_ready(out)
    per_step = (time.perf_counter() - t0) / repeats
    finite = bool(np.all(np.isfinite(np.asarray(jax.tree.leaves(out)[0]))))
    return {
        "traces": counter[0],
        "compile_plus_first_s": compile_s,
        "step_s": per_step,
        "finite": finite,
    }


def _svi_step(model, loss, key):
    import numpyro
    from numpyro.infer import SVI
    from numpyro.infer.autoguide import AutoNormal

    svi = SVI(model, AutoNormal(model), numpyro.optim.Adam(1e-3), loss=loss)
    return (lambda s: svi.update(s)), svi.init(key)


def _cases(vn, model, key, n: int) -> dict[str, Callable]:
    """Factories (step, initial state) for every NumPyro method at ``n`` particles."""

    def svi(loss):
        return lambda: _svi_step(model, loss, key)

    def fbgvi():
        fb = vn.FBGVI(model, num_samples=n, hessian="stein")
        return (lambda s: fb.update(s)), fb.init(key)

    def msvgd():
        ms = vn.MirroredSVGD(model, num_particles=n)
        return (lambda s: ms.update(s)), ms.init(key)

    cases = {
        "AlphaDivergence": svi(vn.AlphaDivergence(alpha=0.5, num_particles=n)),
        "AlphaDivergence(dreg)": svi(
            vn.AlphaDivergence(alpha=0.5, num_particles=n, gradient="dreg")
        ),
        "ChiSquaredVIS": svi(vn.ChiSquaredVIS(num_particles=n)),
        "LogVariance": svi(vn.LogVariance(num_particles=n)),
        "FBGVI(stein)": fbgvi,
    }
    if n <= 1000:  # MSVGD's kernel is O(n^2) memory: 1e4 particles = 1e8 entries
        cases["MirroredSVGD"] = msvgd
    return cases


def run(particles: list[int], repeats: int, models: list[str] | None = None) -> list[dict]:
    import jax

    import vidiv.numpyro as vn

    rows = []
    for model_name, model in _models().items():
        if models and model_name not in models:
            continue
        for n in particles:
            for method, make in _cases(vn, model, jax.random.PRNGKey(0), n).items():
                row = {
                    "model": model_name,
                    "method": method,
                    "particles": n,
                    "device": jax.devices()[0].platform,
                }
                try:
                    step, state = make()
                    row.update(_time_step(step, state, repeats))
                    row["compiled_once"] = row["traces"] == 1
                except Exception as err:  # record, keep going: the script is a survey
                    row.update(error=f"{type(err).__name__}: {err}"[:300])
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    import jax

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reduced", action="store_true", help="CPU smoke mode: 8 and 64 particles, 3 repeats"
    )
    parser.add_argument(
        "--models", nargs="+", default=None, choices=["logistic_regression", "eight_schools"]
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    particles, repeats = ([8, 64], 3) if args.reduced else ([100, 1000, 10000], 20)
    rows = run(particles, repeats, args.models)
    platform = jax.devices()[0].platform
    name = "gpu.json" if platform == "gpu" else f"gpu_check_{platform}.json"
    out = Path(args.out) if args.out else RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "platform": platform,
                "reduced": args.reduced,
                "devices": [str(d) for d in jax.devices()],
                "rows": rows,
            },
            indent=1,
        )
    )
    bad = [r for r in rows if "error" in r or not r.get("compiled_once") or not r.get("finite")]
    for r in bad:
        print("PROBLEM:", r)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
