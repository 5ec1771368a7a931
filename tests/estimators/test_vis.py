"""The backend-agnostic VIS surrogates (vidiv.estimators.vis)."""

from __future__ import annotations

import pytest


def test_vis_surrogates_route_point_masses_to_the_map_objective():
    # a point estimate's log q (e.g. -log|J|) follows the IS log-likelihood of log p - log q_point
    # with weights softmax(log w); it gets no score term in the guide surrogate. Values unchanged.
    import torch

    from vidiv.estimators import vis_guide_surrogate, vis_model_surrogate, vis_surrogates

    gen = torch.Generator().manual_seed(0)
    log_p = torch.randn(6, generator=gen, dtype=torch.float64)
    rest = torch.randn(6, generator=gen, dtype=torch.float64)
    point = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    log_q = rest + point
    model, guide = vis_surrogates(log_p, log_q, point.expand(6))
    assert float(model) == pytest.approx(float(vis_model_surrogate(log_p, log_q.detach())))
    assert float(guide) == pytest.approx(float(vis_guide_surrogate(log_p, log_q.detach())))
    (g_model,) = torch.autograd.grad(model, point, retain_graph=True)
    (g_guide,) = torch.autograd.grad(guide, point, allow_unused=True)
    # d/d point log mean exp(log p - rest - point) = -1 (the weights sum to one)
    assert float(g_model) == pytest.approx(-1.0, abs=1e-12)
    assert g_guide is None or float(g_guide) == 0.0
