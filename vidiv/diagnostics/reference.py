r"""Compare variational draws with reference draws (e.g. posteriordb's NUTS draws), per component.

For each scalar component :math:`\theta_j` present in both (named like ``theta[0]``,
``beta[1, 2]``):

* standardised mean error :math:`|\bar\theta^{VI}_j - \bar\theta^{ref}_j| / \mathrm{sd}^{ref}_j`;
* sd ratio :math:`\mathrm{sd}^{VI}_j / \mathrm{sd}^{ref}_j` (< 1: q too narrow);
* 1-Wasserstein distance between the two empirical marginals
  (``scipy.stats.wasserstein_distance``), in the parameter's units.

Standard deviations use ``ddof=1``.

Example
-------
>>> import numpy as np
>>> from vidiv.diagnostics import to_datatree, compare_to_reference
>>> rng = np.random.default_rng(0)
>>> dt = to_datatree({"mu": rng.normal(size=1000)})
>>> df = compare_to_reference(dt, {"mu": rng.normal(size=5000)})
>>> list(df.columns)[:3]
['mean_vi', 'mean_ref', 'sd_vi']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InvalidArgumentError

__all__ = ["compare_to_reference"]


def _draws_from_tree(dt: xr.DataTree, what: str) -> dict[str, np.ndarray]:
    if "posterior" not in dt.children:
        raise InvalidArgumentError(f"{what} has no 'posterior' group; build it with to_datatree.")
    post = dt["posterior"]
    out = {}
    for name, da in post.data_vars.items():
        sample = [d for d in ("chain", "draw") if d in da.dims]
        if not sample:
            continue
        other = [d for d in da.dims if d not in sample]
        arr = da.transpose(*sample, *other).values
        out[str(name)] = arr.reshape(-1, *arr.shape[len(sample):])
    return out


def _draws_from_mapping(ref: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for name in ref:
        arr = np.asarray(ref[name])
        if arr.dtype.kind in "iuf" and arr.ndim >= 1:
            out[str(name)] = arr.astype(float)
    return out


def _component_names(name: str, shape: tuple[int, ...]) -> list[str]:
    if not shape:
        return [name]
    return [f"{name}[{', '.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def compare_to_reference(
    dt: xr.DataTree, reference: Mapping[str, Any] | xr.DataTree, var_names: list[str] | None = None
):
    """Per-component accuracy of the draws in ``dt`` against ``reference``.

    Parameters
    ----------
    dt : DataTree with a ``posterior`` group (from ``to_datatree``).
    reference : dict name -> array of shape (draws, *shape) (e.g. ``numpy.load("reference.npz")``)
        or a DataTree whose ``posterior`` group holds the reference draws.
    var_names : list of str, optional
        Variables to compare (default: all variables present in both with the same shape).

    Returns
    -------
    pandas.DataFrame indexed by component, columns ``mean_vi, mean_ref, sd_vi, sd_ref,
    std_mean_error, sd_ratio, wasserstein``.
    """
    import pandas as pd
    from scipy.stats import wasserstein_distance

    if not isinstance(dt, xr.DataTree):
        raise InvalidArgumentError(
            f"dt must be an xarray.DataTree from to_datatree, got {type(dt).__name__}."
        )
    vi = _draws_from_tree(dt, "dt")
    if isinstance(reference, xr.DataTree):
        ref = _draws_from_tree(reference, "reference")
    elif isinstance(reference, Mapping):
        ref = _draws_from_mapping(reference)
    else:
        raise InvalidArgumentError(
            "reference must be a dict {name: draws of shape (n_draws, *shape)} or a DataTree "
            f"with a posterior group, got {type(reference).__name__}."
        )
    names = list(var_names) if var_names is not None else [n for n in vi if n in ref]
    if not names:
        raise InvalidArgumentError(
            f"no variable in common: the VI posterior has {sorted(vi)} and the reference "
            f"{sorted(ref)}. Name the reference arrays like the model's sample sites."
        )
    rows, index = [], []
    for name in names:
        if name not in vi or name not in ref:
            raise InvalidArgumentError(
                f"variable {name!r} is missing from the "
                f"{'VI posterior' if name not in vi else 'reference'}; available: VI {sorted(vi)}, "
                f"reference {sorted(ref)}."
            )
        a, b = vi[name], ref[name]
        if a.shape[1:] != b.shape[1:]:
            raise InvalidArgumentError(
                f"variable {name!r} has shape {a.shape[1:]} per draw in the VI posterior but "
                f"{b.shape[1:]} in the reference; the reference must be shaped (draws, *shape)."
            )
        if a.shape[0] < 2 or b.shape[0] < 2:
            raise InvalidArgumentError(
                f"variable {name!r} needs at least 2 draws on each side to estimate a sd."
            )
        a2 = a.reshape(a.shape[0], -1)
        b2 = b.reshape(b.shape[0], -1)
        for j, comp in enumerate(_component_names(name, a.shape[1:])):
            x, y = a2[:, j], b2[:, j]
            m_vi, m_ref = float(x.mean()), float(y.mean())
            s_vi, s_ref = float(x.std(ddof=1)), float(y.std(ddof=1))
            rows.append(
                {
                    "mean_vi": m_vi,
                    "mean_ref": m_ref,
                    "sd_vi": s_vi,
                    "sd_ref": s_ref,
                    "std_mean_error": abs(m_vi - m_ref) / s_ref if s_ref > 0 else np.inf,
                    "sd_ratio": s_vi / s_ref if s_ref > 0 else np.inf,
                    "wasserstein": float(wasserstein_distance(x, y)),
                }
            )
            index.append(comp)
    return pd.DataFrame(rows, index=pd.Index(index, name="parameter"))
