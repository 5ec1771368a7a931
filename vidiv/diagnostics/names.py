"""Site and plate names that an ``xarray.DataTree`` can hold, and what every diagnostics function
accepts as a result.

A ``"/"`` separates groups in a DataTree path (and in HDF5 / netCDF files), so a variable or a
dimension cannot be named ``"a/b"``. Pyro and NumPyro accept any string as a site or plate name,
so :func:`vidiv.diagnostics.to_datatree` stores such a name with every ``"/"`` replaced by
``"."`` (``"a/b"`` -> ``"a.b"``) and records the renaming as JSON in the root attribute
``renamed_sites`` (``{"a/b": "a.b"}``). The tables and reports (:func:`diagnose`,
:func:`reweighted_summary`, :func:`compare_to_reference`) speak the model's own names again, and
accept either spelling where they take names (``var_names``, reference keys).

Example
-------
>>> import numpy as np
>>> from vidiv.diagnostics import to_datatree
>>> dt = to_datatree({"enc/z": np.zeros((4, 2))})
>>> list(dt["posterior"].data_vars), dt.attrs["renamed_sites"]
(['enc.z'], '{"enc/z": "enc.z"}')
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import xarray as xr

from ..errors import InvalidArgumentError

__all__ = ["RENAMED_ATTR", "renaming", "original_names", "stored_names", "require_tree"]

#: root attribute holding the JSON mapping {model name: stored name}
RENAMED_ATTR = "renamed_sites"
_SEP, _REPLACEMENT = "/", "."


def renaming(names: Iterable[Any], what: str = "site") -> dict[str, str]:
    """``{name: stored name}`` for the ``names`` that hold a ``"/"``.

    Raises :class:`~vidiv.errors.InvalidArgumentError` when a stored name would equal another
    of the ``names`` (``"a/b"`` next to ``"a.b"``).
    """
    names = [n for n in dict.fromkeys(names) if isinstance(n, str)]
    out = {n: n.replace(_SEP, _REPLACEMENT) for n in names if _SEP in n}
    taken = {n for n in names if n not in out}
    for name, new in out.items():
        if new in taken:
            raise InvalidArgumentError(
                f"{what} name {name!r} holds a '/', which an xarray.DataTree reads as a group "
                f"separator; vidiv stores it as {new!r}, but there is already a {what} of that "
                f"name. Rename one of the two {what}s in the model (e.g. "
                f"{name.replace(_SEP, '_')!r})."
            )
        taken.add(new)
    return out


def stored_names(dt: xr.DataTree) -> dict[str, str]:
    """``{model name: name stored in dt}`` for the names :func:`to_datatree` renamed."""
    raw = dt.attrs.get(RENAMED_ATTR)
    if not raw:
        return {}
    try:
        mapping = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"dt.attrs[{RENAMED_ATTR!r}] = {raw!r} is not the JSON mapping {{model name: stored "
            "name}} that to_datatree writes; delete the attribute or rebuild the tree."
        ) from None
    return {str(k): str(v) for k, v in mapping.items()}


def original_names(dt: xr.DataTree) -> dict[str, str]:
    """``{name stored in dt: model name}``, the inverse of :func:`stored_names`."""
    return {v: k for k, v in stored_names(dt).items()}


def require_tree(dt: Any, who: str, posterior: bool = True) -> xr.DataTree:
    """``dt`` if it is a DataTree (with a ``posterior`` group when ``posterior``); otherwise
    raise :class:`~vidiv.errors.InvalidArgumentError` saying how to build one."""
    build = (
        "Build one from the fitted model and guide with vidiv.pyro.to_datatree(model, guide, "
        "*args, num_samples=1000) or vidiv.numpyro.to_datatree(model, guide, svi_result.params, "
        "*args), with the .to_datatree(...) method of a MirroredSVGD driver or a diffusion guide, "
        "or from arrays of draws with vidiv.diagnostics.to_datatree(samples, log_p=..., log_q=...)."
    )
    if not isinstance(dt, xr.DataTree):
        got = type(dt).__name__
        hint = ""
        if isinstance(dt, dict):
            hint = " A dict of draws is not enough: wrap it in a tree first."
        elif isinstance(dt, xr.Dataset):
            hint = " An xarray.Dataset is one group of a tree: pass the whole tree."
        elif hasattr(dt, "losses") and hasattr(dt, "khat"):
            hint = " A FitResult is the training record: pass it as losses= to to_datatree."
        raise InvalidArgumentError(
            f"{who} expects an xarray.DataTree of variational results, got {got}.{hint} {build}"
        )
    if posterior and "posterior" not in dt.children:
        where = f" (this is the group {dt.path!r} of a tree: pass the root)" if dt.parent else ""
        raise InvalidArgumentError(
            f"{who} needs a DataTree with a 'posterior' group, and this one has "
            f"{sorted(dt.children) or 'no groups'}{where}. {build}"
        )
    return dt
