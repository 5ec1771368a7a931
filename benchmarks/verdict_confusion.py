"""Does ``diagnose`` keep its promise? Verdict x actual accuracy on every fit we can re-create.

For each fit it runs ``vidiv.diagnostics.diagnose`` and scores the raw draws against reference
draws (posteriordb NUTS, or exact draws):

* **ok**: max_j |mean_j - mean_ref_j| / sd_ref_j <= 0.25 and every sd_j / sd_ref_j in
  [0.8, 1.25] (the promise of a "good" or "usable" verdict; see ``vidiv.diagnostics.verdict``);
  **off** otherwise;
* the verdict: ``good``, ``usable``, ``use reweighted``, ``point estimate``, ``do not trust`` or
  ``unavailable``.

Target: no off fit is ``good`` or ``usable`` (a *violation*); an ok fit with a pessimistic
verdict is a *false alarm*. The fits (parts, ``--only``):

``demo``
    every fit ``vidiv demo`` makes -- both backends, every method, at the demo's full steps and at
    its ``VIDIV_SMOKE=1`` steps -- in a child process, float32 and 1000 draws as the demo runs;
``demo-poor``
    Pyro on the demo's eight schools: AutoDelta (Trace_ELBO; ChiSquaredVIS, whose detached
    samples leave a Delta frozen unless the objective handles it), AutoMultivariateNormal at its
    initial parameters (a fit that never moved), AutoNormal after 30 steps;
``tutorials``
    01 (Pyro objectives, AutoNormal), 02 (FBGVI and Adam-SVI on the logistic regression, plus
    50 steps), 03 (MirroredSVGD: particles, verdict "unavailable"), 05 (AutoIAFNormal +
    Trace_ELBO and DiffusionGuide + LogVariance on four modes, exact reference draws), 06
    (centred mean-field and non-centred full-rank eight schools), at the notebooks' smoke steps;
    04 (model learning: no posterior reference) is not re-created;
``posteriordb``
    ``benchmarks/posteriordb.py``'s fits at 300 steps instead of 3000 (Laplace start,
    AlphaDivergence, ChiSquaredVIS, LogVariance) and poor fits from the host's default start:
    AutoDelta, AutoNormal at its init (frozen), AutoNormal after 100 steps (first 3 posteriors);
``synthetic``
    Gaussians in each posteriordb model's unconstrained space from the reference draws' moments:
    exact, sd x0.7 / 0.9 / 1.15 / 1.5 / 3, mean +0.15 / +0.5 sd, mean-field with the
    conditional or the marginal sds, collapsed (sd x 1e-6): fits on both sides of the boundary.

Writes ``benchmarks/results/verdict_confusion.json`` (the table, the violations and one row per
fit, with the PSIS-reweighted moments' error too) and ``verdict_confusion.md``::

    nice python -m benchmarks.verdict_confusion [--only demo tutorials ...] [--resume]

``--resume`` keeps the rows of the output that ran and reruns the fits that raised (e.g. while
an objective is being edited). About 20-25 minutes on one busy core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "verdict_confusion.json"
MEAN_TOL, SD_LO, SD_HI = 0.25, 0.8, 1.25
VERDICTS = ("good", "usable", "use reweighted", "point estimate", "do not trust", "unavailable")
NUM_DRAWS = 2000


def _setup(float64: bool = True) -> None:
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    import jax
    import torch

    jax.config.update("jax_enable_x64", float64)
    jax.config.update("jax_platform_name", "cpu")
    if float64:
        torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)


def score(draws: dict, ref: dict) -> dict:
    """Max standardised mean error and min/max sd ratio of the raw draws over the components
    present in both ``draws`` and ``ref`` (arrays with draws on axis 0)."""
    errs, ratios, worst = [], [], ("", 0.0)
    for k, r in ref.items():
        if k not in draws:
            continue
        x = np.asarray(draws[k], float).reshape(len(draws[k]), -1)
        r2 = np.asarray(r, float).reshape(len(r), -1)
        sd_ref = r2.std(0, ddof=1)
        e = np.abs(x.mean(0) - r2.mean(0)) / sd_ref
        errs.extend(e)
        ratios.extend(x.std(0, ddof=1) / sd_ref)
        if e.max() > worst[1]:
            worst = (k, float(e.max()))
    errs, ratios = np.asarray(errs), np.asarray(ratios)
    return {"max_std_mean_error": float(errs.max()), "min_sd_ratio": float(ratios.min()),
            "max_sd_ratio": float(ratios.max()), "worst_site": worst[0],
            "bad": bool(errs.max() > MEAN_TOL or ratios.min() < SD_LO or ratios.max() > SD_HI)}


def _posterior(dt) -> dict:
    post = dt["posterior"].dataset
    return {str(k): post[k].values.reshape(-1, *post[k].shape[2:]) for k in post.data_vars}


def score_weighted(draws: dict, ref: dict, log_w: np.ndarray) -> dict:
    """``score`` of the PSIS-reweighted moments (``log_w``: normalised log weights, one per
    draw): what a user who follows "use reweighted" gets."""
    w = np.exp(np.asarray(log_w, float))
    w = w / w.sum()
    errs, ratios = [], []
    for k, r in ref.items():
        if k not in draws:
            continue
        x = np.asarray(draws[k], float).reshape(len(draws[k]), -1)
        r2 = np.asarray(r, float).reshape(len(r), -1)
        sd_ref = r2.std(0, ddof=1)
        ok = w > 0
        mu = (w[ok, None] * x[ok]).sum(0)
        var = (w[ok, None] * (x[ok] - mu) ** 2).sum(0) / max(1 - float((w**2).sum()), 1e-300)
        errs.extend(np.abs(mu - r2.mean(0)) / sd_ref)
        ratios.extend(np.sqrt(var) / sd_ref)
    errs, ratios = np.asarray(errs), np.asarray(ratios)
    return {"psis_max_std_mean_error": float(errs.max()),
            "psis_min_sd_ratio": float(ratios.min()), "psis_max_sd_ratio": float(ratios.max()),
            "psis_bad": bool(errs.max() > MEAN_TOL or ratios.min() < SD_LO
                             or ratios.max() > SD_HI)}


# phrases a report may print only with the verdicts listed (the report must agree with itself)
_CLAIMS = {
    "can be trusted": ("good",),
    "q covers the posterior": ("good",),
    "q equals the posterior": ("good",),
    "are usable": ("usable",),
    "is usable": ("usable",),
    "do not trust": ("do not trust",),
}


def report_problems(rep) -> list[str]:
    """Lines of ``str(rep)`` that contradict its verdict (empty: the report is consistent)."""
    text = str(rep)
    problems = []
    if rep.verdict.upper() not in text:
        problems.append("verdict line missing")
    low = rep.message.lower()
    for phrase, allowed in _CLAIMS.items():
        if phrase in low and rep.verdict not in allowed:
            problems.append(f"message says {phrase!r} with verdict {rep.verdict!r}")
    if rep.verdict in ("good", "usable") and "psis moments" not in text.lower():
        problems.append("good/usable without the raw-vs-PSIS moment line")
    return problems


def row_for(source: str, fit: str, backend: str, dt, ref: dict, seconds: float,
            derive=None) -> dict:
    from vidiv.diagnostics import diagnose

    rep = diagnose(dt)
    draws = _posterior(dt)
    if derive is not None:
        draws = derive(draws)
    row = {"source": source, "fit": fit, "backend": backend, "seconds": round(seconds, 2),
           "draws": rep.num_draws, "verdict": rep.verdict, "khat": rep.khat,
           "is_ess_fraction": rep.is_ess / rep.num_draws if rep.num_draws else float("nan"),
           "sandwich_width": rep.sandwich_width, "zero_weight_share": rep.zero_weight_share,
           "max_mean_shift_vs_psis": rep.max_mean_shift,
           "worst_sd_ratio_vs_psis": rep.worst_sd_ratio, "message": rep.message}
    row.update(score(draws, ref))
    stats = dt["sample_stats"] if "sample_stats" in dt.children else None
    if stats is not None and "psis_log_weight" in stats.data_vars:
        lw = np.asarray(stats["psis_log_weight"].values, float).reshape(-1)
        if np.isfinite(lw).any():
            row.update(score_weighted(draws, ref, lw))
    row["report_problems"] = report_problems(rep)
    return row


# ------------------------------------------------------------------------------------- demo
def demo_cases():
    """Every fit ``vidiv demo`` makes: both backends, every method, at the demo's full steps and
    at its ``VIDIV_SMOKE=1`` steps (run in a child process in float32, as the demo runs)."""
    from vidiv._demo import models
    from vidiv._demo.runners import DEFAULT_STEPS, METHODS, RUNNERS

    ref = models.reference()
    for scale in (10, 1):
        for backend in ("numpyro", "pyro"):
            for method in METHODS:
                steps = max(50, DEFAULT_STEPS[method] // scale)

                def run(backend=backend, method=method, steps=steps):
                    fit = RUNNERS[backend](method, steps, 0, False)
                    return fit.datatree, fit.seconds

                yield "demo", f"{method} {steps} steps", backend, run, ref, None


def demo_poor_cases():
    """Deliberately poor Pyro fits of the demo's eight schools (float64): point masses, a guide
    that never moved, few steps, ChiSquaredVIS on an AutoDelta (detached samples: frozen unless
    the objective gives Delta sites a gradient)."""
    from vidiv._demo import models

    ref = models.reference()
    for guide_name, loss_name, steps in (("AutoDelta", "Trace_ELBO", 500),
                                         ("AutoDelta", "ChiSquaredVIS", 300),
                                         ("AutoMultivariateNormal", "Trace_ELBO", 0),
                                         ("AutoNormal", "Trace_ELBO", 30)):
        def run(guide_name=guide_name, loss_name=loss_name, steps=steps):
            import pyro
            import pyro.infer.autoguide as ag
            from pyro.infer import SVI, Trace_ELBO

            import vidiv.pyro as vp

            pyro.clear_param_store()
            pyro.set_rng_seed(0)
            model = models.pyro_model()
            guide = getattr(ag, guide_name)(model)
            loss = (Trace_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
                    if loss_name == "Trace_ELBO" else vp.ChiSquaredVIS(num_particles=64))
            svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), loss=loss)
            t0 = time.perf_counter()
            guide()  # builds the parameters (a 0-step fit stays at them)
            for _ in range(steps):
                svi.step()
            seconds = time.perf_counter() - t0
            return vp.to_datatree(model, guide, num_samples=NUM_DRAWS,
                                  objective=f"{guide_name} {loss_name}"), seconds

        label = (f"{guide_name} at its init (frozen, 0 steps)" if steps == 0
                 else f"{guide_name} {loss_name} {steps} steps")
        yield "demo model (poor)", label, "pyro", run, ref, None


# -------------------------------------------------------------------------------- tutorials
def _eight_schools_numpyro():
    import numpyro
    import numpyro.distributions as dist

    def centred(sigma, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("school", len(sigma)):
            theta = numpyro.sample("theta", dist.Normal(mu, tau))
            numpyro.sample("y", dist.Normal(theta, sigma), obs=y)

    def non_centred(sigma, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("school", len(sigma)):
            theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
            numpyro.deterministic("theta", mu + tau * theta_trans)
            numpyro.sample("y", dist.Normal(mu + tau * theta_trans, sigma), obs=y)

    return centred, non_centred


def tutorial_cases():
    from vidiv._demo import models

    ref = models.reference()

    # 01: Pyro, AutoNormal, four objectives, 700 steps (smoke size)
    for name in ("Trace_ELBO", "AlphaDivergence(0.5)", "ChiSquaredVIS", "LogVariance"):
        def run01(name=name):
            import pyro
            from pyro.infer import SVI, Trace_ELBO
            from pyro.infer.autoguide import AutoNormal
            from pyro.optim import ClippedAdam

            import vidiv.pyro as vp

            losses = {
                "Trace_ELBO": lambda: Trace_ELBO(num_particles=8, vectorize_particles=True),
                "AlphaDivergence(0.5)": lambda: vp.AlphaDivergence(alpha=0.5, num_particles=16),
                "ChiSquaredVIS": lambda: vp.ChiSquaredVIS(num_particles=64),
                "LogVariance": lambda: vp.LogVariance(num_particles=16),
            }
            steps = 700
            pyro.clear_param_store()
            pyro.set_rng_seed(0)
            model = models.pyro_model()
            guide = AutoNormal(model)
            svi = SVI(model, guide, ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / steps)}),
                      loss=losses[name]())
            t0 = time.perf_counter()
            for _ in range(steps):
                svi.step()
            seconds = time.perf_counter() - t0
            return vp.to_datatree(model, guide, num_samples=NUM_DRAWS, objective=name), seconds

        yield "tutorial 01", f"AutoNormal {name} 700 steps", "pyro", run01, ref, None

    # 06: centred AutoNormal and non-centred AutoMultivariateNormal, Trace_ELBO, 600 steps
    for which in ("centred AutoNormal", "non-centred AutoMultivariateNormal"):
        def run06(which=which):
            import jax
            import numpyro
            from numpyro.infer import SVI, Trace_ELBO
            from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

            import vidiv.numpyro as vn

            centred, non_centred = _eight_schools_numpyro()
            data = models.data()
            model = centred if which.startswith("centred") else non_centred
            guide = (AutoNormal if which.startswith("centred") else AutoMultivariateNormal)(model)
            steps = 600
            svi = SVI(model, guide, numpyro.optim.Adam(lambda i: 0.05 * 0.1 ** (i / steps)),
                      Trace_ELBO(num_particles=8))
            t0 = time.perf_counter()
            res = svi.run(jax.random.PRNGKey(0), steps, data["sigma"], y=data["y"],
                          progress_bar=False)
            seconds = time.perf_counter() - t0
            dt = vn.to_datatree(model, guide, res.params, data["sigma"], y=data["y"],
                                rng_key=jax.random.PRNGKey(1), num_samples=NUM_DRAWS)
            return dt, seconds

        yield "tutorial 06", f"{which} Trace_ELBO 600 steps", "numpyro", run06, ref, None

    # 02: logistic regression (N=2000, D=20, AR(1) features), FBGVI and Adam-SVI, 400 steps
    yield from _tutorial02()
    # 05: four-mode mixture, AutoIAFNormal + Trace_ELBO, 500 steps; exact reference draws
    yield from _tutorial05()
    # 03: MirroredSVGD on the simplex (particles: no log q)
    yield from _tutorial03()


def _logreg():
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    N, D = 2000, 20
    rng = np.random.default_rng(0)
    corr = 0.6 ** np.abs(np.subtract.outer(np.arange(D), np.arange(D)))
    X = rng.multivariate_normal(np.zeros(D), corr, size=N) * 2 / np.sqrt(D)
    beta_true = rng.normal(size=D)
    y = (rng.random(N) < 1 / (1 + np.exp(-X @ beta_true))).astype(float)

    def model(X, y=None):
        beta = numpyro.sample("beta", dist.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=X @ beta), obs=y)

    return model, jnp.asarray(X), jnp.asarray(y)


def _tutorial02():
    import jax
    from numpyro.infer import MCMC, NUTS

    model, X, y = _logreg()
    mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), X, y)
    ref = {"beta": np.asarray(mcmc.get_samples()["beta"])}
    for method, steps in (("FBGVI", 400), ("Adam-SVI AutoMultivariateNormal", 400),
                          ("Adam-SVI AutoMultivariateNormal", 50), ("Adam-SVI AutoNormal", 400)):
        def run(method=method, steps=steps):
            import numpyro
            from numpyro.infer import SVI, Trace_ELBO
            from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

            import vidiv.numpyro as vn
            from vidiv.gaussian import Decay

            t0 = time.perf_counter()
            if method == "FBGVI":
                fb = vn.FBGVI(model, num_samples=16, hessian="exact", schedule=Decay(200.0),
                              init_scale=0.1)
                res = fb.run(jax.random.PRNGKey(1), steps, X, y, progress_bar=False)
                guide, params = fb.guide, res.params
            else:
                guide = (AutoNormal if method.endswith("AutoNormal")
                         else AutoMultivariateNormal)(model)
                svi = SVI(model, guide, numpyro.optim.Adam(lambda i: 0.02 * 0.1 ** (i / steps)),
                          Trace_ELBO(num_particles=16))
                params = svi.run(jax.random.PRNGKey(1), steps, X, y, progress_bar=False).params
            seconds = time.perf_counter() - t0
            dt = vn.to_datatree(model, guide, params, X, y=y, rng_key=jax.random.PRNGKey(2),
                                num_samples=NUM_DRAWS)
            return dt, seconds

        yield "tutorial 02", f"{method} {steps} steps", "numpyro", run, ref, None


def _tutorial05():
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    means = np.array([[-4.0, -4.0], [-4.0, 4.0], [4.0, -4.0], [4.0, 4.0]])
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    var = 0.5

    class FourModes(dist.Distribution):
        support = dist.constraints.real_vector

        def __init__(self):
            super().__init__(event_shape=(2,))

        def log_prob(self, x):
            d = x[..., None, :] - means
            comp = jnp.log(weights) - 0.5 * jnp.sum(d * d, -1) / var - jnp.log(2 * jnp.pi * var)
            return jax.scipy.special.logsumexp(comp, axis=-1)

    def model():
        numpyro.sample("x", FourModes())

    rng = np.random.default_rng(0)
    comp = rng.choice(4, size=20000, p=weights)
    ref = {"x": means[comp] + np.sqrt(var) * rng.normal(size=(20000, 2))}

    def run(which):
        from numpyro.infer import SVI, Trace_ELBO
        from numpyro.infer.autoguide import AutoIAFNormal

        import vidiv.numpyro as vn

        steps = 500
        optim = numpyro.optim.ClippedAdam(lambda i: 5e-3 * 0.05 ** (i / steps), clip_norm=1.0)
        if which == "flow":
            guide = AutoIAFNormal(model, num_flows=2, hidden_dims=[32, 32])
            loss = Trace_ELBO(num_particles=64)
        else:
            guide = vn.DiffusionGuide(model, num_steps=30, hidden=(32, 32), sde="vp",
                                      sde_kwargs={"scale": 4.0}, estimator="lv")
            loss = vn.LogVariance(num_particles=64)
        t0 = time.perf_counter()
        res = SVI(model, guide, optim, loss).run(jax.random.PRNGKey(0), steps, progress_bar=False)
        seconds = time.perf_counter() - t0
        if which == "flow":
            return vn.to_datatree(model, guide, res.params, rng_key=jax.random.PRNGKey(1),
                                  num_samples=NUM_DRAWS), seconds
        return guide.to_datatree(jax.random.PRNGKey(1), res.params, NUM_DRAWS), seconds

    yield ("tutorial 05", "AutoIAFNormal Trace_ELBO 500 steps", "numpyro",
           lambda: run("flow"), ref, None)
    yield ("tutorial 05", "DiffusionGuide LogVariance 500 steps", "numpyro",
           lambda: run("diffusion"), ref, None)


def _tutorial03():
    """The vidiv MirroredSVGD fit of tutorial 03 (sparse Dirichlet, exact reference draws):
    particles, no log q, so the verdict can only be "unavailable"."""
    rng = np.random.default_rng(1)
    counts = np.array([40.0, 5, 3, 0, 0, 0, 1, 0, 0, 0])
    post_alpha = 0.1 + counts
    ref = {"w": rng.dirichlet(post_alpha, size=20000)}

    def run():
        import pyro
        import pyro.distributions as dist
        import torch

        import vidiv.pyro as vp

        c = torch.as_tensor(counts)
        prior = torch.full((10,), 0.1)

        def model(counts):
            w = pyro.sample("w", dist.Dirichlet(prior))
            pyro.sample("counts", dist.Multinomial(total_count=int(counts.sum()), probs=w),
                        obs=counts)

        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        optim = pyro.optim.ExponentialLR({"optimizer": torch.optim.RMSprop,
                                          "optim_args": {"lr": 0.3, "alpha": 0.9},
                                          "gamma": 0.99})
        ms = vp.MirroredSVGD(model, 50, optim=optim)
        t0 = time.perf_counter()
        for _ in range(400):
            ms.step(c)
            optim.step()
        return ms.to_datatree(c), time.perf_counter() - t0

    yield "tutorial 03", "MirroredSVGD 50 particles 400 steps", "pyro", run, ref, None


# ------------------------------------------------------------------------------ posteriordb
PDB_METHODS = (("laplace", 1), ("alpha", 300), ("vis", 300), ("logvar", 300))
POOR_ALL = (("AutoDelta", 500), ("AutoNormal", 0))  # every posterior
POOR_SOME = (("AutoNormal", 100),)  # the first POOR_SOME_N posteriors
POOR_SOME_N = 3


def posteriordb_cases(names=None, methods=PDB_METHODS):
    from benchmarks.pdb import registry, runners
    from benchmarks.pdb.laplace import laplace_numpyro

    runners.NUM_DRAWS = NUM_DRAWS
    for i, name in enumerate(names or registry.names()):
        ref = registry.reference(name)
        state = {}

        def start(name=name, state=state):
            """The Laplace start of every method (the prior-median fallback where k-hat >= 0.7),
            as benchmarks/posteriordb.py does."""
            if "lap" not in state:
                from vidiv.diagnostics import diagnose

                raw = laplace_numpyro(registry.numpyro_model(name), 0)
                seconds, dt = runners.fit_numpyro(name, "laplace", 1, 0, raw)
                state["lap"] = raw if diagnose(dt).khat < 0.7 else raw.fallback()
                state["laplace_fit"] = (dt, seconds)
            return state["lap"]

        def derive(d, name=name):
            return runners.derived(name, d)

        for method, steps in methods:
            def run(name=name, method=method, steps=steps, start=start, state=state):
                lap = start()
                if method == "laplace":
                    return state["laplace_fit"]
                return runners.fit_numpyro(name, method, steps, 0, lap)[::-1]

            label = "Laplace start" if method == "laplace" else f"{method} {steps} steps"
            yield "posteriordb", f"{name}: {label}", "numpyro", run, ref, derive
        poor = POOR_ALL + (POOR_SOME if i < POOR_SOME_N else ())
        for guide_name, steps in poor:
            def run_poor(name=name, guide_name=guide_name, steps=steps):
                return _poor_fit(name, guide_name, steps)

            label = (f"{guide_name} at its init (frozen, 0 steps)" if steps == 0
                     else f"{guide_name} Trace_ELBO {steps} steps")
            yield "posteriordb (poor)", f"{name}: {label}", "numpyro", run_poor, ref, derive


def _poor_fit(name: str, guide_name: str, steps: int):
    """Mean-field or MAP fits from the host's default start, Adam 0.01: no Laplace start.
    ``steps=0``: the guide's initial parameters (a fit that never moved)."""
    import jax
    import numpyro
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta, AutoNormal

    import vidiv.numpyro as vn
    from benchmarks.pdb import registry

    model = registry.numpyro_model(name)
    guide = {"AutoNormal": AutoNormal, "AutoDelta": AutoDelta}[guide_name](model)
    svi = SVI(model, guide, numpyro.optim.Adam(0.01), Trace_ELBO())
    t0 = time.perf_counter()
    if steps == 0:
        params = svi.get_params(svi.init(jax.random.PRNGKey(0)))
    else:
        params = svi.run(jax.random.PRNGKey(0), steps, progress_bar=False).params
    seconds = time.perf_counter() - t0
    return vn.to_datatree(model, guide, params, rng_key=jax.random.PRNGKey(1),
                          num_samples=NUM_DRAWS, objective=f"{guide_name} Trace_ELBO"), seconds


