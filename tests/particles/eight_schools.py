"""posteriordb ``eight_schools-eight_schools_noncentered`` for the MirroredSVGD kernel-space tests:
data, reference NUTS moments, the benchmark's start (prior median, scale 0.1 in the unconstrained
space) and the standardised errors. The heavy-tailed half-Cauchy scale ``tau`` is what separates
the kernel on ``tau`` (``kernel_space="primal"``) from the kernel on ``log tau`` (``"dual"``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = (Path(__file__).resolve().parents[3]
        / "shared/benchmarks/posteriordb/eight_schools-eight_schools_noncentered")
SITES = ("mu", "tau", "theta_trans")


def available() -> bool:
    return (ROOT / "data.json").exists()


def data() -> tuple[np.ndarray, np.ndarray]:
    d = json.loads((ROOT / "data.json").read_text())
    return np.asarray(d["y"], dtype=np.float64), np.asarray(d["sigma"], dtype=np.float64)


def initial_particles(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Prior medians (mu 0, tau 5, theta_trans 0) plus N(0, 0.1²) in (mu, log tau, theta_trans)."""
    u = np.random.default_rng(seed).normal(0.0, 0.1, size=(n, 10))
    return {"mu": u[:, 0], "tau": 5.0 * np.exp(u[:, 1]), "theta_trans": u[:, 2:]}


def standardised_errors(samples: dict) -> dict[str, float]:
    """max |mean − reference mean| / reference sd per site."""
    ref = np.load(ROOT / "reference.npz")
    out = {}
    for name in SITES:
        r = ref[name].astype(np.float64)
        x = np.asarray(samples[name], dtype=np.float64)
        out[name] = float(np.max(np.abs(x.mean(0) - r.mean(0)) / r.std(0)))
    return out
