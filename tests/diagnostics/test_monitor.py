"""Plateau rule of the training monitor (backend-free part)."""

from __future__ import annotations

import numpy as np
import pytest

from vidiv.diagnostics import EarlyStop
from vidiv.diagnostics.monitor import as_early_stop, check_fit_args
from vidiv.errors import VidivError


def test_plateau_needs_patience_consecutive_small_changes():
    stop = EarlyStop(tol=1e-3, patience=2, window=4)
    assert not stop.update([10.0, 10.0, 10.0, 10.0])  # first check: nothing to compare
    assert not stop.update([9.0] * 4)  # 10% change: reset
    assert not stop.update([9.0001] * 4)  # 1.1e-5 relative: count 1
    assert not stop.update([8.0] * 4)  # big change again: reset
    assert not stop.update([8.0] * 4)  # count 1
    assert stop.update([8.004] * 4)  # 5e-4 < 1e-3: count 2 -> stop


def test_window_averages_the_noise():
    rng = np.random.default_rng(0)
    stop = EarlyStop(tol=1e-2, patience=3, window=200)
    noisy = 100.0 + rng.normal(size=2000)  # flat on average, noisy per step
    decisions = [stop.update(noisy[: 200 * (i + 1)]) for i in range(10)]
    assert decisions.index(True) == 3  # stops at the 4th check (3 consecutive small changes)


def test_early_stop_arguments():
    assert as_early_stop(None, 50) is None and as_early_stop(False, 50) is None
    assert as_early_stop(True, 50).window == 50
    assert as_early_stop({"tol": 0.1, "patience": 1}, 20) == EarlyStop(0.1, 1, 20)
    with pytest.raises(VidivError, match="early_stop must be None, True"):
        as_early_stop("yes", 10)
    with pytest.raises(VidivError, match="patience must be an integer >= 1"):
        EarlyStop(patience=0)
    with pytest.raises(VidivError, match="tol must be a positive number"):
        EarlyStop(tol=-1.0)
    with pytest.raises(VidivError, match="num_khat_samples=5 is too few"):
        check_fit_args(10, 5, 5)
    with pytest.raises(VidivError, match="monitor_every must be an integer >= 1"):
        check_fit_args(10, 0, 100)
