"""Test-suite settings: float64 in jax, one torch thread, seeded generators."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
os.environ.setdefault("VIDIV_SMOKE", "1")  # tutorials and demo run in their fast mode under tests

try:  # closed-form tolerances need float64; individual tests opt into float32 explicitly
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platform_name", "cpu")
except ImportError:  # pragma: no cover
    pass

try:
    import torch

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261127)


@pytest.fixture(autouse=True)
def _seed_everything():
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pragma: no cover
        pass
    try:
        import pyro

        pyro.set_rng_seed(0)
        pyro.clear_param_store()
    except ImportError:  # pragma: no cover
        pass
    yield
