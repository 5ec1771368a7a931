"""Checks shared by the Pyro and NumPyro tests of '/' in site and plate names: the conjugate
model ``mu ~ N(0, 1)``, ``y_i ~ N(mu, 1)`` with its site named ``enc/mu``, its observed site
``enc/mu_y`` and its plate ``data/i``, fitted by its exact posterior."""

from __future__ import annotations

import json
import math

import numpy as np

from vidiv.diagnostics import compare_to_reference, diagnose, reweighted_summary

Y = [0.3, -0.2, 1.0, 0.5, 0.1]
POST_VAR = 1.0 / (1.0 + len(Y))
POST_MEAN = sum(Y) * POST_VAR


def check_exact_fit_tree(dt, plain) -> None:
    """``dt``: the tree of the exact fit with '/' names; ``plain``: the same fit with '_'."""
    assert list(dt["posterior"].data_vars) == ["enc.mu"]
    assert dt["log_likelihood"]["enc.mu_y"].dims == ("chain", "draw", "data.i")
    assert json.loads(dt.attrs["renamed_sites"]) == {
        "enc/mu": "enc.mu", "enc/mu_y": "enc.mu_y", "data/i": "data.i"
    }
    report, plain_report = diagnose(dt), diagnose(plain)
    assert report.verdict == plain_report.verdict == "good"  # q is the exact posterior
    assert report.khat == plain_report.khat == -math.inf
    assert list(reweighted_summary(dt).index) == ["enc/mu"]
    ref = POST_MEAN + math.sqrt(POST_VAR) * np.random.default_rng(0).normal(size=4000)
    row = compare_to_reference(dt, {"enc/mu": ref}).loc["enc/mu"]
    assert row["std_mean_error"] < 0.15 and abs(row["sd_ratio"] - 1) < 0.1


def check_point_estimate_tree(dt) -> None:
    """``dt``: the tree of an AutoDelta fit of the '/'-named model."""
    assert dt.attrs["point_mass_sites"] == "enc.mu"
    report = diagnose(dt)
    assert report.verdict == "point estimate" and report.point_mass_sites == "enc/mu"
