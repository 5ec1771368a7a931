"""Device check for the Pyro paths: every vidiv Pyro method on CUDA tensors, timed against the host.

Logistic regression (N = 1000, D = 20) with its data on the device (``--device cuda`` by default
when torch sees a GPU). For each of 10^2, 10^3 and 10^4 particles: the SVI objectives
(AlphaDivergence, its DReG gradient, ChiSquaredVIS, LogVariance) beside the host's Trace_ELBO and
RenyiELBO (vectorised particles), and the FBGVI and MirroredSVGD drivers. Each row records
whether the step ran, the loss is finite, and every parameter and latent stayed on the device
(a tensor created on the CPU inside an objective fails here, not on a user's GPU), plus the
median per-step time over interleaved rounds and the ratio to the host objective that plays the
same part. Finally the fitted guide is handed to ``vidiv.pyro.to_datatree`` (draws are moved to
the host there) when ArviZ is installed. Writes benchmarks/results/gpu_pyro.json (or
gpu_pyro_<device>.json off a GPU).

    python -m benchmarks.gpu_check_pyro             # full (meant for a GPU)
    python -m benchmarks.gpu_check_pyro --reduced   # CPU smoke mode (what the test suite runs)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import gpu_check

RESULTS = Path(__file__).parent / "results"
N, D = 1000, 20


def _problem(device: str):
    import pyro
    import pyro.distributions as dist
    import torch

    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D))
    y = (rng.random(N) < 1 / (1 + np.exp(-X @ (0.5 * rng.normal(size=D))))).astype(float)
    X, y = (torch.tensor(a, dtype=torch.float32, device=device) for a in (X, y))

    def model(X, y):
        beta = pyro.sample("beta", dist.Normal(torch.zeros(D, device=X.device), 1.0).to_event(1))
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Bernoulli(logits=(X * beta).sum(-1)), obs=y)

    return model, (X, y)


def _svi_stepper(model, args, loss, device: str):
    import pyro
    from pyro.infer import SVI
    from pyro.infer.autoguide import AutoNormal

    guide = AutoNormal(model)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), loss=loss)
    value = [svi.step(*args)]  # sets up the parameters

    def step(n):
        for _ in range(n):
            value[0] = svi.step(*args)
        return value[0]

    def on_device():
        store = pyro.get_param_store()
        return all(str(store[name].device).startswith(device) for name in store.keys())

    return step, on_device, guide


def _cases(model, args, n: int, device: str) -> dict[str, Callable]:
    """Factories returning (step(k) -> last loss, on_device() -> bool, guide or None)."""
    import pyro
    from pyro.infer import RenyiELBO, Trace_ELBO

    import vidiv.pyro as vp

    def svi(make_loss):
        def factory():
            pyro.clear_param_store()
            return _svi_stepper(model, args, make_loss(), device)

        return factory

    def fbgvi():
        fb = vp.FBGVI(model, num_samples=n, hessian="stein")
        fb.step(*args)
        return (
            lambda k: [fb.step(*args) for _ in range(k)][-1],
            lambda: (
                str(fb.mean.device).startswith(device) and str(fb.cov.device).startswith(device)
            ),
            None,
        )

    def msvgd():
        pyro.clear_param_store()
        ms = vp.MirroredSVGD(model, num_particles=n)
        ms.step(*args)
        store = pyro.get_param_store()
        return (
            lambda k: [ms.step(*args) for _ in range(k)][-1],
            lambda: all(str(store[p].device).startswith(device) for p in store.keys()),
            None,
        )

    kw = {"num_particles": n, "max_plate_nesting": 1}
    cases = {
        "host:Trace_ELBO": svi(lambda: Trace_ELBO(vectorize_particles=True, **kw)),
        "host:RenyiELBO": svi(lambda: RenyiELBO(alpha=0.5, vectorize_particles=True, **kw)),
        "AlphaDivergence": svi(lambda: vp.AlphaDivergence(alpha=0.5, **kw)),
        "AlphaDivergence(dreg)": svi(lambda: vp.AlphaDivergence(alpha=0.5, gradient="dreg", **kw)),
        "ChiSquaredVIS": svi(lambda: vp.ChiSquaredVIS(**kw)),
        "LogVariance": svi(lambda: vp.LogVariance(**kw)),
        "FBGVI(stein)": fbgvi,
    }
    if n <= 1000:  # the SVGD kernel is O(n^2)
        cases["MirroredSVGD"] = msvgd
    return cases


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(particles: list[int], rounds: int, steps: int, device: str) -> list[dict]:
    model, args = _problem(device)
    rows = []
    for n in particles:
        steppers, first = {}, len(rows)
        for method, make in _cases(model, args, n, device).items():
            row = {"method": method, "particles": n, "device": device}
            try:
                step, on_device, guide = make()
                loss = step(2)  # warm-up
                _sync(device)
                row.update(finite=bool(np.isfinite(loss)), on_device=bool(on_device()))
                steppers[method] = step
                if guide is not None and method == "ChiSquaredVIS":
                    row["datatree"] = _datatree(model, guide, args)
            except Exception as err:  # record, keep going: the script is a survey
                row.update(error=f"{type(err).__name__}: {err}"[:300])
            rows.append(row)
        times = {m: [] for m in steppers}
        for _ in range(rounds):  # interleaved, so load affects every method alike
            for m, step in steppers.items():
                _sync(device)
                t0 = time.perf_counter()
                step(steps)
                _sync(device)
                times[m].append((time.perf_counter() - t0) / steps)
        for row in rows[first:]:
            if row["method"] in times:
                row["step_s"] = statistics.median(times[row["method"]])
            print(json.dumps(row), flush=True)
    return rows


def _datatree(model, guide, args) -> str:
    """Hand the device-trained guide to ArviZ; 'skipped' when arviz-base is not installed."""
    try:
        import arviz_base  # noqa: F401
    except ImportError:
        return "skipped: arviz-base not installed"
    import vidiv.pyro as vp

    tree = vp.to_datatree(model, guide, *args, num_samples=200)
    beta = np.asarray(tree.posterior["beta"])
    return "ok" if beta.shape[:2] == (1, 200) and np.all(np.isfinite(beta)) else "bad draws"


def ratios(rows: list[dict]) -> list[dict]:
    """Per-step time of each SVI objective over its host baseline's, at the same particles."""
    return gpu_check.ratios(rows, keys=("particles",))


def main(argv=None) -> int:
    import importlib.metadata as md

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="CPU smoke: 8/64 particles")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    particles, rounds, steps = ([8, 64], 2, 2) if args.reduced else ([100, 1000, 10000], 5, 10)
    rows = run(particles, rounds, steps, args.device)
    name = "gpu_pyro.json" if args.device.startswith("cuda") else f"gpu_pyro_{args.device}.json"
    out = Path(args.out) if args.out else RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
    out.write_text(
        json.dumps(
            {
                "device": args.device,
                "gpu": gpu,
                "reduced": args.reduced,
                "versions": {p: md.version(p) for p in ("torch", "pyro-ppl")},
                "rows": rows,
                "ratios_to_host": ratios(rows),
            },
            indent=1,
        )
    )
    return gpu_check.report(
        rows,
        ratios(rows),
        lambda r: "error" not in r and bool(r.get("finite")) and bool(r.get("on_device")),
    )


if __name__ == "__main__":
    raise SystemExit(main())
