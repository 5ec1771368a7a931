"""vidiv: divergence-based inference objectives for Pyro and NumPyro, diagnosed with ArviZ.

``import vidiv`` loads neither torch nor jax; the adapters ``vidiv.pyro`` and ``vidiv.numpyro``
import their framework when you import them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from . import errors, estimators  # noqa: E402
from .errors import VidivError  # noqa: E402

__all__ = ["__version__", "estimators", "diagnostics", "errors", "VidivError", "pyro", "numpyro"]


def __getattr__(name: str) -> Any:
    # diagnostics pulls in xarray/arviz (slow import); the adapters pull in their framework.
    if name in {"diagnostics", "pyro", "numpyro", "gaussian", "particles", "paths"}:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'vidiv' has no attribute {name!r}")
