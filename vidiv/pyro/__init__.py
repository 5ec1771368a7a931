"""vidiv for Pyro: objectives that plug into `pyro.infer.SVI`, drivers, guides and results.

Public names are identical in ``vidiv.pyro`` and ``vidiv.numpyro``. Submodules are imported on
first use, so importing this package only loads pyro.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "AlphaDivergence": "alpha",
    "ChiSquaredVIS": "vis",
    "LogVariance": "logvar",
    "FBGVI": "fbgvi",
    "MirroredSVGD": "msvgd",
    "DiffusionGuide": "diffusion",
    "to_datatree": "results",
    "fit": "monitor",
    "laplace": "_laplace",
    "LaplaceResult": "_laplace",
    "model_scores": "scores",
    "approximate": "_approximate",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        module = importlib.import_module(f".{_PUBLIC[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


import pyro as _host  # noqa: E402,F401  (fail early with the host's own ImportError)
