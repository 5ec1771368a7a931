"""Bad options and models the Pyro drivers and guides refuse by name (issue: bad input and
faults): each test asserts the error class and the key words of its message, or the finite
result."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.infer.autoguide import AutoNormal

import vidiv.pyro as vp
from vidiv.errors import InvalidArgumentError, ModelStructureError, NonFiniteError


def positive_model():
    pyro.sample("s", dist.Gamma(2.0, 1.0))
    pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(1.0))


def minus_inf_model():
    pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.factor("f", torch.tensor(-float("inf")))


def no_latent_model():
    pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(1.0))


def discrete_model():
    pyro.sample("k", dist.Bernoulli(0.5))
    pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(1.0))


def truncated_model():
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.factor("f", torch.where(z > 0, 0.0, -float("inf")))


def moving_interval_model():
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    pyro.sample("u", dist.Uniform(a, a + 1.0))


@pytest.fixture(autouse=True)
def _store():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)


@pytest.mark.parametrize(
    ("model", "words"),
    [(no_latent_model, "no latent sample site"), (discrete_model, "latent site 'k' is discrete")],
)
def test_diffusion_guide_refuses_models_without_continuous_latents(model, words):
    svi = SVI(model, vp.DiffusionGuide(model, num_steps=4), pyro.optim.Adam({"lr": 1e-3}),
              vp.LogVariance(4))  # fmt: skip
    with pytest.raises(ModelStructureError, match=words):
        svi.step()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"init_scale": float("nan")}, "init_scale must be a finite positive number, got nan"),
     ({"score_clip": -1.0}, "score_clip must be a positive number, got -1.0")],
)  # fmt: skip
def test_diffusion_guide_options_are_checked(kwargs, words):
    with pytest.raises(InvalidArgumentError, match=words):
        vp.DiffusionGuide(positive_model, **kwargs)


def test_fbgvi_refuses_init_scale_none():
    with pytest.raises(InvalidArgumentError, match="init_scale must be a finite positive number"):
        vp.FBGVI(positive_model, init_scale=None)


def test_fbgvi_refuses_a_support_that_moves_with_another_latent():
    with pytest.raises(ModelStructureError, match="latent site 'u' has a support that depends on "
                                                   "other latent values"):  # fmt: skip
        vp.FBGVI(moving_interval_model).step()


def test_a_minus_inf_factor_is_named_by_the_drivers():
    named = r"not finite at any starting point tried .*site\(s\) \['f'\]"
    with pytest.raises(NonFiniteError, match="FBGVI: .*" + named):
        vp.FBGVI(minus_inf_model).step()
    with pytest.raises(NonFiniteError, match="MirroredSVGD: .*" + named):
        vp.MirroredSVGD(minus_inf_model, num_particles=4).step()


def test_msvgd_refuses_initial_particles_where_log_p_is_minus_inf():
    init = {"z": torch.tensor([-1.0, 0.5, -2.0, 1.0, 2.0])}
    with pytest.raises(NonFiniteError, match=r"-inf or NaN at 2 of 5 initial particles \(given"):
        vp.MirroredSVGD(truncated_model, num_particles=5, init=init).step()


@pytest.mark.parametrize(
    ("init", "words"),
    [({"s": -torch.ones(5)}, r"init\['s'\]: 5 of 5 particles are not strictly inside the "
                             r"site's support, \(0, inf\) \(outside the support\)"),
     ({"s": torch.tensor([1.0, float("nan"), 1.0, 1.0, 0.0])}, r"2 of 5 .* \(1 with NaN/inf"),
     ({"t": torch.ones(5)}, r"init is missing latent site\(s\) \['s'\]")],
)  # fmt: skip
def test_msvgd_checks_a_user_init_against_the_supports(init, words):
    with pytest.raises(InvalidArgumentError, match=words):
        vp.MirroredSVGD(positive_model, num_particles=5, init=init).step()


def test_msvgd_large_step_raises_and_keeps_the_last_finite_particles():
    svgd = vp.MirroredSVGD(positive_model, num_particles=10, optim=pyro.optim.SGD({"lr": 1e3}))
    with pytest.raises(NonFiniteError, match=r"step \d+: the (update made the particles|Stein)"):
        for _ in range(20):
            svgd.step()
    assert svgd.num_steps < 20
    s = svgd.get_samples()["s"]
    assert torch.isfinite(s).all() and (s > 0).all()


def test_cubo_chunk_size_is_checked():
    with pytest.raises(InvalidArgumentError, match="chunk_size must be an integer >= 1, got 0"):
        vp.ChiSquaredVIS().cubo(positive_model, AutoNormal(positive_model), chunk_size=0)
