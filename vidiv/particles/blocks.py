"""Several latent sites with their own mirror maps: a block-diagonal mirror map on one flat vector.

A :class:`Layout` lists the sites in model order, each with its mirror map and the shape of one
particle's value. The dual particles of all sites are concatenated into one matrix ``η`` of shape
``(P, n)`` (``n`` = total dual size), so the kernel acts on the concatenated primal coordinates
and ``∇²ψ⁻¹`` is block-diagonal. The adapters (Pyro, NumPyro) share this layout, so the same
particles give the same flat vectors in both.

Example:
    >>> import numpy as np
    >>> from vidiv.particles import Layout, SimplexEntropic, PositiveEntropic
    >>> lay = Layout([("w", SimplexEntropic(), (3,)), ("s", PositiveEntropic(), ())])
    >>> lay.size
    3
    >>> vals = lay.to_values(np.zeros((5, 3)))
    >>> vals["w"].shape, vals["s"].shape
    ((5, 3), (5,))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from .._backend import namespace
from .mirror import MirrorMap

Array = Any

__all__ = ["Layout", "check_init"]


class Layout:
    """Sites ``(name, mirror_map, value_shape)`` flattened into one dual vector per particle."""

    def __init__(self, sites: Sequence[tuple[str, MirrorMap, tuple[int, ...]]]):
        self.sites = [(name, m, tuple(int(s) for s in shape)) for name, m, shape in sites]
        self.dual_shapes = {name: m.dual_shape(shape) for name, m, shape in self.sites}
        self.offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for name, _, _ in self.sites:
            size = math.prod(self.dual_shapes[name])
            self.offsets[name] = (start, start + size)
            start += size
        self.size = start

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.sites]

    def maps(self) -> dict[str, MirrorMap]:
        return {name: m for name, m, _ in self.sites}

    # --- flat <-> per-site ------------------------------------------------------------------
    def split(self, flat: Array) -> dict[str, Array]:
        """``(..., n)`` -> ``{site: (..., *dual_shape)}``."""
        xp = namespace(flat)
        lead = tuple(flat.shape[:-1])
        out = {}
        for name, _, _ in self.sites:
            a, b = self.offsets[name]
            out[name] = xp.reshape(flat[..., a:b], lead + self.dual_shapes[name])
        return out

    def join(self, parts: Mapping[str, Array], lead_ndim: int = 1) -> Array:
        """``{site: (..., *dual_shape)}`` -> ``(..., n)`` (``lead_ndim`` leading axes)."""
        arrays = [parts[name] for name in self.names]
        xp = namespace(*arrays)
        lead = tuple(arrays[0].shape[:lead_ndim])
        return xp.concat([xp.reshape(a, lead + (-1,)) for a in arrays], axis=-1)

    # --- maps, site by site ------------------------------------------------------------------
    def to_values(self, eta: Array) -> dict[str, Array]:
        """Constrained values ``{site: (P, *value_shape)}`` from flat duals ``(P, n)``."""
        parts = self.split(eta)
        return {name: m.to_value(parts[name]) for name, m, _ in self.sites}

    def to_dual(self, values: Mapping[str, Array]) -> Array:
        """Flat duals ``(P, n)`` from constrained values ``{site: (P, *value_shape)}``."""
        return self.join({name: m.to_dual(values[name]) for name, m, _ in self.sites})

    def outside(self, values: Mapping[str, Array]) -> dict[str, Array]:
        """``{site: 0-d bool}``: some particle's value is not in the site's open support (its
        mirror map's :meth:`~vidiv.particles.mirror.MirrorMap.interior`)."""
        out = {}
        for name, m, _ in self.sites:
            xp = namespace(values[name])
            out[name] = xp.logical_not(xp.all(m.interior(values[name])))
        return out

    def primal(self, values: Mapping[str, Array]) -> Array:
        """The concatenated primal coordinates ``θ`` ``(P, n)``."""
        return self.join({name: m.primal(values[name]) for name, m, _ in self.sites})

    def kernel_coords(self, values: Mapping[str, Array], dual: Collection[str]) -> Array:
        """The coordinates ``(P, n)`` the kernel acts on: ``η`` for the sites in ``dual``,
        ``θ`` for the others."""
        return self.join({name: m.to_dual(values[name]) if name in dual else m.primal(values[name])
                          for name, m, _ in self.sites})

    def dual_score(self, values: Mapping[str, Array], grads: Mapping[str, Array]) -> Array:
        """Flat ``∇_η log p_H`` ``(P, n)`` from value-space gradients of ``log p``."""
        return self.join(
            {name: m.dual_score(values[name], grads[name]) for name, m, _ in self.sites}
        )

    def grad_logdet(self, values: Mapping[str, Array]) -> Array:
        return self.join({name: m.grad_logdet(values[name]) for name, m, _ in self.sites})

    def hess_inv_diag(self, values: Mapping[str, Array], skip: Collection[str] = ()) -> Array:
        """The diagonal of ``∇²ψ(θ_p)⁻¹`` ``(P, n)``; ones on the sites in ``skip``."""
        def diag(name, m):
            d = m.hess_inv_diag(values[name])
            return namespace(d).ones_like(d) if name in skip else d
        return self.join({name: diag(name, m) for name, m, _ in self.sites})

    def _apply(self, method: str, values: Mapping[str, Array], v: Array,
               skip: Collection[str] = ()) -> Array:
        # values: {site: (P, *value_shape)}; v: (P, *extra, n) -> H(θ_p) applied on every row
        # (the sites in ``skip`` are passed through unchanged)
        extra = v.ndim - 2
        parts = self.split(v)
        out = {}
        for name, m, shape in self.sites:
            if name in skip:
                out[name] = parts[name]
                continue
            val = values[name]
            val = namespace(val).reshape(val, (val.shape[0],) + (1,) * extra + shape)
            out[name] = getattr(m, method)(val, parts[name])
        return self.join(out, lead_ndim=v.ndim - 1)

    def hess_inv(self, values: Mapping[str, Array], v: Array,
                 skip: Collection[str] = ()) -> Array:
        """``∇²ψ(θ_p)⁻¹ v[p, ...]`` for ``v`` of shape ``(P, *extra, n)`` (identity on the
        sites in ``skip``)."""
        return self._apply("hess_inv", values, v, skip)

    def hess(self, values: Mapping[str, Array], v: Array) -> Array:
        """``∇²ψ(θ_p) v[p, ...]`` for ``v`` of shape ``(P, *extra, n)``."""
        return self._apply("hess", values, v)

    def __repr__(self) -> str:
        body = ", ".join(f"{n}: {m.name} {s}" for n, m, s in self.sites)
        return f"Layout({body})"


_SUPPORT_WORDS = {
    "simplex entropic": "the simplex (positive entries summing to 1)",
    "positive entropic": "(0, inf)",
    "unit-interval entropic": "(0, 1)",
    "identity": "the real line",
    "ordered entropic": "increasing vectors",
    "positive-ordered entropic": "positive increasing vectors",
}


def check_init(layout: Layout, init: Mapping[str, Any], num_particles: int,
               as_array: Callable[[Any], Array]) -> dict[str, Array]:
    """Validate user-given initial particles ``{site: constrained values (P, *shape)}``.

    Every latent site of ``layout`` must be given, with shape ``(num_particles, *shape)``,
    finite and strictly inside its support (the mirror map is infinite on the boundary: a
    particle there, or outside, would be NaN after one step). ``as_array`` converts a user value
    to the adapter's array type and dtype. Raises :class:`~vidiv.errors.InvalidArgumentError`
    naming the site, how many particles are bad and what to pass instead.

    >>> import numpy as np
    >>> from vidiv.particles import PositiveEntropic
    >>> lay = Layout([("s", PositiveEntropic(), ())])
    >>> sorted(check_init(lay, {"s": np.ones(4)}, 4, np.asarray))
    ['s']
    """
    from ..errors import InvalidArgumentError

    if not isinstance(init, Mapping):
        raise InvalidArgumentError(
            f"init must be a dict {{site: constrained values (num_particles, *site_shape)}} or "
            f"None (draws from the prior), got {type(init).__name__}."
        )
    missing = [name for name in layout.names if name not in init]
    if missing:
        raise InvalidArgumentError(
            f"init is missing latent site(s) {missing}; give constrained values of shape "
            "(num_particles, *site_shape) for every latent site, or init=None."
        )
    out = {}
    for name, m, shape in layout.sites:
        v = as_array(init[name])
        want = (num_particles, *shape)
        if tuple(v.shape) != want:
            raise InvalidArgumentError(
                f"init[{name!r}] has shape {tuple(v.shape)}; expected {want} "
                "(num_particles, *site_shape)."
            )
        xp = namespace(v)
        flat = xp.reshape(v, (num_particles, -1))
        finite = xp.all(xp.isfinite(flat), axis=1)
        inside = finite & xp.all(xp.reshape(m.interior(v), (num_particles, -1)), axis=1)
        n_bad = int(num_particles - int(xp.sum(inside)))
        if n_bad:
            n_nonfinite = int(num_particles - int(xp.sum(finite)))
            what = f"{n_nonfinite} with NaN/inf values" if n_nonfinite else "outside the support"
            raise InvalidArgumentError(
                f"init[{name!r}]: {n_bad} of {num_particles} particles are not strictly inside "
                f"the site's support, {_SUPPORT_WORDS.get(m.name, m.name)} ({what}); the mirror "
                "map is infinite on the boundary. Pass values strictly inside it (e.g. draws "
                "from the prior), or init=None."
            )
        out[name] = v
    return out
