"""Every vidiv method on every posteriordb posterior, in NumPyro and Pyro, against NUTS.

For each posterior in ``shared/benchmarks/posteriordb`` (transcribed in ``benchmarks/pdb``) and each
method (AlphaDivergence α=0.5, ChiSquaredVIS, LogVariance — all with ``AutoMultivariateNormal`` in
the host's SVI —, FBGVI, MirroredSVGD) it records the wall-clock of the fit, the standardised mean
error ``|mean_VI - mean_ref| / sd_ref`` (max and mean over scalar components), the sd ratio
``sd_VI / sd_ref``, PSIS k̂ / IS-ESS / log Z (``vidiv.diagnostics.diagnose``), and the wall-clock
of NumPyro NUTS (4 chains x 1000 warm-up + 1000 draws, sequential on this CPU) as the alternative
a user would pick. Methods whose class is missing, or that reject a model (e.g. mirrored SVGD on
an ordered vector), get a row with a note, so the script always finishes.

Goal (reported, not asserted): on posteriors a Gaussian can represent, the best vidiv method is
within 0.1 sd of the reference means, with every sd ratio in [0.9, 1.1], in < 1/10 of NUTS's time.

    python -m benchmarks.posteriordb [--quick] [--backends numpyro pyro] [--methods alpha fbgvi]
                                     [--posteriors sblrc-blr ...] [--steps N] [--seed 0]

Writes ``benchmarks/results/posteriordb.json`` and prints a Markdown table. Timings on a shared,
loaded machine are indicative; the NUTS/VI ratio is measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.pdb import registry, runners
from benchmarks.pdb.laplace import laplace_numpyro, laplace_pyro
from benchmarks.pdb.runners import (
    METHODS,
    fit_numpyro,
    fit_pyro,
    missing_class,
    nuts_numpyro,
    score_datatree,
    score_draws,
)

RESULTS = Path(__file__).parent / "results"
STEPS = {"laplace": 0, "alpha": 3000, "vis": 3000, "logvar": 3000, "fbgvi": 1000, "msvgd": 1000}
QUICK_POSTERIORS = ("sblrc-blr",)
FITTERS = {"numpyro": fit_numpyro, "pyro": fit_pyro}


def _nuts_row(name: str, seed: int, quick: bool) -> dict:
    chains, warmup, samples = (1, 300, 300) if quick else (4, 1000, 1000)
    cpu = time.process_time()
    seconds, draws, div = nuts_numpyro(name, seed, chains, warmup, samples)
    cpu = time.process_time() - cpu
    row = {"posterior": name, "backend": "numpyro", "method": "NUTS", "seconds": seconds,
           "cpu_seconds": cpu,
           "steps": chains * (warmup + samples), "divergences": div, "status": "ok",
           "note": f"{chains} chains x ({warmup} warm-up + {samples}), sequential"}
    row.update(score_draws(name, draws))
    return row


def _laplace(name: str, backend: str, seed: int):
    """(seconds, Laplace) for the shared start of every method."""
    t0 = time.perf_counter()
    if backend == "numpyro":
        lap = laplace_numpyro(registry.numpyro_model(name), seed)
    else:
        lap = laplace_pyro(registry.pyro_model(name), seed=seed)
    return time.perf_counter() - t0, lap


def _method_row(name, backend, method, steps, seed, lap, lap_seconds) -> dict:
    row = {"posterior": name, "backend": backend, "method": METHODS[method][1], "steps": steps}
    why = missing_class(backend, method)
    if why:
        return {**row, "status": "skipped", "note": why}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cpu = time.process_time()
            seconds, dt = FITTERS[backend](name, method, max(steps, 1), seed, lap)
            cpu = time.process_time() - cpu
            row.update(seconds=seconds + lap_seconds, fit_seconds=seconds, cpu_seconds=cpu,
                       laplace_seconds=lap_seconds, status="ok", note="")
            row.update(score_datatree(name, dt))
    except Exception as exc:  # noqa: BLE001  (a failing method is a result, not a crash)
        msg = str(exc).splitlines()[0] if str(exc) else ""
        row.update(status="error", note=f"{type(exc).__name__}: {msg}"[:200])
    return row


def _float64() -> None:
    """Accuracy benchmark: float64 in both hosts (jax x64 and torch's default dtype; global)."""
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
    except ImportError:
        pass
    try:
        import torch

        torch.set_default_dtype(torch.float64)
        torch.set_num_threads(1)
    except ImportError:
        pass


def run(methods=None, backends=("numpyro",), posteriors=None, steps=None, seed=0,
        quick=False, progress=True, on_row=None) -> list[dict]:
    """Run the benchmark; returns one dict per (posterior, backend, method) plus one NUTS row per
    posterior. ``steps`` overrides every method's step count; ``quick`` = one posterior (unless
    ``posteriors`` is given), 1/10 of the steps, 1000 draws per fit and a short single-chain NUTS
    (a smoke run of every code path: about a minute of CPU)."""
    ok, why = registry.available()
    if not ok and not registry.names():
        raise FileNotFoundError(why)
    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if posteriors is None:
        posteriors = list(QUICK_POSTERIORS) if quick else registry.names()
    _float64()
    runners.NUM_DRAWS = 1000 if quick else 4000
    rows = []
    for name in posteriors:
        nuts = _nuts_row(name, seed, quick)
        rows.append(nuts)
        if on_row:
            on_row(rows)
        if progress:
            print(f"[{name}] NUTS {nuts['seconds']:.1f}s", file=sys.stderr, flush=True)
        for backend in backends:
            lap_seconds, lap = _laplace(name, backend, seed)
            lap_row = _method_row(name, backend, "laplace", 1, seed, lap, lap_seconds)
            if lap_row["status"] != "ok" or not lap_row["khat"] < 0.7:
                lap = lap.fallback()  # Laplace unusable as a start: hosts' default start
            lap_row["note"] = ("k̂ < 0.7: the start of every method" if lap.kind == "laplace"
                               else "k̂ >= 0.7: methods start at the prior median, scale 0.1")
            if lap_row["status"] == "ok":
                lap_row["nuts_seconds"] = nuts["seconds"]
                lap_row["time_fraction_of_nuts"] = lap_row["seconds"] / nuts["seconds"]
            rows.append(lap_row)
            if on_row:
                on_row(rows)
            for method in methods:
                if method == "laplace":
                    continue
                n = steps or (max(100, STEPS[method] // 10) if quick else STEPS[method])
                row = _method_row(name, backend, method, n, seed, lap, lap_seconds)
                row["start"] = lap.kind
                if row["status"] == "ok":
                    row["nuts_seconds"] = nuts["seconds"]
                    row["time_fraction_of_nuts"] = row["seconds"] / nuts["seconds"]
                rows.append(row)
                if on_row:
                    on_row(rows)
                if progress:
                    print(f"[{name}] {backend} {row['method']}: {row['status']} "
                          f"{row.get('seconds', float('nan')):.1f}s {row.get('note', '')}",
                          file=sys.stderr, flush=True)
    return rows


def meets_goal(row: dict) -> bool:
    return (row.get("status") == "ok" and row["max_std_mean_error"] <= 0.1
            and 0.9 <= row["min_sd_ratio"] and row["max_sd_ratio"] <= 1.1
            and row.get("time_fraction_of_nuts", np.inf) < 0.1)


def goal_summary(rows: list[dict]) -> list[dict]:
    """Per (posterior, backend): the best method (goal met, else the smallest mean error)."""
    out = []
    for name in dict.fromkeys(r["posterior"] for r in rows):
        for backend in dict.fromkeys(r["backend"] for r in rows if r["method"] != "NUTS"):
            cand = [r for r in rows if r["posterior"] == name and r["backend"] == backend
                    and r["method"] not in ("NUTS", METHODS["laplace"][1])
                    and r["status"] == "ok"]
            if not cand:
                continue
            met = [r for r in cand if meets_goal(r)]
            best = (min(met, key=lambda r: r["seconds"]) if met
                    else min(cand, key=lambda r: r["max_std_mean_error"]))
            gaussian = registry.POSTERIORS[name].gaussian
            out.append({"posterior": name, "backend": backend, "gaussian_geometry": gaussian,
                        "best_method": best["method"], "goal_met": bool(met)})
    return out


def _f(x, fmt):
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, fmt)


def markdown(rows: list[dict]) -> str:
    head = ("| posterior | backend | method | s | s / NUTS | max err/sd | mean err/sd "
            "| sd ratio (min–max) | k̂ | note |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        ok = r.get("status") == "ok"
        ratio = (f"{r['min_sd_ratio']:.2f}–{r['max_sd_ratio']:.2f}" if ok else "—")
        note = r.get("note", "") if r["method"] != "NUTS" else f"{r['divergences']} divergences"
        if ok and r["method"] != "NUTS" and meets_goal(r):
            note = ("goal met. " + note).strip()
        lines.append(
            f"| {r['posterior']} | {r['backend']} | {r['method']} | {_f(r.get('seconds'), '.1f')} "
            f"| {_f(r.get('time_fraction_of_nuts'), '.2f')} "
            f"| {_f(r.get('max_std_mean_error'), '.3f')} "
            f"| {_f(r.get('mean_std_mean_error'), '.3f')} "
            f"| {ratio} | {_f(r.get('khat'), '.2f')} | {note} |"
        )
    return "\n".join(lines)


def merged(path: Path, run_name: str, config: dict, rows: list[dict],
           supersede: bool = False) -> tuple[dict, list[dict]]:
    """``(config, rows)`` of the results file at ``path`` with this run added as ``run_name``.

    Each row is tagged with its run; rows and config of an earlier run of the same name are
    replaced, other runs are kept, so partial reruns (one backend, some posteriors) accumulate
    into one file. An earlier ``error`` row (e.g. a support a method did not handle yet) is
    dropped when this run has an ``ok`` row for the same posterior, backend, method and steps;
    with ``supersede`` (a changed recipe) so is every earlier row of such a method (NUTS and
    Laplace-start rows stay with their runs)."""
    old = json.loads(path.read_text()) if path.exists() else {"config": {"runs": {}}, "rows": []}
    runs = dict(old["config"].get("runs", {}))
    runs[run_name] = config

    def key(r):
        return r.get("posterior"), r.get("backend"), r.get("method"), r.get("steps")

    fixed = {key(r) for r in rows if r.get("status") == "ok"}
    reference = ("NUTS", METHODS["laplace"][1])

    def replaced(r):
        if key(r) not in fixed:
            return False
        return r.get("status") == "error" or (supersede and r.get("method") not in reference)

    kept = [r for r in old["rows"] if r.get("run") != run_name and not replaced(r)]
    return {**old["config"], "runs": runs}, kept + [{**r, "run": run_name} for r in rows]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 posterior, few steps (smoke run)")
    p.add_argument("--backends", nargs="+", default=["numpyro"], choices=sorted(FITTERS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--posteriors", nargs="+", default=None, choices=list(registry.POSTERIORS))
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "posteriordb.json"))
    p.add_argument("--supersede", action="store_true",
                   help="with --merge: this run's method rows replace earlier rows of the same "
                        "posterior, backend, method and steps (after a recipe change)")
    p.add_argument("--merge", metavar="RUN", default=None,
                   help="add this run's rows to an existing --out file under the name RUN "
                        "(replacing an earlier run of that name) instead of overwriting it")
    a = p.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    t0 = time.perf_counter()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(rows, complete=False):
        config = {"quick": a.quick, "seed": a.seed, "steps": a.steps or STEPS,
                  "backends": a.backends, "machine": platform.machine(), "cpus": os.cpu_count(),
                  "total_seconds": time.perf_counter() - t0, "complete": complete,
                  "note": "shared, loaded CPU: timings indicative; NUTS timed in the same process"}
        if a.merge:
            config, rows = merged(out, a.merge, config, rows, supersede=a.supersede)
        out.write_text(json.dumps({"config": config, "rows": rows, "goal": goal_summary(rows)},
                                  indent=1, default=float))

    rows = run(a.methods, a.backends, a.posteriors, a.steps, a.seed, a.quick, on_row=save)
    save(rows, complete=True)
    print(markdown(rows))
    print()
    for s in goal_summary(rows):
        flag = "met" if s["goal_met"] else "not met"
        kind = "Gaussian-representable" if s["gaussian_geometry"] else "non-Gaussian geometry"
        print(f"- {s['posterior']} ({s['backend']}, {kind}): best {s['best_method']}, goal {flag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
