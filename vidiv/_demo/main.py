"""`vidiv demo`: fit, diagnose, compare with NUTS, print one table, write netCDF and figures."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError
from . import models
from .runners import METHODS, RUNNERS, default_steps


def _row(fit, ref) -> dict:
    from .. import diagnostics

    dt = fit.datatree
    post = dt["posterior"].dataset
    names = [v for v in models.PARAMS if v in ref and v in post]
    cmp = diagnostics.compare_to_reference(dt, ref, var_names=names)
    row = {
        "method": METHODS[fit.method],
        "backend": fit.backend,
        "seconds": fit.seconds,
        "max_std_mean_error": float(cmp["std_mean_error"].max()),
        "mean_sd_ratio": float(cmp["sd_ratio"].mean()),
        "khat": np.nan,
        "is_ess": np.nan,
        "log_z": np.nan,
        "log_z_se": np.nan,
    }
    if "sample_stats" in dt.children and "log_q" in dt["sample_stats"].dataset:
        rep = diagnostics.diagnose(dt, log_z_reference=models.LOG_EVIDENCE)
        row.update(khat=rep.khat, is_ess=rep.is_ess, log_z=rep.log_z, log_z_se=rep.log_z_se)
    return row


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'method':28s} {'backend':8s} {'seconds':>8s} {'max|Δmean|/sd':>13s} "
        f"{'sd ratio':>8s} {'k̂':>6s} {'IS-ESS':>7s} {'log Z':>16s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lz = (
            f"{r['log_z']:.3f} ± {r['log_z_se']:.3f}" if np.isfinite(r["log_z"]) else "— (no log q)"
        )
        khat = f"{r['khat']:.2f}" if np.isfinite(r["khat"]) else "—"
        ess = f"{r['is_ess']:.0f}" if np.isfinite(r["is_ess"]) else "—"
        lines.append(
            f"{r['method']:28s} {r['backend']:8s} {r['seconds']:8.1f} "
            f"{r['max_std_mean_error']:13.3f} {r['mean_sd_ratio']:8.2f} {khat:>6s} "
            f"{ess:>7s} {lz:>16s}"
        )
    lines.append(
        f"exact log Z = {models.LOG_EVIDENCE:.3f}; reference: posteriordb NUTS draws "
        f"(eight_schools_noncentered, {len(models.reference()['mu'])} kept); "
        "k̂ < 0.5 good, < 0.7 usable"
    )
    return "\n".join(lines)


def run_demo(backends, methods, steps=None, out="vidiv-demo-out", seed=0, progress=True):
    missing = [b for b in backends if importlib.util.find_spec(b) is None]
    if missing:
        raise InvalidArgumentError(
            f"backend {', '.join(missing)} is not installed; pip install 'vidiv[{missing[0]}]' "
            "or pass --backend with an installed one."
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ref = models.reference()
    rows = []
    for backend in backends:
        for method in methods:
            n = steps or default_steps(method)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=FutureWarning)
                fit = RUNNERS[backend](method, n, seed, progress)
            row = _row(fit, ref)
            row["steps"] = n
            rows.append(row)
            stem = out / f"{method}-{backend}"
            fit.datatree.to_netcdf(f"{stem}.nc")
            if importlib.util.find_spec("arviz_plots") and importlib.util.find_spec("matplotlib"):
                from .. import diagnostics

                diagnostics.plot(fit.datatree, reference=ref, path=f"{stem}.png")
    table = format_table(rows)
    print(table)
    (out / "table.txt").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=float))
    return rows