# ------------------------------------------------------------------- synthetic q on posteriordb
# (label, covariance kind, sd factor, mean shift in unconstrained sds): Gaussians in the
# unconstrained space built from the reference draws' moments, exact and perturbed -- too narrow,
# too wide, shifted, mean-field with the conditional sds (what KL(q || p) mean-field VI finds) --
# so the table has fits on both sides of the 0.25-sd / [0.8, 1.25] boundary.
SYNTHETIC = (
    ("reference moments", "full", 1.0, 0.0),
    ("reference moments, sd x0.9", "full", 0.9, 0.0),
    ("reference moments, sd x1.15", "full", 1.15, 0.0),
    ("reference moments, sd x0.7 (too narrow)", "full", 0.7, 0.0),
    ("reference moments, sd x1.5 (too wide)", "full", 1.5, 0.0),
    ("reference moments, sd x3 (too wide)", "full", 3.0, 0.0),
    ("reference moments, mean +0.15 sd", "full", 1.0, 0.15),
    ("reference moments, mean +0.5 sd", "full", 1.0, 0.5),
    ("mean-field, conditional sds", "conditional", 1.0, 0.0),
    ("mean-field, marginal sds", "diag", 1.0, 0.0),
    ("collapsed, sd x1e-6", "full", 1e-6, 0.0),
)


