"""Mirrored SVGD benchmark (issue 6): energy distance to exact samples vs iteration and wall-clock.

Targets
  * sparse Dirichlet (Shi, Liu & Mackey 2022): D = 20, α = 0.1 + [90, 5, 5, 0, ...], 50 particles
    from Dir(5·1), 500 iterations, 1000 exact reference draws;
  * quadratic on the 3-simplex (our own instance; the paper's quad.ipynb settings were not read):
    log p(θ) = −(θ − θ0)ᵀ A (θ − θ0) / (2σ²) on θ = x[:2], x ∈ Δ³, θ0 = (0.55, 0.05),
    A = [[1, .5], [.5, 1]], σ = 0.15; exact draws by rejection from Dir(1, 1, 1).

Methods: vidiv MirroredSVGD (msvgd, svmd) in Pyro and NumPyro, Pyro SVGD (mode univariate /
multivariate, RBF kernel, unconstrained stick-breaking space), NumPyro SVGD (einstein; recorded
as failing where it raises), projected SVGD (Euclidean SVGD on x, then projection onto the
simplex). Every method: optimiser ∈ {RMSprop(ρ=0.9), Adam} × lr ∈ {0.03, 0.1, 0.3} with
exponential decay 0.99 per step, plus Adam lr 0.5 decay 0.993 (tuned for SVMD). The energy
distance is computed every 20 steps outside the timed region.

    python benchmarks/msvgd.py [--quick]

Writes benchmarks/results/msvgd.json and benchmarks/results/msvgd.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platform_name", "cpu")
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as ndist  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as pdist  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)

from vidiv.numpyro import MirroredSVGD as NumPyroMSVGD  # noqa: E402
from vidiv.particles import mean_pairwise_distance, svgd_direction  # noqa: E402
from vidiv.pyro import MirroredSVGD as PyroMSVGD  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
EVERY = 20
DECAY = 0.99


# --- targets -------------------------------------------------------------------------------
class Target:
    def __init__(self, name, dim, log_p_np, grad_np, pyro_model, numpyro_model, exact, init):
        self.name, self.dim = name, dim
        self.log_p_np, self.grad_np = log_p_np, grad_np
        self.pyro_model, self.numpyro_model = pyro_model, numpyro_model
        self.ref = exact
        self.yy = float(mean_pairwise_distance(exact, exact))
        self.init = init

    def energy(self, x) -> float:
        x = np.asarray(x, dtype=np.float64)
        return float(2 * mean_pairwise_distance(x, self.ref) - mean_pairwise_distance(x, x)
                     - self.yy)

    def iid_median(self, num=50, reps=50) -> float:
        rng = np.random.default_rng(7)
        idx = [rng.choice(len(self.ref2), num, replace=False) for _ in range(reps)]
        return float(np.median([self.energy(self.ref2[i]) for i in idx]))


def sparse_dirichlet() -> Target:
    alpha = np.full(20, 0.1)
    alpha[:3] += [90.0, 5.0, 5.0]

    def pm():
        pyro.sample("w", pdist.Dirichlet(torch.as_tensor(alpha)))

    def nm():
        numpyro.sample("w", ndist.Dirichlet(jnp.asarray(alpha)))

    t = Target("sparse_dirichlet", 20, None, lambda x: (alpha - 1) / x, pm, nm,
               np.random.default_rng(123).dirichlet(alpha, 1000),
               np.random.default_rng(0).dirichlet(np.full(20, 5.0), 50))
    t.ref2 = np.random.default_rng(321).dirichlet(alpha, 5000)
    return t


THETA0, A_MAT, SIGMA = np.array([0.55, 0.05]), np.array([[1.0, 0.5], [0.5, 1.0]]), 0.15


def _quad_np(x):
    d = x[..., :2] - THETA0
    return -np.einsum("...i,ij,...j->...", d, A_MAT, d) / (2 * SIGMA**2)


def _quad_exact(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    while sum(len(o) for o in out) < n:
        x = rng.dirichlet(np.ones(3), 20000)
        out.append(x[rng.uniform(size=len(x)) < np.exp(_quad_np(x))])
    return np.concatenate(out)[:n]


def quadratic_simplex() -> Target:
    a_t, a_j = torch.as_tensor(A_MAT), jnp.asarray(A_MAT)

    def pm():
        w = pyro.sample("w", pdist.Dirichlet(torch.ones(3)))
        d = w[..., :2] - torch.as_tensor(THETA0)
        pyro.factor("quad", -((d @ a_t) * d).sum(-1) / (2 * SIGMA**2))

    def nm():
        w = numpyro.sample("w", ndist.Dirichlet(jnp.ones(3)))
        d = w[:2] - jnp.asarray(THETA0)
        numpyro.factor("quad", -(d @ a_j @ d) / (2 * SIGMA**2))

    def grad(x):
        g = np.zeros_like(x)
        g[..., :2] = -(x[..., :2] - THETA0) @ A_MAT / SIGMA**2
        return g

    t = Target("quadratic_simplex", 3, _quad_np, grad, pm, nm, _quad_exact(1000, 123),
               np.random.default_rng(0).dirichlet(np.full(3, 5.0), 50))
    t.ref2 = _quad_exact(5000, 321)
    return t


# --- runners: each returns (iterations, seconds, energies) ----------------------------------
def _trace(target, steps, step_fn, sample_fn):
    its, secs, eds, clock = [0], [0.0], [target.energy(sample_fn())], 0.0
    for i in range(1, steps + 1):
        t0 = time.perf_counter()
        step_fn(i - 1)
        clock += time.perf_counter() - t0
        if i % EVERY == 0 or i == steps:
            its.append(i), secs.append(clock), eds.append(target.energy(sample_fn()))
    return its, secs, eds


def _torch_optim(opt, lr):
    cls, kw = (torch.optim.RMSprop, {"alpha": 0.9}) if opt == "rmsprop" else (torch.optim.Adam, {})
    return pyro.optim.ExponentialLR({"optimizer": cls, "optim_args": {"lr": lr, **kw},
                                     "gamma": DECAY})


def run_vidiv_pyro(target, variant, opt, lr, steps):
    pyro.clear_param_store()
    optim = _torch_optim(opt, lr)
    svgd = PyroMSVGD(target.pyro_model, 50, optim=optim, variant=variant,
                     init={"w": torch.as_tensor(target.init)}, threshold=0.998)
    svgd.step()  # set-up outside the clock; counts as iteration 1 of the schedule
    optim.step()

    def step(_):
        svgd.step()
        optim.step()

    return _trace(target, steps - 1, step, lambda: svgd.get_samples()["w"].numpy())


def run_vidiv_numpyro(target, variant, opt, lr, steps):
    cls = numpyro.optim.RMSProp if opt == "rmsprop" else numpyro.optim.Adam
    svgd = NumPyroMSVGD(target.numpyro_model, 50, optim=cls(lambda i: lr * DECAY**i),
                        variant=variant, init={"w": target.init}, threshold=0.998)
    state = [svgd.init(jax.random.PRNGKey(0))]
    chunk = jax.jit(lambda st: jax.lax.scan(lambda s, _: (svgd.update(s)[0], None), st, None,
                                            length=EVERY)[0])
    jax.block_until_ready(chunk(state[0]))  # compile outside the clock

    def step(i):
        if i % EVERY == 0:
            state[0] = jax.block_until_ready(chunk(state[0]))

    return _trace(target, steps, step, lambda: np.asarray(svgd.get_samples(state[0])["w"]))


def run_pyro_svgd(target, mode, opt, lr, steps):
    from pyro.infer import SVGD, RBFSteinKernel
    from torch.distributions import biject_to, constraints

    pyro.clear_param_store()
    optim = _torch_optim(opt, lr)
    svgd = SVGD(target.pyro_model, RBFSteinKernel(), optim, 50, 0, mode=mode)
    svgd.step()  # create the particles, then place them at the common initial points
    u = biject_to(constraints.simplex).inv(torch.as_tensor(target.init))
    store = pyro.get_param_store()
    store["svgd_particles"] = u.reshape(store["svgd_particles"].shape).clone()

    def step(_):
        svgd.step()
        optim.step()

    return _trace(target, steps, step,
                  lambda: svgd.get_named_particles()["w"].detach().numpy())


def run_numpyro_svgd(target, opt, lr, steps):
    from numpyro.contrib.einstein import SVGD, RBFKernel

    cls = numpyro.optim.RMSProp if opt == "rmsprop" else numpyro.optim.Adam
    svgd = SVGD(target.numpyro_model, cls(lambda i: lr * DECAY**i), RBFKernel(),
                num_stein_particles=50)
    res = svgd.run(jax.random.PRNGKey(0), steps, progress_bar=False)
    w = np.asarray(res.params["w_auto_loc"])
    return [steps], [float("nan")], [target.energy(w)]


def _project(x):
    """Euclidean projection of each row onto the probability simplex (sort-based)."""
    u = -np.sort(-x, axis=-1)
    css = np.cumsum(u, axis=-1) - 1.0
    k = np.arange(1, x.shape[-1] + 1)
    rho = np.sum(u - css / k > 0, axis=-1)
    tau = css[np.arange(len(x)), rho - 1] / rho
    return np.maximum(x - tau[:, None], 0.0)


def run_projected(target, opt, lr, steps):
    x = [target.init.copy()]
    m, v = np.zeros_like(x[0]), np.zeros_like(x[0])

    def step(i):
        xc = np.maximum(x[0], 1e-12)
        g = -svgd_direction(xc, target.grad_np(xc))
        a = lr * DECAY**i
        if opt == "rmsprop":
            v[:] = 0.9 * v + 0.1 * g * g
            new = xc - a * g / (np.sqrt(v) + 1e-7)
        else:
            m[:] = 0.9 * m + 0.1 * g
            v[:] = 0.999 * v + 0.001 * g * g
            new = xc - a * (m / (1 - 0.9 ** (i + 1))) / (np.sqrt(v / (1 - 0.999 ** (i + 1))) + 1e-8)
        x[0] = _project(new)

    return _trace(target, steps, step, lambda: x[0])


METHODS = {
    "MSVGD (vidiv, pyro)": lambda t, o, lr, n: run_vidiv_pyro(t, "msvgd", o, lr, n),
    "SVMD (vidiv, pyro)": lambda t, o, lr, n: run_vidiv_pyro(t, "svmd", o, lr, n),
    "MSVGD (vidiv, numpyro)": lambda t, o, lr, n: run_vidiv_numpyro(t, "msvgd", o, lr, n),
    "SVMD (vidiv, numpyro)": lambda t, o, lr, n: run_vidiv_numpyro(t, "svmd", o, lr, n),
    "Pyro SVGD univariate": lambda t, o, lr, n: run_pyro_svgd(t, "univariate", o, lr, n),
    "Pyro SVGD multivariate": lambda t, o, lr, n: run_pyro_svgd(t, "multivariate", o, lr, n),
    "NumPyro SVGD": lambda t, o, lr, n: run_numpyro_svgd(t, o, lr, n),
    "projected SVGD": lambda t, o, lr, n: run_projected(t, o, lr, n),
}


def main(argv=None):
    global DECAY
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one configuration, 100 steps")
    args = ap.parse_args(argv)
    steps = 100 if args.quick else 500
    grid = [("rmsprop", 0.1, DECAY)] if args.quick else [
        (o, lr, DECAY) for o in ("rmsprop", "adam") for lr in (0.03, 0.1, 0.3)
    ] + [("adam", 0.5, 0.993)]  # the setting tuned for SVMD in issue 6's sweeps
    results = {"settings": {"steps": steps, "every": EVERY, "decay": DECAY, "grid": grid,
                            "quick": args.quick, "torch_threads": 1,
                            "note": "shared 2-core machine under load from other jobs"},
               "targets": {}}
    for target in (sparse_dirichlet(), quadratic_simplex()):
        iid = target.iid_median()
        entry = {"iid_median_50": iid, "runs": []}
        print(f"\n== {target.name}: 50 iid exact draws, median energy distance {iid:.2e}")
        print(f"{'method':26s} {'optim':8s} {'lr':>5s} {'decay':>6s} {'final ED':>10s} "
              f"{'sec':>7s}")
        for name, fn in METHODS.items():
            for opt, lr, decay in grid:
                DECAY = decay
                try:
                    its, secs, eds = fn(target, opt, lr, steps)
                    run = {"method": name, "optim": opt, "lr": lr, "decay": decay,
                           "iterations": its, "seconds": secs, "energy": eds, "final": eds[-1]}
                    print(f"{name:26s} {opt:8s} {lr:5.2f} {decay:6.3f} {eds[-1]:10.2e} "
                          f"{secs[-1]:7.2f}", flush=True)
                except Exception as err:  # noqa: BLE001 - recorded as a result
                    msg = "".join(traceback.format_exception_only(type(err), err)).strip()
                    run = {"method": name, "optim": opt, "lr": lr, "decay": decay,
                           "error": msg[:300]}
                    print(f"{name:26s} {opt:8s} {lr:5.2f} {decay:6.3f} {'FAILS':>10s}  "
                          f"{msg[:60]}", flush=True)
                entry["runs"].append(run)
                if "error" in run and name == "NumPyro SVGD":
                    break  # the same crash for every configuration
        best = {}
        for run in entry["runs"]:
            if "error" not in run and np.isfinite(run["final"]):
                cur = best.get(run["method"])
                if cur is None or run["final"] < cur["final"]:
                    best[run["method"]] = run
        entry["best"] = {m: {"optim": r["optim"], "lr": r["lr"], "decay": r["decay"],
                             "final": r["final"], "seconds": r["seconds"][-1]}
                         for m, r in best.items()}
        results["targets"][target.name] = entry
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "msvgd.json").write_text(json.dumps(results, indent=1))
    plot(results, OUT / "msvgd.png")
    print(f"\nwrote {OUT / 'msvgd.json'} and {OUT / 'msvgd.png'}")


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["targets"])
    fig, axes = plt.subplots(len(names), 2, figsize=(12, 4.2 * len(names)), squeeze=False)
    for row, tname in enumerate(names):
        entry = results["targets"][tname]
        for run in entry["runs"]:
            b = entry["best"].get(run["method"])
            key = (run["optim"], run["lr"], run.get("decay"))
            if "error" in run or b is None or key != (b["optim"], b["lr"], b["decay"]):
                continue
            if len(run["iterations"]) < 2:
                continue
            label = f"{run['method']} ({run['optim']}, lr {run['lr']}, decay {run['decay']})"
            axes[row, 0].semilogy(run["iterations"], run["energy"], label=label)
            axes[row, 1].semilogy(run["seconds"], run["energy"], label=label)
        for ax, xl in zip(axes[row], ("iteration", "wall-clock seconds"), strict=True):
            ax.axhline(entry["iid_median_50"], color="k", ls="--", lw=1, label="50 iid draws")
            ax.set_xlabel(xl)
            ax.set_ylabel("energy distance")
            ax.set_title(tname)
        axes[row, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
