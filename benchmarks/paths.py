"""Diffusion-path guides: log-variance (LV) vs path KL, PIS and VP references (issue 7).

Targets (``vidiv.paths.targets``): GMM-9 grid (2-D, log Z = 0), Neal's funnel (10-D,
inference-gym ``NealsFunnel``, log Z = 0, exact samples analytic), many-well (5-D, 32 modes,
log Z = 5 log z1 by quadrature) and the 50-D many-well of sde_sampler ``mw_50d``
(``many_well_50d``: 5 double wells with delta = 2 + 45 standard-Gaussian dims, 32 modes, SDE
settings of the reference configs: PIS sigma = sqrt(0.2), T = 5; VP scale 1; exact samples by
inverse CDF and Gaussian draws). For each target x SDE x loss x seed the NumPyro guide is trained
(``SVI.run``, jit/scan) with the same budget, optimiser and seeds for both losses, then evaluated
on fresh trajectories: |Δlog Z| of the IS estimate with its delta-method standard error
sqrt((mean w^2 / mean(w)^2 - 1) / N) (log space, max-shifted), IS-ESS (fraction), mode coverage
(modes holding >= 1/4 of their exact share), energy distance to exact samples (2,000 draws), and
wall-clock. LV = ``vidiv.numpyro.LogVariance`` (guide ``estimator="lv"``), KL =
``numpyro.infer.Trace_ELBO`` (guide ``estimator="kl"``). Pyro GMM-9 rows (LV and KL, PIS) are
added unless ``--no-pyro``.

Per (target, backend, SDE, loss) the summary gives mean and sd over seeds; per (target, backend,
SDE) a Welch t-test on the per-seed |Δlog Z| (and energy distance, minimum mode share) says
whether LV and KL differ beyond seed-to-seed spread.

Usage: ``python -m benchmarks.paths [--quick] [--no-pyro] [--seeds 3] [--other-seeds 3]``;
more seeds later: ``--targets funnel,many_well --other-seeds 1 --seed-start 3 --append``;
the 50-D many-well: ``--targets many_well_50d --no-pyro --append``; a larger budget into its own
file: ``--targets gmm9 --no-pyro --sdes pis --steps 3000 --results paths_gmm9_3000``; other SDE
settings: ``--sde-kwargs '{"pis": {"sigma": 0.4472, "T": 5}}'``.
Writes ``benchmarks/results/paths.json`` (``--quick``: ``paths_quick.json``) and
``benchmarks/results/paths_<target>.png`` (seed 0). The machine may be shared with other jobs:
wall-clock numbers are indicative.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import SVI, Trace_ELBO  # noqa: E402

from benchmarks.paths_report import markdown_table, print_summary, summarise  # noqa: E402
from vidiv.numpyro import DiffusionGuide, LogVariance  # noqa: E402
from vidiv.particles.energy import energy_distance  # noqa: E402
from vidiv.paths import targets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FUNNEL_JSON = (Path(__file__).resolve().parents[2]
               / "shared/benchmarks/inference_gym/NealsFunnel.json")


class _Target(dist.Distribution):
    support = dist.constraints.real_vector

    def __init__(self, log_prob, d):
        self._lp = log_prob
        super().__init__(event_shape=(d,))

    def log_prob(self, x):
        return self._lp(x)


def _model(log_prob, d):
    def model():
        numpyro.sample("x", _Target(log_prob, d))

    return model


def _exact_many_well(rng, n, d, delta=4.0):
    grid = np.linspace(-5, 5, 200_001)
    pdf = np.exp(-((grid**2 - delta) ** 2))
    cdf = np.cumsum(pdf)
    cdf /= cdf[-1]
    return np.interp(rng.uniform(size=(n, d)), cdf, grid)


def _exact_many_well_50d(rng, n):
    d, k = targets.MW50_DIM, targets.MW50_WELLS
    wells = _exact_many_well(rng, n, k, delta=targets.MW50_DELTA)  # inverse CDF per coordinate
    return np.concatenate([wells, rng.standard_normal((n, d - k))], 1)


def _exact(name, rng, n):
    if name == "gmm9":
        k = rng.integers(0, 9, n)
        return targets.GMM_GRID_MEANS[k] + math.sqrt(targets.GMM_GRID_VAR) * rng.standard_normal(
            (n, 2))
    if name == "funnel":
        x0 = 3.0 * rng.standard_normal(n)
        rest = np.exp(x0 / 2)[:, None] * rng.standard_normal((n, 9))
        return np.concatenate([x0[:, None], rest], 1)
    if name == "many_well_50d":
        return _exact_many_well_50d(rng, n)
    return _exact_many_well(rng, n, 5)


TARGETS = {
    # name: (log_prob, d, true log Z, modes, sde kwargs per reference)
    "gmm9": (targets.gmm_grid_log_prob, 2, 0.0, 9,
             {"pis": {"sigma": 2.0, "T": 5.0}, "vp": {"scale": 5.0}}),
    "funnel": (targets.funnel_log_prob, 10, 0.0, None,
               {"pis": {"sigma": 1.5, "T": 4.0}, "vp": {"scale": 3.0}}),
    "many_well": (targets.many_well_log_prob, 5, 5 * targets.double_well_log_z(4.0), 32,
                  {"pis": {"sigma": 1.0, "T": 5.0}, "vp": {"scale": 2.0}}),
    "many_well_50d": (targets.many_well_50d_log_prob, targets.MW50_DIM, targets.multi_well_log_z(),
                      2**targets.MW50_WELLS,
                      {"pis": {"sigma": math.sqrt(0.2), "T": 5.0}, "vp": {"scale": 1.0}}),
}


def _modes(name, x):
    if name == "gmm9":
        idx, near = targets.gmm_grid_mode(x)
        return idx[near], 9, float(near.mean())
    if name == "many_well":
        return targets.many_well_mode(x), 32, None
    if name == "many_well_50d":
        return targets.multi_well_mode(x), 2**targets.MW50_WELLS, None
    return None, None, None


def _evaluate(name, x, log_w, true_log_z, exact, seconds):
    from vidiv.estimators import weights

    keep = np.isfinite(log_w)
    est = weights.log_z(log_w[keep])  # se: delta method on log mean w, max-shifted
    lz = float(est.log_z)
    ess = float(weights.is_ess(log_w[keep])) / log_w.size
    out = {"abs_dlogz": abs(lz - true_log_z), "log_z": lz, "log_z_se": float(est.se),
           "num_eval": int(log_w.size), "ess_frac": ess, "dropped": int((~keep).sum()),
           "seconds": seconds}
    idx, k, near = _modes(name, x)
    if idx is not None:
        frac = np.bincount(idx, minlength=k) / x.shape[0]
        out["modes_covered"] = int((frac >= 0.25 / k).sum())
        out["num_modes"] = k
        out["mode_frac_min"], out["mode_frac_max"] = float(frac.min()), float(frac.max())
        if near is not None:
            out["near_mode"] = near
    m = min(2000, x.shape[0])
    out["energy_distance"] = float(energy_distance(x[:m], exact[:m]))
    if name == "funnel":
        sd_true = np.array([3.0] + [9.487735836358526] * 9)
        if FUNNEL_JSON.exists():  # inference-gym ground truth (analytic)
            gt = json.loads(FUNNEL_JSON.read_text())["sample_transformations"]["identity"]
            sd_true = np.asarray(gt["ground_truth_standard_deviation"])
        out["sd_x0"] = float(x[:, 0].std())
        out["sd_rel_error_max"] = float(np.max(np.abs(x.std(0) / sd_true - 1.0)))
    return out


def run_numpyro(name, sde, est, cfg, seed=0):
    log_prob, d, true_lz, _, sde_kw = TARGETS[name]
    model = _model(log_prob, d)
    guide = DiffusionGuide(model, num_steps=cfg["euler"], hidden=cfg["hidden"], sde=sde,
                           sde_kwargs=cfg.get("sde_kwargs", {}).get(sde, sde_kw[sde]),
                           estimator=est)
    loss = LogVariance(num_particles=cfg["batch"]) if est == "lv" else Trace_ELBO(
        num_particles=cfg["batch"])
    steps, lr = cfg["steps"], cfg["lr"]
    opt = numpyro.optim.ClippedAdam(lambda i: lr * 0.02 ** (i / steps), clip_norm=1.0)
    svi = SVI(model, guide, opt, loss)
    t = time.perf_counter()
    res = svi.run(jax.random.PRNGKey(seed), steps, progress_bar=False, stable_update=True)
    jax.block_until_ready(res.params)
    seconds = time.perf_counter() - t
    n_eval = cfg["eval"][name]
    samples, log_w = guide.sample_with_log_weights(jax.random.PRNGKey(seed + 1), res.params,
                                                   n_eval)
    x = np.asarray(samples["x"], dtype=np.float64)
    exact = _exact(name, np.random.default_rng(seed + 2), n_eval)
    out = _evaluate(name, x, np.asarray(log_w, dtype=np.float64), true_lz, exact, seconds)
    out["final_loss"] = float(jnp.nanmean(res.losses[-50:]))
    out["nonfinite_losses"] = int((~jnp.isfinite(res.losses)).sum())
    if est == "lv":  # particles the filter would drop at the final parameters (one batch)
        out["train_dropped_last"] = int(loss.num_dropped(svi, res.state))
    return out, x


def run_pyro_gmm(est, cfg, seed=0):
    import pyro
    import pyro.distributions as pdist
    import torch
    from pyro.infer import SVI as PSVI
    from pyro.infer import Trace_ELBO as PTrace_ELBO

    from vidiv.pyro import DiffusionGuide as PGuide
    from vidiv.pyro import LogVariance as PLogVariance

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()

    def model():
        prior = pdist.Normal(torch.zeros(2), 10.0).to_event(1)
        x = pyro.sample("x", prior)
        pyro.factor("target", targets.gmm_grid_log_prob(x) - prior.log_prob(x))

    guide = PGuide(model, num_steps=cfg["pyro_euler"], hidden=cfg["hidden"], sde="pis",
                   sde_kwargs=TARGETS["gmm9"][4]["pis"], estimator=est)
    steps = cfg["pyro_steps"]
    opt = pyro.optim.ClippedAdam({"lr": cfg["lr"], "lrd": 0.02 ** (1 / steps), "clip_norm": 1.0})
    loss = PLogVariance(num_particles=cfg["pyro_batch"]) if est == "lv" else PTrace_ELBO(
        num_particles=cfg["pyro_batch"], vectorize_particles=True, max_plate_nesting=0)
    svi = PSVI(model, guide, opt, loss)
    t = time.perf_counter()
    for _ in range(steps):
        svi.step()
    seconds = time.perf_counter() - t
    n_eval = cfg["eval"]["gmm9"]
    with torch.no_grad():
        samples, log_w = guide.sample_with_log_weights(n_eval)
    x = samples["x"].detach().numpy()
    exact = _exact("gmm9", np.random.default_rng(seed + 2), n_eval)
    out = _evaluate("gmm9", x, log_w.detach().numpy(), 0.0, exact, seconds)
    if est == "lv":
        out["train_dropped_last"] = loss.last_num_dropped
    return out, x


def _plot(name, samples, exact, stem="paths"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(samples)
    fig, axes = plt.subplots(1, len(keys) + 1, figsize=(3.2 * (len(keys) + 1), 3.2),
                             sharex=True, sharey=True)
    for ax, (label, x) in zip(axes, [("exact", exact), *[(k, samples[k]) for k in keys]],
                              strict=True):
        ax.scatter(x[:2000, 0], x[:2000, 1], s=1, alpha=0.4)
        ax.set_title(label, fontsize=9)
    fig.suptitle(f"{name}: first two coordinates", fontsize=10)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}_{name}.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small budget (smoke run)")
    ap.add_argument("--no-pyro", action="store_true", help="skip the Pyro GMM-9 rows")
    ap.add_argument("--targets", default="gmm9,funnel,many_well")
    ap.add_argument("--seeds", type=int, default=3, help="seeds for GMM-9 (NumPyro and Pyro)")
    ap.add_argument("--other-seeds", type=int, default=3, help="seeds for funnel, many-well")
    ap.add_argument("--seed-start", type=int, default=0,
                    help="first seed (with --append: add seeds to an earlier run)")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows of the existing results file (a rerun of the same "
                         "target/backend/SDE/loss/seed replaces its row) and re-summarise")
    ap.add_argument("--sdes", default="pis,vp", help="reference SDEs to run (pis, vp)")
    ap.add_argument("--steps", type=int, default=None, help="override the training steps")
    ap.add_argument("--batch", type=int, default=None, help="override the training batch")
    ap.add_argument("--sde-kwargs", type=json.loads, default=None,
                    help='JSON replacing the targets\' SDE settings, e.g. '
                         '\'{"pis": {"sigma": 0.4472, "T": 5}}\' (sde_sampler bm_pis)')
    ap.add_argument("--results", default=None,
                    help="results file stem under benchmarks/results (default: paths, or "
                         "paths_quick with --quick); plots are named <stem>_<target>.png")
    ap.add_argument("--table", action="store_true",
                    help="print the README table from the results file (--results) and exit")
    args = ap.parse_args(argv)
    stem = args.results or ("paths_quick" if args.quick else "paths")
    if args.table:
        print(markdown_table(json.loads((RESULTS / f"{stem}.json").read_text())))
        return
    jax.config.update("jax_enable_x64", False)
    cfg = dict(steps=1000, batch=256, euler=50, hidden=(64, 64), lr=5e-3,
               eval={"gmm9": 100_000, "funnel": 100_000, "many_well": 100_000,
                     "many_well_50d": 100_000},
               pyro_steps=200, pyro_batch=64, pyro_euler=20)
    if args.quick:
        cfg.update(steps=200, batch=64, euler=20, hidden=(32, 32),
                   eval={"gmm9": 2000, "funnel": 2000, "many_well": 2000, "many_well_50d": 2000},
                   pyro_steps=30, pyro_batch=32, pyro_euler=10)
    cfg.update({k: v for k, v in (("steps", args.steps), ("batch", args.batch),
                                  ("sde_kwargs", args.sde_kwargs)) if v})
    if not args.no_pyro:
        import torch

        import vidiv.pyro  # noqa: F401  (import now: the code under test is fixed at start)

        torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    header = (f"{'target':10s} {'backend':8s} {'sde':4s} {'loss':4s} {'seed':>4s} "
              f"{'|dlogZ|':>8s} {'IS se':>7s} {'ESS/N':>6s} {'modes':>7s} {'min/max share':>14s} "
              f"{'energy':>8s} {'sec':>7s}")
    print(header)
    meta = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
            "quick": args.quick, "seeds": {"gmm9": args.seeds, "other": args.other_seeds},
            "jax": jax.__version__, "numpyro": numpyro.__version__,
            "note": ("2 shared CPU cores; wall-clock indicative. Same budget, optimiser and "
                     "seeds for LV and KL. log_z_se: delta-method IS standard error."),
            "funnel_ground_truth": str(FUNNEL_JSON.name) if FUNNEL_JSON.exists() else None}
    out_path = RESULTS / f"{stem}.json"
    if args.append and out_path.exists():
        old = json.loads(out_path.read_text())
        rows = old["rows"]
        n = args.other_seeds if args.targets != "gmm9" else args.seeds
        run = {"targets": args.targets, "seeds": list(range(args.seed_start, args.seed_start + n))}
        meta = {**old["meta"], "appended_runs": [*old["meta"].get("appended_runs", []), run]}

    def write():
        summary, comparisons = summarise(rows)
        out_path.write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary,
                                        "comparisons": comparisons}, indent=2))
        return summary, comparisons

    def emit(row):
        key = ("target", "backend", "sde", "loss", "seed")
        rows[:] = [r for r in rows if any(r[k] != row[k] for k in key)]
        rows.append(row)
        out = row
        modes = f"{out['modes_covered']}/{out['num_modes']}" if "modes_covered" in out else "-"
        share = (f"{out['mode_frac_min'] * out['num_modes']:.2f}/"
                 f"{out['mode_frac_max'] * out['num_modes']:.2f}" if "modes_covered" in out
                 else "-")
        print(f"{row['target']:10s} {row['backend']:8s} {row['sde']:4s} {row['loss']:4s} "
              f"{row['seed']:4d} {out['abs_dlogz']:8.4f} {out['log_z_se']:7.4f} "
              f"{out['ess_frac']:6.3f} {modes:>7s} {share:>14s} "
              f"{out['energy_distance']:8.4f} {out['seconds']:7.1f}", flush=True)
        write()

    names = args.targets.split(",")
    pyro_rows = not args.no_pyro and "gmm9" in names
    for name in names:
        plot_samples = {}
        n_seeds = args.seeds if name == "gmm9" else args.other_seeds
        for seed in range(args.seed_start, args.seed_start + n_seeds):
            for sde in args.sdes.split(","):
                for est in ("lv", "kl"):
                    out, x = run_numpyro(name, sde, est, cfg, seed=seed)
                    emit({"target": name, "backend": "numpyro", "sde": sde, "loss": est,
                          "seed": seed, **out})
                    if seed == 0:
                        plot_samples[f"{sde}/{est}"] = x
        if not args.quick and plot_samples:  # committed plots: full runs, seed 0 only
            _plot(name, plot_samples, _exact(name, np.random.default_rng(7), 2000), stem)
        if name == "gmm9" and pyro_rows:
            for seed in range(args.seed_start, args.seed_start + args.seeds):
                for est in ("lv", "kl"):
                    out, _ = run_pyro_gmm(est, cfg, seed=seed)
                    emit({"target": "gmm9", "backend": "pyro", "sde": "pis", "loss": est,
                          "seed": seed, **out})
    print_summary(*write())
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
