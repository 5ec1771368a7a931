r"""Model scores in unconstrained space, the input of :func:`vidiv.diagnostics.ksd`.

Example::

    points, scores = vidiv.pyro.model_scores(model, {"z": draws})
    print(vidiv.diagnostics.ksd(points, scores))
"""

from __future__ import annotations

import torch

from ..diagnostics.ksd import ModelScores
from ..errors import ModelStructureError
from .results import _np

__all__ = ["model_scores", "ModelScores"]


def model_scores(model, samples: dict, *args, **kwargs) -> ModelScores:
    r"""Scores :math:`\nabla_u \log \tilde p(x, u)` of the model's log joint in UNCONSTRAINED
    coordinates :math:`u = T^{-1}(z)` (Jacobian included: the density the unconstrained draws
    follow), at each constrained draw ``samples[site][i]``.

    Uses Pyro's HMC potential (``pyro.infer.mcmc.util.initialize_model``), evaluated draw by draw
    with ``torch.autograd`` (Pyro's potential is not batched). Returns numpy arrays
    ``points[site]`` = u, ``scores[site]`` = the gradient, each of shape (n, *unconstrained shape).
    Models with subsampled plates are not supported (as in HMC).
    """
    from pyro.infer.mcmc.util import initialize_model

    if not isinstance(samples, dict) or not samples:
        raise ModelStructureError("samples must be a non-empty dict {site: (n, *shape) draws}.")
    init, potential_fn, transforms, _ = initialize_model(
        model, model_args=args, model_kwargs=kwargs
    )
    missing = [k for k in transforms if k not in samples]
    if missing:
        raise ModelStructureError(
            f"samples lack the latent site(s) {missing}; pass a draw for every latent site."
        )
    # the model's dtype and device (e.g. CUDA) are those of its initial unconstrained values
    vals = {
        k: torch.as_tensor(samples[k], dtype=init[k].dtype, device=init[k].device)
        for k in transforms
    }
    n = {v.shape[0] for v in vals.values()}
    if len(n) != 1:
        raise ModelStructureError(f"the sites have different numbers of draws: {sorted(n)}.")
    (n,) = n
    points = {k: transforms[k](v) for k, v in vals.items()}
    grads = {k: [] for k in points}
    for i in range(n):
        u = {k: v[i].detach().clone().requires_grad_(True) for k, v in points.items()}
        pe = potential_fn(u)
        g = torch.autograd.grad(pe, list(u.values()))
        for k, gk in zip(u, g, strict=True):
            grads[k].append(-gk)
    return ModelScores(
        {k: _np(v) for k, v in points.items()},
        {k: _np(torch.stack(v)) for k, v in grads.items()},
    )
