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

    from numpyro.infer import RenyiELBO, Trace_ELBO

    cases = {
        # the host objectives at the same particle count: the per-step baselines
        "host:Trace_ELBO": svi(Trace_ELBO(num_particles=n)),
        "host:RenyiELBO": svi(RenyiELBO(alpha=0.5, num_particles=n)),
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


def _versions() -> dict:
    import importlib.metadata as md

    return {name: md.version(name) for name in ("jax", "jaxlib", "numpyro", "numpy")}


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


# each vidiv objective against the host objective that plays its part in a user's SVI loop
BASELINE = {
    "AlphaDivergence": "host:RenyiELBO",
    "AlphaDivergence(dreg)": "host:RenyiELBO",
    "ChiSquaredVIS": "host:Trace_ELBO",
    "LogVariance": "host:Trace_ELBO",
}


def ratios(rows: list[dict], keys: tuple[str, ...] = ("model", "particles")) -> list[dict]:
    """Per-step time of each SVI objective over its host baseline's, at equal ``keys``."""
    step = {(*(r[k] for k in keys), r["method"]): r.get("step_s") for r in rows}
    out = []
    for (*where, method), t in step.items():
        base = step.get((*where, BASELINE.get(method, "")))
        if t and base:
            row = dict(zip(keys, where, strict=True))
            out.append(row | {"method": method, "baseline": BASELINE[method], "ratio": t / base})
    return out


def report(rows: list[dict], ratio_rows: list[dict], ok: Callable[[dict], bool]) -> int:
    """Print the ratios and every row that failed ``ok``; the exit code (1 if any failed)."""
    for r in ratio_rows:
        where = " ".join(f"{r[k]}" for k in r if k not in ("method", "baseline", "ratio"))
        print(f"{where:28s} {r['method']:22s} / {r['baseline']}: {r['ratio']:.2f}")
    bad = [r for r in rows if not ok(r)]
    for r in bad:
        print("PROBLEM:", r)
    return 1 if bad else 0


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
                "versions": _versions(),
                "rows": rows,
                "ratios_to_host": ratios(rows),
            },
            indent=1,
        )
    )
    return report(
        rows,
        ratios(rows),
        lambda r: "error" not in r and bool(r.get("compiled_once")) and bool(r.get("finite")),
    )


if __name__ == "__main__":
    raise SystemExit(main())
