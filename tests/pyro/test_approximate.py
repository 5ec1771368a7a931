"""``vidiv.pyro.approximate``: the NumPyro tests' twin (closed forms, the result's fields, the
param store, seeding, errors)."""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import vidiv.pyro as vp
from tests.workflow.targets import regression_data, regression_posterior
from vidiv.diagnostics import diagnose
from vidiv.errors import InvalidArgumentError


def regression(X, y):
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    pyro.sample("y", dist.Normal(w @ X.T, 0.5).to_event(1), obs=y)  # broadcasts over draws


def _data():
    return tuple(torch.as_tensor(a, dtype=torch.float64) for a in regression_data())


def test_default_call_on_a_conjugate_regression_is_the_exact_posterior():
    X, y = _data()
    mean, cov = regression_posterior()
    pyro.clear_param_store()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    post = vp.approximate(regression, X, y, progress_bar=False)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left as it was
    assert post.method == "fbgvi" and post.verdict == "good" and post.backend == "pyro"
    np.testing.assert_allclose(post.laplace.mean, mean, rtol=0, atol=1e-6)
    guide = post.guide
    L = (guide.scale[:, None] * guide.scale_tril).detach().numpy()
    np.testing.assert_allclose(guide.loc.detach().numpy(), mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(L @ L.T, cov, rtol=0, atol=1e-6)
    assert post.stages[1].stopped_early and post.stages[1].num_steps < 2000
    assert sorted(pyro.get_param_store().keys()) == [
        "approximate.fbgvi.loc", "approximate.fbgvi.scale", "approximate.fbgvi.scale_tril"]
    assert diagnose(post.datatree).verdict == post.verdict
    w = post.get_samples(20000, seed=1)["w"].numpy()
    assert w.shape == (20000, 2)
    np.testing.assert_allclose(w.mean(0), mean, atol=4 * np.sqrt(np.diag(cov) / 20000).max())
    np.testing.assert_allclose(np.cov(w.T), cov, rtol=0.05)
    five = post.get_samples(5, seed=1)["w"]
    assert torch.equal(five, post.get_samples(5, seed=1)["w"])  # seeded
    assert not torch.equal(five, post.get_samples(5, seed=2)["w"])


def test_named_methods_a_second_call_and_errors():
    X, y = _data()
    mean, _ = regression_posterior()
    lap = vp.approximate(regression, X, y, method="laplace", seed=2, progress_bar=False)
    assert lap.method == "laplace" and lap.verdict == "good"
    np.testing.assert_allclose(lap.guide.loc.detach().numpy(), mean, atol=1e-6)
    # a second call with other data: the stage's old parameters are replaced, not reused
    vis = vp.approximate(regression, X[:10], y[:10], method="vis", seed=2, num_steps=200,
                         progress_bar=False)
    assert vis.method == "vis" and vis.stages[-1].num_steps <= 200
    assert vis.verdict in ("good", "usable"), str(vis)
    ms = vp.approximate(regression, X, y, method="msvgd", seed=2, num_steps=100,
                        progress_bar=False)
    assert ms.guide is None and ms.verdict == "unavailable"
    assert ms.get_samples(100)["w"].shape == (100, 2)
    with pytest.raises(InvalidArgumentError,
                       match=r"^MirroredSVGD holds 100 particles; ask for at most that many\.$"):
        ms.get_samples(101)
    with pytest.raises(InvalidArgumentError, match=r"^approximate: seed must be an integer"):
        vp.approximate(regression, X, y, seed=1.5)
    with pytest.raises(InvalidArgumentError, match=r"^approximate: method must be one of"):
        vp.approximate(regression, X, y, method="nuts")
