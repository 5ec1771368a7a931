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
from collections.abc import Mapping, Sequence
from typing import Any

from .._backend import namespace
from .mirror import MirrorMap

Array = Any

__all__ = ["Layout"]


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
        """The concatenated primal coordinates ``θ`` ``(P, n)`` the kernel acts on."""
        return self.join({name: m.primal(values[name]) for name, m, _ in self.sites})

    def dual_score(self, values: Mapping[str, Array], grads: Mapping[str, Array]) -> Array:
        """Flat ``∇_η log p_H`` ``(P, n)`` from value-space gradients of ``log p``."""
        return self.join(
            {name: m.dual_score(values[name], grads[name]) for name, m, _ in self.sites}
        )

    def grad_logdet(self, values: Mapping[str, Array]) -> Array:
        return self.join({name: m.grad_logdet(values[name]) for name, m, _ in self.sites})

    def hess_inv_diag(self, values: Mapping[str, Array]) -> Array:
        return self.join({name: m.hess_inv_diag(values[name]) for name, m, _ in self.sites})

    def _apply(self, method: str, values: Mapping[str, Array], v: Array) -> Array:
        # values: {site: (P, *value_shape)}; v: (P, *extra, n) -> H(θ_p) applied on every row
        extra = v.ndim - 2
        parts = self.split(v)
        out = {}
        for name, m, shape in self.sites:
            val = values[name]
            val = namespace(val).reshape(val, (val.shape[0],) + (1,) * extra + shape)
            out[name] = getattr(m, method)(val, parts[name])
        return self.join(out, lead_ndim=v.ndim - 1)

    def hess_inv(self, values: Mapping[str, Array], v: Array) -> Array:
        """``∇²ψ(θ_p)⁻¹ v[p, ...]`` for ``v`` of shape ``(P, *extra, n)``."""
        return self._apply("hess_inv", values, v)

    def hess(self, values: Mapping[str, Array], v: Array) -> Array:
        """``∇²ψ(θ_p) v[p, ...]`` for ``v`` of shape ``(P, *extra, n)``."""
        return self._apply("hess", values, v)

    def __repr__(self) -> str:
        body = ", ".join(f"{n}: {m.name} {s}" for n, m, s in self.sites)
        return f"Layout({body})"
