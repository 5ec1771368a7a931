"""posteriordb ``hmm_example-hmm_example`` (two simplex rows, two means) for MirroredSVGD tests:
data, reference NUTS moments, and the comparison. Stan's ``positive_ordered`` mean is modelled as
a real vector with the same normal priors (the ordering constraint carries no posterior mass: the
reference means are 3.0 and 8.8 with sds 0.2 and 0.1)."""

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