class ReferenceGaussian:
    """Gaussian proposals in a posteriordb model's unconstrained space, built from the moments
    of the reference draws; ``datatree`` draws from one of them and returns what
    ``vidiv.diagnostics.to_datatree`` makes of it (log p from the model's potential, Jacobian
    included; log q the Gaussian's density in the same space)."""

    def __init__(self, name: str):
        import jax
        import jax.numpy as jnp
        from numpyro import handlers
        from numpyro.distributions import biject_to
        from numpyro.infer.util import initialize_model

        from benchmarks.pdb import registry

        model = registry.numpyro_model(name)
        info, potential_fn, postprocess_fn, _ = initialize_model(jax.random.PRNGKey(0), model)
        z0 = info.z
        tr = handlers.trace(handlers.seed(model, 0)).get_trace()
        ref = registry.reference(name)
        self.name, self.order = name, list(z0)
        self.shapes = {k: tuple(np.shape(z0[k])) for k in self.order}
        self.sizes = [int(np.prod(self.shapes[k], dtype=int)) for k in self.order]
        missing = [k for k in self.order if k not in ref]
        if missing:
            raise KeyError(f"reference draws lack latent sites {missing}")
        cols = []
        for k in self.order:
            u = np.asarray(biject_to(tr[k]["fn"].support).inv(jnp.asarray(ref[k])), float)
            cols.append(u.reshape(u.shape[0], -1))
        U = np.concatenate(cols, axis=1)
        self.loc = U.mean(0)
        self.cov = np.atleast_2d(np.cov(U, rowvar=False))
        self.latent = tuple(self.order)

        def unflat(f):
            out, start = {}, 0
            for k, n in zip(self.order, self.sizes, strict=True):
                out[k] = jnp.reshape(f[start:start + n], self.shapes[k])
                start += n
            return out

        self._log_p = jax.jit(jax.vmap(lambda f: -potential_fn(unflat(f))))
        self._post = jax.jit(jax.vmap(lambda f: postprocess_fn(unflat(f))))

    def proposal(self, kind: str, factor: float, shift: float):
        sd = np.sqrt(np.diag(self.cov))
        loc = self.loc + shift * sd
        if kind == "full":
            cov = factor**2 * self.cov
        elif kind == "diag":
            cov = np.diag(factor**2 * sd**2)
        else:  # conditional sds: 1 / sqrt(diag(precision))
            cov = np.diag(factor**2 / np.diag(np.linalg.inv(self.cov)))
        return loc, cov

    def datatree(self, label: str, kind: str, factor: float, shift: float, seed: int = 0):
        import scipy.stats

        from vidiv.diagnostics import to_datatree

        loc, cov = self.proposal(kind, factor, shift)
        rng = np.random.default_rng(seed)
        L = np.linalg.cholesky(cov + 1e-300 * np.eye(len(loc)))
        U = loc + rng.standard_normal((NUM_DRAWS, len(loc))) @ L.T
        log_q = scipy.stats.multivariate_normal(loc, cov, allow_singular=True).logpdf(U)
        log_p = np.asarray(self._log_p(U), float)
        samples = {k: np.asarray(v) for k, v in self._post(U).items()}
        det = [k for k in samples if k not in self.latent]
        return to_datatree(samples, log_p=log_p, log_q=np.atleast_1d(log_q),
                           attrs={"objective": f"synthetic q: {label}", "backend": "numpyro",
                                  "deterministic_sites": ",".join(det)})


