"""Variational results as an ``xarray.DataTree`` in ArviZ's layout.

Groups (those whose input is given):

==================  ===========================================================================
``posterior``       draws from q, dims ``(chain=1, draw=S, *site dims)``
``sample_stats``    ``log_p`` = log p(x, z), ``log_q`` = log q(z), ``log_weight`` = their difference
``log_likelihood``  per-observation log p(x_i | z), so ``arviz_stats.loo_approximate_posterior``
                    (Magnusson et al. 2019) applies
``observed_data``   the observed values
``optimization``    ``loss`` by ``step``; ``khat`` by ``khat_step`` (the training monitor)
==================  ===========================================================================

Root attributes: ``inference_library``, ``objective``, ``backend``, ``num_draws``, library
versions, and, when ``log_p`` and ``log_q`` are given (S >= 10 finite weights): ``khat``,
``khat_threshold``, ``is_ess``, ``elbo``, ``log_z``, ``log_z_se``, ``cubo``, ``num_weighted``,
``zero_weight_share``. The adapters' ``to_datatree`` add what they read off the guide's trace
(:func:`guide_attrs`): ``point_mass`` (1: every latent site of q is a point mass, e.g.
AutoDelta), ``point_mass_sites``, ``discrete_sites``, ``deterministic_sites`` (comma-separated)
and ``log_q_density`` (1: log q is a density, so constant weights mean q is the posterior).
``sample_stats`` also holds ``psis_log_weight``, the Pareto-smoothed normalised log weights
(``sum(exp(.)) == 1``): weighted summaries of the posterior draws with them are the
PSIS-reweighted estimates (:func:`vidiv.diagnostics.reweighted_summary`). Every attribute is
netCDF-safe (numbers and strings only), and a ``"/"`` in a site or plate name is stored as
``"."`` with the renaming in the root attr ``renamed_sites`` (:mod:`vidiv.diagnostics.names`),
so ``dt.to_netcdf(path)`` followed by ``xarray.open_datatree(path).load()`` gives an identical
tree.

Example
-------
>>> import numpy as np
>>> from vidiv.diagnostics import to_datatree
>>> rng = np.random.default_rng(0)
>>> dt = to_datatree({"theta": rng.normal(size=(500, 3))}, log_p=rng.normal(size=500),
...                  log_q=rng.normal(size=500), dims={"theta": ["school"]})
>>> dict(dt["posterior"]["theta"].sizes)
{'chain': 1, 'draw': 500, 'school': 3}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InvalidArgumentError
from .evidence import can_summarise, evidence_summary
from .names import RENAMED_ATTR, renaming

__all__ = ["to_datatree", "netcdf_safe_attrs", "guide_attrs"]


def guide_attrs(samples: Mapping[str, Any], delta_sites: Sequence[str] = (),
                discrete_sites: Sequence[str] = (),
                deterministic_sites: Sequence[str] = ()) -> dict[str, Any]:
    """Root attrs that say whether q is a point mass and whether log q is a density.

    A site counts as a point mass when the guide samples it from a ``Delta`` and all its draws
    in ``samples`` (site -> array (S, ...)) are identical: AutoDelta's sites, but not the Delta
    sites through which AutoMultivariateNormal & co. place their (varying) latent draws.

    >>> import numpy as np
    >>> attrs = guide_attrs({"mu": np.full((100,), 2.2)}, delta_sites=["mu"])
    >>> attrs["point_mass"], attrs["point_mass_sites"], attrs["log_q_density"]
    (1, 'mu', 0)
    """
    def identical(name: str) -> bool:
        arr = np.asarray(samples[name])
        return arr.shape[0] > 1 and bool(np.all(arr == arr[:1]))

    point = [n for n in delta_sites if n in samples and identical(n)]
    latent = [n for n in samples if n not in set(deterministic_sites)]
    discrete = [n for n in discrete_sites if n in samples]
    return {
        "point_mass": int(bool(latent) and all(n in point for n in latent)),
        "point_mass_sites": ",".join(point),
        "discrete_sites": ",".join(discrete),
        "deterministic_sites": ",".join(n for n in deterministic_sites if n in samples),
        "log_q_density": int(not point and not discrete),
    }


def _versions() -> dict[str, str]:
    import arviz_base
    import arviz_stats

    from .. import __version__

    return {
        "vidiv_version": __version__,
        "arviz_base_version": arviz_base.__version__,
        "arviz_stats_version": arviz_stats.__version__,
        "xarray_version": xr.__version__,
        "numpy_version": np.__version__,
    }


def _safe_value(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, str):
        return str(value)  # plain str: h5netcdf rejects str subclasses (e.g. torch's TorchVersion)
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.ndim == 1:
        return value
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, Sequence) and value and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return np.asarray(value, dtype=float)
    if isinstance(value, Mapping):
        return json.dumps({str(k): _safe_value(v) for k, v in value.items()}, default=str)
    return str(value)


def netcdf_safe_attrs(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Attributes that netCDF stores and reads back unchanged: ``None`` -> ``"none"``,
    ``bool`` -> ``int``, mappings -> JSON strings, other objects -> ``str``."""
    return {str(k): _safe_value(v) for k, v in (attrs or {}).items()}


