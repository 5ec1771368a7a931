"""vidiv.pyro._traces: the shared particle walk (shapes, plates, scales, detaching, errors)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal

from tests.closed_form import conjugate_normal
from tests.pyro.test_objective_models import linear_gaussian, local_mixture
from vidiv.errors import ModelStructureError, NonFiniteError, VidivError
from vidiv.pyro._traces import DetachSamples, guess_max_plate_nesting, trace_particles

LG = conjugate_normal()


def _walk(model, guide, S=5, nesting=1, **kw):
    return trace_particles(model, guide, (), {}, S, nesting, **kw)


def test_global_latent_gives_one_log_weight_per_particle():
    model = linear_gaussian(LG)
    guide = AutoNormal(model)
    p = _walk(model, guide)
    assert p.log_p.shape == (5,) and p.log_q.shape == (5,) and p.scale == 1.0 and p.plates == ()
    z = p.guide_trace.nodes["z"]["value"].reshape(5, 2).detach().numpy()
    torch.testing.assert_close(p.log_p.detach(), torch.as_tensor(LG.log_joint(z)))
    assert p.log_q_score is None and p.non_reparam == ()


def test_local_latents_keep_the_common_plate_unscaled():
    x = torch.linspace(-3, 3, 12)
    model, guide = local_mixture(x, subsample_size=4)
    p = _walk(model, guide, S=3)
    assert p.plates == ("data",) and p.scale == 3.0 and p.log_p.shape == (3, 4)
    idx = p.model_trace.nodes["data"]["value"]
    z = p.guide_trace.nodes["z"]["value"]
    mix = dist.MixtureSameFamily(
        dist.Categorical(torch.tensor([0.5, 0.5])),
        dist.Normal(z.unsqueeze(-1) + torch.tensor([2.0, -2.0]), 1.0),
    )
    expect = dist.Normal(0.0, 1.0).log_prob(z) + mix.log_prob(x[idx])  # per datum, no 3x
    torch.testing.assert_close(p.log_p.detach(), expect.detach())


def test_per_datum_false_sums_with_pyro_scales():
    x = torch.linspace(-3, 3, 12)
    model, guide = local_mixture(x, subsample_size=4)
    pyro.set_rng_seed(1)
    p = _walk(model, guide, S=3)
    pyro.set_rng_seed(1)
    t = _walk(model, guide, S=3, per_datum=False)
    assert t.log_p.shape == (3,) and t.scale == 1.0
    torch.testing.assert_close(t.log_p, 3.0 * p.log_p.sum(-1))
    torch.testing.assert_close(t.log_q, 3.0 * p.log_q.sum(-1))


def test_subsampling_outside_common_plate_is_refused_unless_linear():
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("obs", 10, subsample_size=5):
            pyro.sample("x", dist.Normal(z, 1.0), obs=torch.zeros(5))

    guide = AutoNormal(model)
    with pytest.raises(ModelStructureError, match="plate 'obs' is subsampled .5 of 10.*common"):
        _walk(model, guide)
    assert _walk(model, guide, per_datum=False).log_p.shape == (5,)


def test_detach_samples_leaves_only_parameter_gradients():
    model = linear_gaussian(LG)
    guide = AutoNormal(model)
    p = _walk(model, guide, detach=True)
    assert not p.guide_trace.nodes["z"]["value"].requires_grad
    assert not p.log_p.requires_grad  # the model has no parameters
    loc = pyro.param("AutoNormal.locs.z").unconstrained()
    (g,) = torch.autograd.grad(p.log_q.sum(), loc)
    z = p.guide_trace.nodes["z"]["value"].reshape(5, 2)
    s = pyro.param("AutoNormal.scales.z").detach()
    torch.testing.assert_close(g, ((z - loc.detach()) / s**2).sum(0))  # score only, no path


def test_detach_keeps_delta_log_density_gradient():
    w = torch.tensor(0.7, requires_grad=True)

    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))

    def guide():  # the path density on an auxiliary Delta, the model's site a Delta of it
        end = w * torch.ones(2)
        end = pyro.sample("x_path", dist.Delta(end, log_density=-3.0 * w**2, event_dim=1),
                          infer={"is_auxiliary": True})  # fmt: skip
        pyro.sample("x", dist.Delta(end, event_dim=1))

    with DetachSamples():
        tr = pyro.poutine.trace(guide).get_trace()
    assert not tr.nodes["x_path"]["value"].requires_grad
    assert not tr.nodes["x"]["value"].requires_grad
    p = _walk(model, guide, S=4, nesting=0, detach=True)
    (g,) = torch.autograd.grad(p.log_q.sum(), w)
    assert float(g) == pytest.approx(4 * -6.0 * 0.7)


def test_guess_nesting_and_looped_particles():
    x = torch.linspace(-3, 3, 6)
    model, guide = local_mixture(x)
    assert guess_max_plate_nesting(model, guide, (), {}) == 1
    p = trace_particles(model, guide, (), {}, 3, None, vectorize=False)
    assert p.log_p.shape == (3, 6) and len(p.raw_guide_traces) == 3
    # looped particles see the same minibatch (per-datum bounds need it)
    model, guide = local_mixture(x, subsample_size=2)
    p = trace_particles(model, guide, (), {}, 4, None, vectorize=False)
    idx = [tr.nodes["data"]["value"] for tr in p.raw_guide_traces]
    assert all(torch.equal(i, idx[0]) for i in idx) and p.log_p.shape == (4, 2)
    assert p.scale == 3.0


def test_non_reparameterised_sites_are_reported():
    def model():
        z = pyro.sample("z", dist.Bernoulli(0.3))
        pyro.sample("x", dist.Normal(z, 1.0), obs=torch.tensor(0.5))

    def guide():
        pyro.sample("z", dist.Bernoulli(pyro.param("t", torch.tensor(0.5))))

    p = _walk(model, guide, S=4, nesting=0)
    assert p.non_reparam == ("z",)
    torch.testing.assert_close(
        p.log_q_score, dist.Bernoulli(0.5).log_prob(p.guide_trace.nodes["z"]["value"]).detach()
    )


# ------------------------------------------------------------------------------ errors
def test_no_latent_sites_give_the_likelihood():
    """No latent site (issue 14): accepted, log q = 0 and log w = log p(x) for every particle."""

    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.3))

    p = _walk(model, lambda: None, nesting=0)
    expected = dist.Normal(0.0, 1.0).log_prob(torch.tensor(0.3)).expand(5)
    torch.testing.assert_close(p.log_p, expected)
    torch.testing.assert_close(p.log_q, torch.zeros(5))


def test_enumerated_site():
    def model():
        z = pyro.sample("z", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(z, 1.0), obs=torch.tensor(0.5))

    def guide():
        pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})

    with pytest.raises(ModelStructureError, match="site 'z' asks for enumeration.*TraceEnum_ELBO"):
        _walk(model, guide, nesting=0)


def test_model_latent_missing_from_guide():
    def model():
        pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.sample("b", dist.Normal(0.0, 1.0))

    def guide():
        pyro.sample("a", dist.Normal(0.0, 1.0))

    with pytest.raises(ModelStructureError, match=r"\['b'\] have no site in the guide"):
        _walk(model, guide, nesting=0)


def test_nan_data_names_the_site():
    y = torch.tensor([0.1, float("nan"), 0.3])

    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("n", 3):
            pyro.sample("y", dist.Normal(z, 1.0), obs=y)

    with pytest.raises(NonFiniteError, match="observed site 'y' contains 1 NaN value.s. out of 3"):
        _walk(model, AutoNormal(model))


def test_all_minus_inf_weights():
    def model():
        pyro.sample("z", dist.Uniform(0.0, 1.0, validate_args=False))

    def guide():
        pyro.sample("z", dist.Normal(5.0, 0.1))

    with pytest.raises(NonFiniteError, match="all .*-inf"):
        _walk(model, guide, nesting=0)


def test_undeclared_batch_dims():
    def model():
        pyro.sample("z", dist.Normal(torch.zeros(2, 1), 1.0))  # batch dims without a plate

    def guide():
        pyro.sample("z", dist.Normal(torch.zeros(2, 1), 2.0))

    with pytest.raises(VidivError, match="more batch dims than.*to_event"):
        _walk(model, guide, nesting=0)


# ------------------------------------------------------ the same messages from every objective
def _bad_models():
    def no_latent():  # (a model with no latent site is now fitted by ML; a shape mismatch)
        pyro.sample("z", dist.Normal(torch.zeros(1, 2), 1.0).to_event(2))

    def mismatched_guide():
        pyro.sample("z", dist.Normal(torch.zeros(2, 1), 1.0).to_event(2))

    def enumerated():
        z = pyro.sample("z", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(z, 1.0), obs=torch.tensor(0.5))

    def enum_guide():
        pyro.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})

    def nan_data():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=torch.tensor(float("nan")))

    def outside():
        pyro.sample("z", dist.Uniform(0.0, 1.0, validate_args=False))

    def far_guide():
        pyro.sample("z", dist.Normal(5.0, 0.1))

    return [
        (no_latent, mismatched_guide, ModelStructureError,
         r"Model and guide shapes disagree at site 'z': torch.Size\(\[1, 2\]\) vs "
         r"torch.Size\(\[2, 1\]\)\. The guide must sample each latent site with the model's "
         "shape"),
        (enumerated, enum_guide, ModelStructureError, "does not enumerate"),
        (nan_data, far_guide, NonFiniteError, "observed site 'x' contains 1 NaN value"),
        (outside, far_guide, NonFiniteError, "all .* log weights .* are -inf"),
    ]


@pytest.mark.parametrize("case", range(4))
@pytest.mark.parametrize("objective", ["AlphaDivergence", "ChiSquaredVIS", "LogVariance"])
def test_every_objective_reports_bad_models(objective, case):
    import vidiv.pyro

    model, guide, error, message = _bad_models()[case]
    loss = getattr(vidiv.pyro, objective)(num_particles=4, max_plate_nesting=0)
    for call in (loss.loss, loss.loss_and_grads):
        with pytest.raises(error, match=message):
            call(model, guide)