def synthetic_cases(names=None):
    from benchmarks.pdb import registry, runners

    for name in names or registry.names():
        ref = registry.reference(name)
        cache: dict = {}

        def derive(d, name=name):
            return runners.derived(name, d)

        for label, kind, factor, shift in SYNTHETIC:
            def run(name=name, cache=cache, args=(label, kind, factor, shift)):
                if "g" not in cache:
                    cache["g"] = ReferenceGaussian(name)
                t0 = time.perf_counter()
                dt = cache["g"].datatree(*args)
                return dt, time.perf_counter() - t0

            yield "posteriordb (synthetic q)", f"{name}: {label}", "numpyro", run, ref, derive


# ------------------------------------------------------------------------------------ table
CERTIFYING = ("good", "usable")


def _ok(r: dict) -> bool:
    return not r["bad"]


def confusion(rows: list[dict]) -> dict:
    """verdict -> {"ok": n, "off": n} over the rows that ran (ok: within 0.25 sd and sd ratios in
    [0.8, 1.25] against the reference draws)."""
    table = {v: {"ok": 0, "off": 0} for v in VERDICTS}
    for r in rows:
        if "verdict" in r:
            table.setdefault(r["verdict"], {"ok": 0, "off": 0})
            table[r["verdict"]]["off" if r["bad"] else "ok"] += 1
    return table