def _to_numpy(name: str, x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as err:  # noqa: BLE001 - ragged lists, objects numpy cannot convert
        raise InvalidArgumentError(
            f"{name} could not be converted to a numpy array ({err}); pass numeric arrays "
            "(numpy, torch or jax) of one shape."
        ) from None
    if arr.dtype.kind not in "biuf":
        raise InvalidArgumentError(
            f"{name} has dtype {arr.dtype}; pass numeric arrays (numpy, torch or jax)."
        )
    return arr


#: root attrs that hold comma-separated site names (written by :func:`guide_attrs`)
_SITE_LIST_ATTRS = ("point_mass_sites", "discrete_sites", "deterministic_sites")


def _safe_names(samples, log_likelihood, observed, dims, coords, attrs):
    """The inputs with every ``"/"`` in a site or dim name replaced (see
    :mod:`vidiv.diagnostics.names`), and the ``{name: stored name}`` renaming."""
    dims = dict(dims or {})
    for var, given in dims.items():
        if isinstance(given, str) or not isinstance(given, Sequence | np.ndarray):
            raise InvalidArgumentError(
                f"dims[{var!r}] must be a list of dimension names, one per non-draw axis, got "
                f"{given!r}; e.g. dims={{{var!r}: [{str(given)!r}]}}."
            )
    coords, attrs = dict(coords or {}), dict(attrs or {})
    variables = [*samples, *(log_likelihood or {}), *(observed or {}), *dims]
    renamed = renaming(variables, "site")
    dim_names = [d for given in dims.values() for d in given] + list(coords)
    dim_renamed = renaming(dim_names, "dimension")
    if not (renamed or dim_renamed):
        return samples, log_likelihood, observed, dims, coords, attrs, {}

    def var(name):
        return renamed.get(name, name) if isinstance(name, str) else name

    def dim(name):
        return dim_renamed.get(name, name) if isinstance(name, str) else name

    def rekey(values):
        return None if values is None else {var(k): v for k, v in values.items()}

    dims = {var(k): [dim(d) for d in v] for k, v in dims.items()}
    coords = {dim(k): v for k, v in coords.items()}
    for key in _SITE_LIST_ATTRS:
        if isinstance(attrs.get(key), str):
            attrs[key] = ",".join(var(n) for n in attrs[key].split(","))
    return (rekey(samples), rekey(log_likelihood), rekey(observed), dims, coords, attrs,
            {**dim_renamed, **renamed})


def _dims_for(name: str, ndim: int, dims: Mapping[str, Sequence[str]]) -> list[str]:
    given = list(dims.get(name, []))
    if len(given) >= ndim:
        return given[:ndim]
    return given + [f"{name}_dim_{k}" for k in range(len(given), ndim)]


def _per_draw(name: str, values: Mapping[str, Any] | None, S: int) -> dict[str, np.ndarray]:
    out = {}
    for site, x in (values or {}).items():
        arr = _to_numpy(f"{name}[{site!r}]", x)
        if arr.ndim == 0 or arr.shape[0] != S:
            raise InvalidArgumentError(
                f"{name}[{site!r}] has shape {arr.shape} but the posterior has S={S} draws; "
                "every per-draw array must be shaped (S, *shape) with the draws on axis 0."
            )
        out[site] = arr
    return out


def _dataset(data: Mapping[str, np.ndarray], sample: bool, dims, coords) -> xr.Dataset:
    lead = ["chain", "draw"] if sample else []
    variables = {}
    for name, arr in data.items():
        arr = arr[None] if sample else arr
        site_dims = _dims_for(name, arr.ndim - len(lead), dims)
        variables[name] = (lead + site_dims, arr)
    ds = xr.Dataset(variables)
    used = {d: ds.sizes[d] for d in ds.dims}
    new_coords = {}
    for d, size in used.items():
        if d in coords:
            c = np.asarray(coords[d])
            if c.shape != (size,):
                raise InvalidArgumentError(
                    f"coords[{d!r}] has {c.size} entries but dimension {d!r} has size {size}; "
                    "give one label per element."
                )
            new_coords[d] = c
        else:
            new_coords[d] = np.arange(size)
    return ds.assign_coords(new_coords)


def _optimization(losses, khat_trace) -> xr.Dataset | None:
    variables, coords = {}, {}
    if losses is not None:
        loss = _to_numpy("losses", losses).astype(float).reshape(-1)
        variables["loss"] = ("step", loss)
        coords["step"] = np.arange(loss.shape[0])
    if khat_trace is not None:
        kt = np.asarray(khat_trace, dtype=float)
        if kt.size == 0:
            kt = kt.reshape(0, 2)
        if kt.ndim != 2 or kt.shape[1] != 2:
            raise InvalidArgumentError(
                f"khat_trace has shape {kt.shape}; pass (step, khat) pairs, shape (n, 2), as "
                "returned in `fit(...).khat`."
            )
        variables["khat"] = ("khat_step", kt[:, 1])
        coords["khat_step"] = kt[:, 0].astype(np.int64)
    if not variables:
        return None
    return xr.Dataset(variables, coords=coords)


def to_datatree(
    samples: Mapping[str, Any],
    log_p: Any = None,
    log_q: Any = None,
    *,
    log_likelihood: Mapping[str, Any] | None = None,
    observed: Mapping[str, Any] | None = None,
    losses: Any = None,
    khat_trace: Any = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    coords: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataTree:
    """Build an ArviZ ``DataTree`` from variational draws (numpy, torch or jax arrays).

    Parameters
    ----------
    samples : dict site -> array (S, *shape)
        Draws from q (constrained values). Stored as one chain of S draws.
    log_p, log_q : array (S,), optional
        log p(x, z_s) and log q(z_s). Without ``log_q`` (particle methods) the sample_stats group
        holds ``log_p`` only and no k-hat/evidence attributes are computed.
    log_likelihood : dict observed site -> array (S, *obs_shape), optional
        Per-observation log likelihood at each draw.
    observed : dict site -> array, optional
        Observed data (no draw axis).
    losses : array (num_steps,), optional
        Training loss trace. ``khat_trace``: (step, k-hat) pairs, shape (n, 2).
    dims : dict variable -> list of dim names (for the non-draw axes, e.g. plate names);
        axes not named get ``<var>_dim_<k>``. ``coords``: dict dim -> labels.
    attrs : dict, optional
        Extra root attributes (e.g. ``objective``, ``backend``, ``pyro_version``); made
        netCDF-safe.

    Notes
    -----
    A ``"/"`` in a site or dim name (``pyro.sample("enc/z", ...)``) is a group separator in a
    DataTree: such a name is stored with ``"."`` for ``"/"`` and the renaming recorded as JSON
    in the root attr ``renamed_sites`` (see :mod:`vidiv.diagnostics.names`).
    """
    if not isinstance(samples, Mapping) or not samples:
        raise InvalidArgumentError(
            "samples must be a non-empty dict {site: array of shape (S, *shape)}, e.g. "
            "{'theta': draws}; got " + (type(samples).__name__ if samples is not None else "None")
        )
    samples, log_likelihood, observed, dims, coords, attrs, renamed = _safe_names(
        samples, log_likelihood, observed, dims, coords, attrs
    )
    first = _to_numpy(f"samples[{next(iter(samples))!r}]", next(iter(samples.values())))
    if first.ndim == 0 or first.shape[0] == 0:
        raise InvalidArgumentError(
            f"samples must have the draws on axis 0, shape (S, *shape) with S >= 1; "
            f"samples[{next(iter(samples))!r}] has shape {first.shape}."
        )
    S = int(first.shape[0])
    posterior = _per_draw("samples", samples, S)

    stats = {}
    for name, x in (("log_p", log_p), ("log_q", log_q)):
        if x is not None:
            arr = _to_numpy(name, x).astype(float)
            if arr.shape != (S,):
                raise InvalidArgumentError(
                    f"{name} has shape {arr.shape} but the samples have S={S} draws; pass one "
                    f"value per draw, shape ({S},)."
                )
            stats[name] = arr
    if "log_p" in stats and "log_q" in stats:
        stats["log_weight"] = stats["log_p"] - stats["log_q"]
        if can_summarise(stats["log_p"], stats["log_q"]):
            from .psis import psis_log_weights

            stats["psis_log_weight"] = psis_log_weights(stats["log_weight"])[0]

    tree: dict[str, xr.Dataset] = {"posterior": _dataset(posterior, True, dims, coords)}
    if stats:
        tree["sample_stats"] = _dataset(stats, True, {}, {})
    loglik = _per_draw("log_likelihood", log_likelihood, S)
    if loglik:
        tree["log_likelihood"] = _dataset(loglik, True, dims, coords)
    if observed:
        obs = {k: _to_numpy(f"observed[{k!r}]", v) for k, v in observed.items()}
        tree["observed_data"] = _dataset(obs, False, dims, coords)
    opt = _optimization(losses, khat_trace)
    if opt is not None:
        tree["optimization"] = opt

    root = {"inference_library": "vidiv", "objective": "unknown", "backend": "numpy"}
    root.update(_versions())
    root["num_draws"] = S
    if can_summarise(stats.get("log_p"), stats.get("log_q")):
        summary = evidence_summary(stats["log_p"], stats["log_q"])
        root.update({k: v for k, v in vars(summary).items() if k != "num_draws"})
    root.update(attrs)
    if renamed:
        root[RENAMED_ATTR] = renamed
    dt = xr.DataTree.from_dict(tree)
    dt.attrs = netcdf_safe_attrs(root)
    for group in tree:
        dt[group].attrs = {"created_by": "vidiv"}
    return dt

