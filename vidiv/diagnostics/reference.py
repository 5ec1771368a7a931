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

from ..errors import InvalidArgumentError, NonFiniteError
from .names import original_names, require_tree, stored_names

__all__ = ["compare_to_reference", "check_finite_draws"]


def _draws_from_tree(dt: xr.DataTree, what: str) -> dict[str, np.ndarray]:
    """The posterior draws of ``dt``, flattened over chains and draws, keyed by the model's
    names (a name stored with ``"."`` for ``"/"`` is given back its ``"/"``)."""
    if "posterior" not in dt.children:
        raise InvalidArgumentError(f"{what} has no 'posterior' group; build it with to_datatree.")
    post = dt["posterior"]
    model_name = original_names(dt)
    out = {}
    for name, da in post.data_vars.items():
        sample = [d for d in ("chain", "draw") if d in da.dims]
        if not sample:
            continue
        other = [d for d in da.dims if d not in sample]
        arr = da.transpose(*sample, *other).values
        out[model_name.get(str(name), str(name))] = arr.reshape(-1, *arr.shape[len(sample):])
    return out


def _draws_from_mapping(ref: Mapping[str, Any], stored: Mapping[str, str]):
    """(numeric arrays with a draw axis, ``{name: why skipped}``); a key spelled as ``dt``
    stores it (``"a.b"`` for the site ``"a/b"``) is read as the model's name."""
    out, skipped = {}, {}
    model_name = {v: k for k, v in stored.items()}
    for name in ref:
        arr = np.asarray(ref[name])
        key = str(name)
        if key in model_name and model_name[key] not in ref:
            key = model_name[key]
        if arr.dtype.kind in "iuf" and arr.ndim >= 1:
            out[key] = arr.astype(float)
        else:
            skipped[key] = f"dtype {arr.dtype}, shape {arr.shape}"
    return out, skipped


def check_finite_draws(draws: Mapping[str, np.ndarray], what: str, fix: str) -> None:
    """Raise :class:`~vidiv.errors.NonFiniteError` naming the first variable of ``draws``
    (name -> array (n_draws, *shape)) that holds NaN or +-inf, how many draws hold them and
    (``fix``) what to do."""
    for name, arr in draws.items():
        arr = np.asarray(arr)
        if arr.dtype.kind != "f" or arr.ndim == 0:
            continue
        bad = ~np.isfinite(arr.reshape(arr.shape[0], -1))
        if not bad.any():
            continue
        cols = [c for c, b in zip(_component_names(name, arr.shape[1:]), bad.any(axis=0),
                                  strict=True) if b]
        kinds = " and ".join(k for k, f in (("NaN", np.isnan), ("+-inf", np.isinf))
                             if f(arr).any())
        raise NonFiniteError(
            f"{what} draws of {name!r} hold {kinds}: {int(bad.any(axis=1).sum())} of "
            f"{arr.shape[0]} draws (at {', '.join(cols[:5])}{' ...' if len(cols) > 5 else ''}), "
            f"so every summary of them would be NaN. {fix}"
        )


_DROP = ("Drop those draws first, e.g. x = x[np.isfinite(x).reshape(len(x), -1).all(axis=1)], "
         "or regenerate the reference.")
_GUIDE = ("The guide produced invalid values: check its scales and support, or drop the "
          "site from the comparison with var_names.")


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
        Names are the model's (``"enc/z"``); the stored spelling (``"enc.z"``, see
        :mod:`vidiv.diagnostics.names`) is accepted too, in ``var_names`` and as reference keys.

    Returns
    -------
    pandas.DataFrame indexed by component, columns ``mean_vi, mean_ref, sd_vi, sd_ref,
    std_mean_error, sd_ratio, wasserstein``.

    Raises
    ------
    NonFiniteError
        if the draws compared (reference or VI) hold NaN or +-inf, naming the variable, its
        components and the number of such draws: their summaries would be NaN.
    InvalidArgumentError
        for a ``dt`` that is not a DataTree, names missing on either side, mismatched shapes,
        or fewer than 2 draws.
    """
    import pandas as pd
    from scipy.stats import wasserstein_distance

    require_tree(dt, "compare_to_reference")
    vi = _draws_from_tree(dt, "dt")
    skipped: dict[str, str] = {}
    if isinstance(reference, xr.DataTree):
        ref = _draws_from_tree(require_tree(reference, "compare_to_reference (reference)"),
                               "reference")
    elif isinstance(reference, Mapping):
        ref, skipped = _draws_from_mapping(reference, stored_names(dt))
    else:
        raise InvalidArgumentError(
            "reference must be a dict {name: draws of shape (n_draws, *shape)} or a DataTree "
            f"with a posterior group, got {type(reference).__name__}."
        )
    model_name = original_names(dt)
    if var_names is None:
        names = [n for n in vi if n in ref]
    elif isinstance(var_names, str):
        raise InvalidArgumentError(
            f"var_names must be a list of names, got the string {var_names!r}; pass "
            f"var_names=[{var_names!r}]."
        )
    else:
        names = [model_name.get(str(n), str(n)) for n in var_names]
    unusable = "".join(f"; {k!r} was skipped ({why}: pass numeric draws shaped (n_draws, "
                       "*shape))" for k, why in skipped.items() if k in vi)
    if not names:
        raise InvalidArgumentError(
            f"no variable in common: the VI posterior has {sorted(vi)} and the reference "
            f"{sorted(ref)}{unusable}. Name the reference arrays like the model's sample sites."
        )
    for name in names:
        if name not in vi or name not in ref:
            why = f" ({skipped[name]}: pass numeric draws)" if name in skipped else ""
            raise InvalidArgumentError(
                f"variable {name!r} is missing from the "
                f"{'VI posterior' if name not in vi else 'reference' + why}; available: VI "
                f"{sorted(vi)}, reference {sorted(ref)}."
            )
    check_finite_draws({n: ref[n] for n in names}, "reference", _DROP)
    check_finite_draws({n: vi[n] for n in names}, "VI posterior", _GUIDE)
    rows, index = [], []
    for name in names:
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