def violations(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("bad") and r.get("verdict") in CERTIFYING]


def false_alarms(rows: list[dict]) -> list[dict]:
    """Fits within the tolerance that get a pessimistic verdict ("do not trust", or "use
    reweighted" / "point estimate", which say the raw draws are not to be used)."""
    return [r for r in rows if "verdict" in r and not r["bad"]
            and r["verdict"] in ("do not trust", "use reweighted", "point estimate")]


def format_table(table: dict) -> str:
    lines = [f"{'verdict':16s} {'ok':>6s} {'off':>6s}", "-" * 30]
    lines += [f"{v:16s} {c['ok']:6d} {c['off']:6d}" for v, c in table.items()]
    return "\n".join(lines)


def _f(x, d=3):
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{d}f}"


def markdown(result: dict) -> str:
    rows = result["rows"]
    table = result["table"]
    by_source: dict = {}
    for r in rows:
        if "verdict" in r:
            d = by_source.setdefault(r["source"], {})
            key = (r["verdict"], "off" if r["bad"] else "ok")
            d[key] = d.get(key, 0) + 1
    out = ["# Does `diagnose` keep its promise? Verdict × error against the reference draws", "",
           f"Generated by `python -m benchmarks.verdict_confusion` ({result['seconds']:.0f} s, "
           f"{result['draws_per_fit']} draws per fit; the demo's own fits: 1000 draws, float32 "
           "as `vidiv demo` runs them; everything else float64).", "",
           f"**ok**: max |mean − ref mean| / ref sd ≤ {MEAN_TOL} and every sd / ref sd in "
           f"[{SD_LO}, {SD_HI}] (raw draws from q, every scalar component compared); **off**: "
           "otherwise. Promise: no *off* fit is `good` or `usable`.", "",
           "| verdict | ok | off |", "|---|---:|---:|"]
    out += [f"| {v} | {c['ok']} | {c['off']} |" for v, c in table.items()]
    n_run = sum(1 for r in rows if "verdict" in r)
    n_err = sum(1 for r in rows if "error" in r)
    viol, fa = violations(rows), false_alarms(rows)
    n_ok = sum(1 for r in rows if "verdict" in r and not r["bad"])
    out += ["", f"{n_run} fits diagnosed, {n_err} errors; **{len(viol)} violations** (off fits "
            f"called good/usable); false alarms (ok fits called do not trust / use reweighted / "
            f"point estimate): {len(fa)} of {n_ok} ok fits.", ""]
    srcs = sorted(by_source)
    out += ["## By source", "", "| source | " + " | ".join(
        f"{v} ok/off" for v in VERDICTS) + " |", "|---|" + "---:|" * len(VERDICTS)]
    for src in srcs:
        d = by_source[src]
        out.append(f"| {src} | " + " | ".join(
            f"{d.get((v, 'ok'), 0)}/{d.get((v, 'off'), 0)}" for v in VERDICTS) + " |")
    out += ["", "## Violations", ""]
    out += [f"- {r['source']} / {r['backend']} / {r['fit']}: {r['verdict']}, error "
            f"{_f(r['max_std_mean_error'])} sd, sd ratio {_f(r['min_sd_ratio'], 2)}–"
            f"{_f(r['max_sd_ratio'], 2)}" for r in viol] or ["none"]
    out += ["", "## False alarms (ok fits with a pessimistic verdict)", ""]
    out += [f"- {r['source']} / {r['backend']} / {r['fit']}: {r['verdict']} (k̂ "
            f"{_f(r['khat'], 2)}, IS-ESS {_f(100 * r['is_ess_fraction'], 1)}%); error "
            f"{_f(r['max_std_mean_error'])} sd, sd ratio {_f(r['min_sd_ratio'], 2)}–"
            f"{_f(r['max_sd_ratio'], 2)}" for r in fa] or ["none"]
    rw = [r for r in rows if r.get("verdict") == "use reweighted" and "psis_bad" in r]
    if rw:
        good_rw = sum(1 for r in rw if not r["psis_bad"])
        out += ["", f"\"use reweighted\" fits whose PSIS-reweighted moments are ok: {good_rw} of "
                f"{len(rw)}.", ""]
    errs = [r for r in rows if "error" in r]
    if errs:
        out += ["", "## Fits that raised", ""]
        out += [f"- {r['source']} / {r['backend']} / {r['fit']}: `{r['error']}`" for r in errs]
    probs = [r for r in rows if r.get("report_problems")]
    out += ["", f"Reports inconsistent with their verdict: {len(probs)}."]
    out += [f"- {r['fit']}: {'; '.join(r['report_problems'])}" for r in probs]
    out += ["", "## Every fit", "",
            "| source | backend | fit | verdict | k̂ | IS-ESS % | err (sd) | sd ratio | class |",
            "|---|---|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        if "verdict" not in r:
            out.append(f"| {r['source']} | {r['backend']} | {r['fit']} | ERROR | | | | | |")
            continue
        out.append(f"| {r['source']} | {r['backend']} | {r['fit']} | {r['verdict']} | "
                   f"{_f(r['khat'], 2)} | {_f(100 * r['is_ess_fraction'], 1)} | "
                   f"{_f(r['max_std_mean_error'])} | {_f(r['min_sd_ratio'], 2)}–"
                   f"{_f(r['max_sd_ratio'], 2)} | {'off' if r['bad'] else 'ok'} |")
    return "\n".join(out) + "\n"


def _key(r: dict) -> tuple:
    return r["source"], r["fit"], r["backend"]


def _run_cases(cases, rows, done, t_start, save) -> None:
    for source, fit, backend, run, ref, derive in cases:
        if (source, fit, backend) in done:
            rows.append(done[(source, fit, backend)])
            continue
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dt, seconds = run()
                row = row_for(source, fit, backend, dt, ref, seconds, derive)
        except Exception as exc:  # noqa: BLE001  (a failing fit is a row, not a crash)
            msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            row = {"source": source, "fit": fit, "backend": backend,
                   "error": f"{type(exc).__name__}: {msg}"}
            traceback.print_exc(limit=3)
        row["wall_seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        flag = "  <-- OFF FIT CERTIFIED" if row in violations([row]) else ""
        nan = float("nan")
        print(f"[{time.perf_counter() - t_start:6.0f}s] {source:26s} {backend:7s} {fit[:64]:64s} "
              f"{row.get('verdict', 'ERROR'):14s} "
              f"err {row.get('max_std_mean_error', nan):8.3f} "
              f"sd {row.get('min_sd_ratio', nan):5.2f}-{row.get('max_sd_ratio', nan):5.2f}"
              f"{flag} {row.get('error', '')}", file=sys.stderr, flush=True)
        save()


def _demo_in_child(args, done: dict, out: Path) -> list[dict]:
    """Run the demo part in a child process in float32 with the demo's 1000 draws (what
    ``vidiv demo`` does); rows already done in ``done`` are passed on and kept."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        prior = Path(tmp) / "prior.json"
        child_out = Path(tmp) / "demo.json"
        prior.write_text(json.dumps({"rows": [r for k, r in done.items() if k[0] == "demo"]},
                                    default=float))
        cmd = [sys.executable, "-m", "benchmarks.verdict_confusion", "--only", "demo",
               "--child", "--float32", "--draws", "1000", "--out", str(child_out),
               "--resume-from", str(prior)]
        subprocess.run(cmd, check=False)
        if not child_out.exists():
            return [{"source": "demo", "fit": "(all)", "backend": "both",
                     "error": "the demo child process wrote no results"}]
        return json.loads(child_out.read_text())["rows"]


def main(argv=None) -> int:
    global NUM_DRAWS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*",
                   default=["demo", "demo-poor", "tutorials", "posteriordb", "synthetic"])
    p.add_argument("--posteriors", nargs="*", default=None)
    p.add_argument("--draws", type=int, default=NUM_DRAWS)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of --out that ran without error; run the rest")
    p.add_argument("--resume-from", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--float32", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    NUM_DRAWS = args.draws
    _setup(float64=not args.float32)
    from vidiv._demo import runners as demo_runners

    demo_runners.NUM_DRAWS = NUM_DRAWS
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done: dict = {}
    prior = args.resume_from or (str(out) if args.resume and out.exists() else None)
    if prior:
        done = {_key(r): r for r in json.loads(Path(prior).read_text())["rows"]
                if "error" not in r and "verdict" in r}
    gens = {"demo": demo_cases, "demo-poor": demo_poor_cases, "tutorials": tutorial_cases,
            "posteriordb": lambda: posteriordb_cases(args.posteriors),
            "synthetic": lambda: synthetic_cases(args.posteriors)}
    rows: list[dict] = []
    t_start = time.perf_counter()

    def save():
        result = {
            "definition": f"off = max |mean error| > {MEAN_TOL} reference sd or an sd ratio "
                          f"outside [{SD_LO}, {SD_HI}] (raw draws vs reference draws); ok "
                          "otherwise",
            "draws_per_fit": NUM_DRAWS, "seconds": round(time.perf_counter() - t_start, 1),
            "table": confusion(rows), "violations": violations(rows),
            "false_alarms": len(false_alarms(rows)),
            "ok_fits": sum(1 for r in rows if "verdict" in r and not r["bad"]),
            "errors": sum(1 for r in rows if "error" in r), "rows": rows}
        out.write_text(json.dumps(result, indent=1, default=float))
        return result

    for part in args.only:
        if part == "demo" and not args.child:
            rows.extend(_demo_in_child(args, done, out))
            save()
            continue
        _run_cases(gens[part](), rows, done, t_start, save)
    result = save()
    if not args.child:
        out.with_suffix(".md").write_text(markdown(result))
    print(format_table(result["table"]))
    print(f"{len(rows)} fits, {result['errors']} errors, {len(result['violations'])} off fits "
          f"certified good/usable, {result['false_alarms']} false alarms of "
          f"{result['ok_fits']} ok fits; {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
