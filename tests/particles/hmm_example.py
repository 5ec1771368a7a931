"""posteriordb ``hmm_example-hmm_example`` (two simplex rows, two means) for MirroredSVGD tests:
data, reference NUTS moments, and the comparison. The tests model Stan's ``positive_ordered`` mean
as an ``ImproperUniform(positive_ordered_vector)`` site plus its normal priors (the ordered
entropic mirror map)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3] / "shared/benchmarks/posteriordb/hmm_example-hmm_example"


def available() -> bool:
    return (ROOT / "data.json").exists()


def data() -> np.ndarray:
    return np.asarray(json.loads((ROOT / "data.json").read_text())["y"], dtype=np.float64)


def reference() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    ref = np.load(ROOT / "reference.npz")
    return {k: (ref[k].astype(np.float64).mean(0), ref[k].astype(np.float64).std(0))
            for k in ("theta1", "theta2", "mu")}


def standardised_errors(samples: dict) -> dict[str, float]:
    out = {}
    for name, (mean, sd) in reference().items():
        x = np.asarray(samples[name], dtype=np.float64)
        out[name] = float(np.max(np.abs(x.mean(0) - mean) / sd))
    return out


def initial_particles(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Draws from the proper parts of the prior: flat Dirichlet rows, and the two normal priors
    of ``mu`` sorted (the improper ordered site cannot be sampled)."""
    rng = np.random.default_rng(seed)
    mu = np.sort(np.abs(rng.normal([3.0, 10.0], 1.0, size=(n, 2))), axis=-1)
    return {"theta1": rng.dirichlet(np.ones(2), n), "theta2": rng.dirichlet(np.ones(2), n),
            "mu": mu}
