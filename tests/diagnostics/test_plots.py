"""plot writes non-empty PNGs (skipped without the plots extra); a missing extra says what to do."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from vidiv.diagnostics import plot, to_datatree
from vidiv.errors import VidivError


def _dt(rng):
    return to_datatree(
        {"mu": rng.normal(size=200), "theta": rng.normal(size=(200, 2))},
        rng.normal(size=200),
        rng.normal(size=200),
        losses=np.linspace(5, 1, 40),
        khat_trace=[(20, 0.9), (40, 0.3)],
    )


def test_plot_writes_png(rng, tmp_path):
    pytest.importorskip("arviz_plots")
    pytest.importorskip("matplotlib")
    paths = plot(_dt(rng), reference={"mu": rng.normal(size=500)}, path=tmp_path / "fit.png",
                 var_names=["mu"])
    assert [p.name for p in paths] == ["fit.png", "fit_marginals.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_missing_plots_extra_says_how_to_install(rng, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz_plots", None)  # import arviz_plots -> ImportError
    with pytest.raises(VidivError, match=r'pip install "vidiv\[plots\]"'):
        plot(_dt(rng), path=tmp_path / "x.png")
