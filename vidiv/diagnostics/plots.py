"""Training and accuracy plots (optional extra: ``pip install "vidiv[plots]"``).

``plot(dt, reference=None, path=None)`` draws, into one PNG:

1. the loss trace (``optimization/loss``) and, on a twin axis, k-hat over training
   (``optimization/khat``) with the 0.5 / 0.7 thresholds;
2. the posterior marginals with arviz-plots' ``plot_dist`` (matplotlib backend), overlaid on the
   reference draws when ``reference`` is given (dict of arrays or DataTree).

Matplotlib and arviz-plots are imported only when ``plot`` is called.

Example
-------
>>> from vidiv.diagnostics import plot     # doctest: +SKIP
>>> plot(dt, reference={"mu": ref_mu}, path="fit.png")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InvalidArgumentError, VidivError
from .names import original_names, require_tree, stored_names

__all__ = ["plot"]


def _require_plots():
    try:
        import arviz_plots
        import matplotlib.pyplot as plt
    except Exception as err:  # ImportError, or arviz-plots failing on a too-new matplotlib
        raise VidivError(
            f"plotting needs arviz-plots and matplotlib ({type(err).__name__}: {err}); install "
            'them with pip install "vidiv[plots]".'
        ) from None
    return arviz_plots, plt


def _reference_tree(reference: Any, names: list[str], dt: xr.DataTree) -> xr.DataTree:
    from .reference import _DROP, _draws_from_tree, check_finite_draws

    if isinstance(reference, xr.DataTree):
        require_tree(reference, "plot (reference)")
        stored = stored_names(reference)
        draws = _draws_from_tree(reference, "reference")
        check_finite_draws({k: v for k, v in draws.items() if stored.get(k, k) in names},
                           "reference", _DROP)
        return reference
    if not isinstance(reference, Mapping):
        raise InvalidArgumentError(
            "reference must be a dict {name: draws (n_draws, *shape)} or a DataTree, got "
            f"{type(reference).__name__}."
        )
    from .datatree import to_datatree

    model_name = original_names(dt)  # reference keys may use the model's names ("a/b")
    common = {}  # keyed by the model's names: to_datatree stores them as dt does
    for k in names:
        key = k if k in reference else model_name.get(k, k)
        if key in reference:
            common[model_name.get(k, k)] = np.asarray(reference[key])
    if not common:
        raise InvalidArgumentError(
            f"the reference has none of the posterior's variables {names}; name its arrays like "
            "the model's sample sites."
        )
    check_finite_draws(common, "reference", _DROP)
    return to_datatree(common)


def _training_figure(dt: xr.DataTree, plt):
    opt = dt["optimization"].dataset if "optimization" in dt.children else None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if opt is not None and "loss" in opt:
        ax.plot(opt["step"].values, opt["loss"].values, lw=0.8, color="C0", label="loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
    else:
        ax.text(0.5, 0.5, "no loss trace", ha="center", transform=ax.transAxes)
    if opt is not None and "khat" in opt and opt["khat"].size:
        ax2 = ax.twinx()
        steps, k = opt["khat_step"].values, opt["khat"].values
        ax2.plot(steps, np.where(np.isfinite(k), k, np.nan), "o-", color="C3", ms=3, label="k-hat")
        for level, style in ((0.5, ":"), (0.7, "--")):
            ax2.axhline(level, color="C3", ls=style, lw=0.8)
        ax2.set_ylabel("Pareto k-hat", color="C3")
    ax.set_title(f"training ({dt.attrs.get('objective', 'unknown')})")
    fig.tight_layout()
    return fig


def _var_names(dt: xr.DataTree, var_names) -> list[str]:
    """The stored names of the posterior variables to draw (all by default); the model's names
    (``"a/b"`` for a site stored as ``"a.b"``) are accepted."""
    available = [str(v) for v in dt["posterior"].data_vars]
    if var_names is None:
        return available
    if isinstance(var_names, str):
        raise InvalidArgumentError(
            f"var_names must be a list of names, got the string {var_names!r}; pass "
            f"var_names=[{var_names!r}]."
        )
    stored = stored_names(dt)
    names = [stored.get(str(n), str(n)) for n in var_names]
    missing = [n for n in names if n not in available]
    if missing or not names:
        raise InvalidArgumentError(
            f"var_names {list(var_names)!r}: {missing or 'no names'} not in the posterior, whose "
            f"variables are {available}."
        )
    return names


def plot(dt: xr.DataTree, reference: Any = None, path: str | Path | None = None,
         var_names: list[str] | None = None) -> list[Path]:
    """Save the training plot and the marginals plot as PNG files; returns their paths.

    ``path`` (default ``"vidiv_diagnostics.png"``) names the training figure; the marginals go to
    the same name with ``_marginals`` appended before the suffix. ``var_names`` (default: every
    posterior variable) and the ``reference`` keys may use the model's names or the stored ones
    (:mod:`vidiv.diagnostics.names`). Raises :class:`~vidiv.errors.InvalidArgumentError` for a
    ``dt`` that is not a DataTree, unknown ``var_names`` or a missing folder, and
    :class:`~vidiv.errors.NonFiniteError` for reference draws with NaN / +-inf.
    """
    require_tree(dt, "plot")
    path = Path(path or "vidiv_diagnostics.png")
    if not path.parent.is_dir():
        raise InvalidArgumentError(
            f"path {str(path)!r}: the folder {str(path.parent)!r} does not exist; create it "
            "first or pass a path in an existing folder."
        )
    marg_path = path.with_name(f"{path.stem}_marginals{path.suffix or '.png'}")
    names = _var_names(dt, var_names)
    azp, plt = _require_plots()

    fig = _training_figure(dt, plt)
    fig.savefig(path, dpi=100)
    plt.close(fig)

    data = {"VI": dt} if reference is None else {
        "reference": _reference_tree(reference, names, dt), "VI": dt}
    pc = azp.plot_dist(data, var_names=names, kind="kde", backend="matplotlib")
    if reference is not None:
        try:  # arviz-plots marks add_legend as experimental
            pc.add_legend("model")
        except Exception:  # pragma: no cover - legend is cosmetic
            pass
    pc.savefig(str(marg_path))
    plt.close("all")
    return [path, marg_path]
