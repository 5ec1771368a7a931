"""vidiv.pyro.to_datatree on bad input: '/' in site and plate names (stored with '.', the
renaming recorded and undone by diagnose / compare_to_reference), NaN / +-inf observed data
named by site before any draw."""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDelta

import vidiv.pyro as vp
from tests.diagnostics import slash_names as sn
from vidiv.errors import NonFiniteError

Y = torch.tensor(sn.Y)


def conjugate(site: str, plate: str):
    """The conjugate normal model with the given names and its exact posterior as the guide."""

    def model(y):
        mu = pyro.sample(site, dist.Normal(0.0, 1.0))
        with pyro.plate(plate, len(y)):
            pyro.sample(f"{site}_y", dist.Normal(mu, 1.0), obs=y)

    def guide(y):
        pyro.sample(site, dist.Normal(sn.POST_MEAN, math.sqrt(sn.POST_VAR)))

    return model, guide


def test_slash_site_and_plate_names_give_a_tree_and_the_same_report():
    dt = vp.to_datatree(*conjugate("enc/mu", "data/i"), Y, num_samples=500)  # was a ValueError
    sn.check_exact_fit_tree(dt, vp.to_datatree(*conjugate("enc_mu", "data_i"), Y,
                                               num_samples=500))


def test_slash_point_estimate_is_reported_by_its_model_name():
    model, _ = conjugate("enc/mu", "data/i")
    sn.check_point_estimate_tree(vp.to_datatree(model, AutoDelta(model), Y, num_samples=100))


@pytest.mark.parametrize(("bad", "what"), [(math.inf, r"1 \+inf"), (math.nan, "1 NaN"),
                                           (-math.inf, "1 -inf")])
def test_non_finite_observed_data_is_named_before_drawing(bad, what):
    model, guide = conjugate("mu", "data")
    y = Y.clone()
    y[2] = bad
    with pytest.raises(NonFiniteError, match=rf"vidiv.pyro.to_datatree: observed site 'mu_y' "
                       rf"contains {what} value\(s\) out of 5\. .*poutine.mask"):
        vp.to_datatree(model, guide, y, num_samples=100)  # +inf gave 100 draws of log p -inf


def test_masked_non_finite_data_is_not_refused():
    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(y)), pyro.poutine.mask(mask=torch.isfinite(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    _, guide = conjugate("mu", "data")
    y = Y.clone()
    y[1] = math.nan
    with pyro.validation_enabled(False):  # Pyro's own check refuses NaN even where masked
        dt = vp.to_datatree(model, guide, y, num_samples=100)
    assert np.isfinite(dt["sample_stats"]["log_p"].values).all()
