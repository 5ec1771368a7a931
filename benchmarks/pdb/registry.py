"""posteriordb names -> (NumPyro model, Pyro model, data, reference draws, compared parameters).

Data and reference draws are read from ``$VIDIV_POSTERIORDB`` or, by default, from
``shared/benchmarks/posteriordb`` next to the repository (``<repo>/../shared/...``). Each posterior
folder holds ``data.json``, ``reference.npz`` and ``info.json``. Example::

    from benchmarks.pdb import registry
    registry.names()                                   # the posteriors present on disk
    model = registry.numpyro_model("arK-arK")          # zero-argument model, data bound
    ref = registry.reference("arK-arK")       # {"alpha": (10000,), "beta": (10000, 5), ...}
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.pdb import models_numpyro as _np_models

_DEFAULT_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "benchmarks" / "posteriordb"


@dataclass(frozen=True)
class Posterior:
    """One posteriordb posterior: model function names, integer data keys and compared params.

    ``gaussian`` says whether a full-rank Gaussian in the unconstrained space can represent the
    geometry (the benchmark goal is stated for those only).
    """

    name: str
    model: str  # function name in models_numpyro / models_pyro
    int_keys: tuple[str, ...]
    params: tuple[str, ...]
    gaussian: bool = True
    note: str = ""


POSTERIORS: dict[str, Posterior] = {
    p.name: p
    for p in [
        Posterior("arK-arK", "ark", ("K", "T"), ("alpha", "beta", "sigma")),
        Posterior(
            "eight_schools-eight_schools_centered",
            "eight_schools_centered",
            ("J",),
            ("theta", "mu", "tau"),
            gaussian=False,
            note="funnel between tau and theta",
        ),
        Posterior(
            "eight_schools-eight_schools_noncentered",
            "eight_schools_noncentered",
            ("J",),
            ("theta_trans", "mu", "tau", "theta"),
        ),
        Posterior("hmm_example-hmm_example", "hmm_example", ("N", "K"), ("theta1", "theta2", "mu")),
        Posterior("kidiq-kidscore_interaction", "kidscore_interaction", ("N",), ("beta", "sigma")),
        Posterior("kilpisjarvi_mod-kilpisjarvi", "kilpisjarvi", ("N",), ("alpha", "beta", "sigma")),
        Posterior(
            "low_dim_gauss_mix-low_dim_gauss_mix",
            "low_dim_gauss_mix",
            ("N",),
            ("mu", "sigma", "theta"),
        ),
        Posterior("nes2000-nes", "nes", ("N", "age_discrete"), ("beta", "sigma")),
        Posterior("sblrc-blr", "blr", ("N", "D"), ("beta", "sigma")),
    ]
}


def root() -> Path:
    """Folder holding the posteriordb posteriors (``$VIDIV_POSTERIORDB`` overrides the default)."""
    env = os.environ.get("VIDIV_POSTERIORDB")
    return Path(env).expanduser().resolve() if env else _DEFAULT_ROOT.resolve()


def available() -> tuple[bool, str]:
    """``(True, "")`` if every registered posterior is on disk, else ``(False, reason)``."""
    r = root()
    if not r.is_dir():
        return False, f"posteriordb reference folder {r} not found (set VIDIV_POSTERIORDB)"
    missing = [n for n in POSTERIORS if not (r / n / "reference.npz").is_file()]
    if missing:
        return False, f"posteriordb folder {r} lacks {', '.join(missing)}"
    return True, ""


def names() -> list[str]:
    """Registered posteriors present on disk, in a fixed order."""
    r = root()
    return [n for n in POSTERIORS if (r / n / "data.json").is_file()]


def _folder(name: str) -> Path:
    if name not in POSTERIORS:
        raise KeyError(f"unknown posterior {name!r}; known: {', '.join(POSTERIORS)}")
    return root() / name


def info(name: str) -> dict[str, Any]:
    """The posterior's ``info.json`` (names, parameter shapes, reference summary, log evidence)."""
    return json.loads((_folder(name) / "info.json").read_text())


@functools.cache
def _raw_data(name: str) -> dict[str, Any]:
    raw = json.loads((_folder(name) / "data.json").read_text())
    ints = POSTERIORS[name].int_keys
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ints:
            out[key] = int(value) if np.ndim(value) == 0 else np.asarray(value, dtype=np.int64)
        elif np.ndim(value) == 0:
            out[key] = float(value)
        else:
            out[key] = np.asarray(value, dtype=np.float64)
    return out


def data(name: str) -> dict[str, Any]:
    """The model's keyword arguments as numpy (Stan ``int`` -> Python int / int64 array, else
    float64), restricted to what the model block uses (e.g. kidiq's prediction inputs dropped)."""
    import inspect

    fn = getattr(_np_models, POSTERIORS[name].model)
    wanted = inspect.signature(fn).parameters
    return {k: v for k, v in _raw_data(name).items() if k in wanted}


def numpyro_data(name: str, dtype=None) -> dict[str, Any]:
    """``data(name)`` as jax arrays (floats in ``dtype``, default jax's default float)."""
    import jax.numpy as jnp

    out = {}
    for k, v in data(name).items():
        if isinstance(v, np.ndarray):
            out[k] = jnp.asarray(
                v, dtype=None if v.dtype.kind == "i" else (dtype or jnp.result_type(float))
            )
        else:
            out[k] = v
    return out


def pyro_data(name: str, dtype=None, device=None) -> dict[str, Any]:
    """``data(name)`` as torch tensors (floats in ``dtype``, default torch's default dtype)."""
    import torch

    dtype = dtype or torch.get_default_dtype()
    out = {}
    for k, v in data(name).items():
        if isinstance(v, np.ndarray):
            out[k] = torch.as_tensor(
                v, dtype=torch.int64 if v.dtype.kind == "i" else dtype, device=device
            )
        else:
            out[k] = v
    return out


def numpyro_model_fn(name: str) -> Callable[..., None]:
    """The unbound NumPyro model function (data as keyword arguments)."""
    return getattr(_np_models, POSTERIORS[name].model)


def pyro_model_fn(name: str) -> Callable[..., None]:
    """The unbound Pyro model function (data as keyword arguments)."""
    from benchmarks.pdb import models_pyro

    return getattr(models_pyro, POSTERIORS[name].model)


def numpyro_model(name: str, dtype=None) -> Callable[[], None]:
    """A zero-argument NumPyro model with the posterior's data bound."""
    return functools.partial(numpyro_model_fn(name), **numpyro_data(name, dtype))


def pyro_model(name: str, dtype=None, device=None) -> Callable[[], None]:
    """A zero-argument Pyro model with the posterior's data bound."""
    return functools.partial(pyro_model_fn(name), **pyro_data(name, dtype, device))


def reference(name: str) -> dict[str, np.ndarray]:
    """Reference NUTS draws of the compared parameters, float64, shape ``(n_draws, *shape)``."""
    with np.load(_folder(name) / "reference.npz") as ref:
        return {k: np.asarray(ref[k], dtype=np.float64) for k in POSTERIORS[name].params}


def reference_mean(name: str) -> dict[str, np.ndarray]:
    """Posterior mean of every compared parameter (a valid point of every convex support)."""
    return {k: v.mean(0) for k, v in reference(name).items()}


def latent_sites(name: str) -> tuple[str, ...]:
    """The sampled parameters (compared params minus transformed parameters such as theta)."""
    return tuple(
        k for k in POSTERIORS[name].params if not (name.endswith("noncentered") and k == "theta")
    )
