r"""Pyro ``DiffusionGuide``: a guide whose sample is the end point of a learned controlled SDE.

The Pyro twin of :class:`vidiv.numpyro.DiffusionGuide` (same maths, same public arguments, same
drift function :func:`vidiv.paths.control_value`, here with ``torch.nn.Parameter`` weights
registered through ``pyro.module``). The latent vector of the model's continuous sites, in
unconstrained space, is driven by Euler–Maruyama steps of
:math:`dX=(\mu+\sigma u_\theta)\,dt+\sigma\,dW` (particles vectorised over the enclosing plates,
e.g. the ``LogVariance`` / ``Trace_ELBO(vectorize_particles=True)`` particle plate), and its end
point is the auxiliary site ``_<name>_latent ~ Delta(x_N, log_density=log q_path, event_dim=1)``;
constrained sites follow as in ``AutoContinuous`` (``Delta`` with the log-det-Jacobian), so
:math:`\log p - \log q` is the trajectory's log importance weight.

``estimator="lv"`` builds the log-variance graph (trajectory from the detached control, no
backpropagation through the solver), ``"kl"`` the reparameterised path KL, ``"auto"`` picks
``"lv"`` when the objective detaches sample values (``vidiv.pyro.LogVariance``,
``ChiSquaredVIS``) or inside ``vidiv.paths.estimator_scope("lv")``, and ``"kl"`` otherwise.

Example
-------
>>> import pyro, pyro.distributions as dist, torch
>>> from pyro.infer import SVI, Trace_ELBO
>>> from vidiv.pyro import DiffusionGuide
>>> def model():
...     pyro.sample("z", dist.Normal(0.0, 1.0))
>>> guide = DiffusionGuide(model, num_steps=10, hidden=(16,), estimator="kl")
>>> svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}),
...           Trace_ELBO(num_particles=4, vectorize_particles=True))
>>> loss = svi.step()
>>> samples, log_w = guide.sample_with_log_weights(8)
>>> samples["z"].shape, log_w.shape
(torch.Size([8]), torch.Size([8]))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median

from ..estimators import weights
from ..paths import (
    check_continuous_latents,
    em_step,
    guide_options,
    resolve_estimator,
    time_features,
)
from ..paths.filter import MAX_RND, check_trajectories
from ._diffusion_model import DriftNet, log_target, model_plate_nesting, particle_shape

__all__ = ["DiffusionGuide"]


def _values_detached() -> bool:
    """True when vidiv's ``DetachSamples`` handler encloses this guide call."""
    try:
        from ._traces import DetachSamples
    except ImportError:  # pragma: no cover
        return False
    from pyro.poutine.runtime import _PYRO_STACK

    return any(isinstance(h, DetachSamples) for h in _PYRO_STACK)


class DiffusionGuide(AutoContinuous):
    """Guide over all continuous latents whose sample is a controlled-SDE end point.

    Arguments as in :class:`vidiv.numpyro.DiffusionGuide`: ``num_steps`` (>= 1), ``hidden``,
    ``sde`` (``"pis"`` | ``"vp"`` | a ``ReferenceSDE``), ``estimator`` (``"auto"`` | ``"lv"`` |
    ``"kl"``), ``use_score``, ``score_clip``, ``sde_kwargs``, ``init_loc_fn``, ``init_scale``.
    """

    def __init__(
        self,
        model,
        num_steps: int = 100,
        hidden: Sequence[int] = (64, 64),
        sde="pis",
        *,
        estimator: str = "auto",
        use_score: bool = True,
        score_clip: float = 10.0,
        sde_kwargs: dict | None = None,
        init_loc_fn=init_to_median,
        init_scale: float = 1.0,
    ):
        (self.num_steps, self.hidden, self.sde, self.estimator, self.use_score,
         self.score_clip, self.init_scale) = guide_options(
            num_steps, hidden, sde, sde_kwargs, estimator, use_score, score_clip, init_scale
        )
        self._schedule = self.sde.schedule(self.num_steps)
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs):
        try:
            with torch.random.fork_rng(devices=[]), pyro.poutine.block():  # the user's stream
                trace = pyro.poutine.trace(self.model).get_trace(*args, **kwargs)
        except Exception:  # noqa: BLE001 - e.g. a target without a sampler: the host's
            trace = None  # initialisation below reports it
        if trace is not None:
            check_continuous_latents(
                [(name, type(site["fn"]).__name__,
                  site["fn"].has_enumerate_support or bool(site["infer"].get("enumerate")))
                 for name, site in trace.nodes.items()
                 if site["type"] == "sample" and not site["is_observed"]
                 and type(site["fn"]).__name__ != "_Subsample"],
                "pyro",
            )  # fmt: skip
        super()._setup_prototype(*args, **kwargs)
        proto = self._init_loc()
        self._model_nesting = model_plate_nesting(self.prototype_trace)
        self.drift = DriftNet(self.latent_dim, self.hidden, self.use_score, self.score_clip,
                              self.init_scale, dtype=proto.dtype, device=proto.device)

    # ------------------------------------------------------------------ simulation
    def _score(self, x, estimator, args, kwargs):
        with torch.enable_grad():
            if estimator == "kl" and x.requires_grad:
                lp = log_target(self, x, args, kwargs)
                return torch.autograd.grad(lp.sum(), x, create_graph=True)[0]
            xl = x.detach().requires_grad_(True)
            lp = log_target(self, xl, args, kwargs)
            return torch.autograd.grad(lp.sum(), xl)[0].detach()

    def simulate(self, batch: int, estimator: str, args=(), kwargs=None, noise=None):
        """Roll out ``batch`` trajectories: ``(x_N (batch, d), log q (batch,))``. ``noise`` =
        ``(x0_noise (batch, d), xi (num_steps, batch, d))`` standard normals, drawn if ``None``."""
        kwargs = kwargs or {}
        d = self.latent_dim
        proto = next(self.drift.parameters())
        opts = dict(dtype=proto.dtype, device=proto.device)
        if noise is None:
            noise = (torch.randn(batch, d, **opts), torch.randn(self.num_steps, batch, d, **opts))
        x = self.sde.initial_std * noise[0]
        xi = noise[1]
        s = self._schedule
        t_feat = torch.as_tensor(time_features(np.asarray(s.t), self.sde.T), **opts)
        run = torch.zeros(batch, **opts)
        ito = torch.zeros(batch, **opts)
        for k in range(self.num_steps):
            score = self._score(x, estimator, args, kwargs) if self.use_score else None
            u = self.drift(x, t_feat[k], score)
            x, r, i = em_step(x, u, xi[k], float(s.dt[k]), float(s.sigma[k]), float(s.drift[k]),
                              estimator)
            run = run + r
            ito = ito + i
        return x, run + ito + self.sde.log_p_ref(x, self.num_steps)

    def get_posterior(self, *args, **kwargs):
        """Simulate one trajectory per element of the enclosing particle plates and return
        ``Delta(x_N, log_density=log q_path, event_dim=1)``."""
        estimator = resolve_estimator(self.estimator, _values_detached())
        pyro.module(f"{self._pyro_name}.drift", self.drift)
        shape = particle_shape()
        batch = int(np.prod(shape)) if shape else 1
        x, log_q = self.simulate(batch, estimator, args, kwargs)
        return dist.Delta(x.reshape(*shape, self.latent_dim), log_density=log_q.reshape(shape),
                          event_dim=1)

    def get_base_dist(self):
        raise NotImplementedError("DiffusionGuide has no base distribution; use sample_latent.")

    # ------------------------------------------------------------------ results
    def _constrain(self, x):
        S = x.shape[0]
        latent = x.reshape((S,) + (1,) * self._model_nesting + (x.shape[-1],))
        out = {}
        for site, u in self._unpack_latent(latent):
            value = dist.transforms.biject_to(site["fn"].support)(u)
            out[site["name"]] = value.reshape((S,) + site["value"].shape)
        return out

    def _draw(self, num_samples: int, args, kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        with torch.no_grad():
            x, log_q = self.simulate(int(num_samples), "lv", args, kwargs)
            log_p = log_target(self, x, args, kwargs)
        return x, log_p, log_q

    def sample_with_log_weights(self, num_samples: int, *args, **kwargs):
        """``(samples, log_w)``: constrained samples ``{site: (S, *shape)}`` and the ``(S,)`` log
        importance weights of their trajectories (``log p(x, z) - log q``, Jacobian included)."""
        x, log_p, log_q = self._draw(num_samples, args, kwargs)
        return self._constrain(x), log_p - log_q

    def log_z(self, num_samples: int, *args, **kwargs) -> dict:
        """IS log evidence, its standard error, IS-ESS and the number of dropped trajectories."""
        _, log_p, log_q = self._draw(num_samples, args, kwargs)
        log_w = (log_p - log_q).detach().cpu().double().numpy()
        keep = np.isfinite(log_w) & (-log_w < MAX_RND)
        check_trajectories(keep)
        lz = weights.log_z(log_w[keep])
        return {"log_z": float(lz.log_z), "se": float(lz.se),
                "ess": float(weights.is_ess(log_w[keep])), "num_samples": int(num_samples),
                "num_dropped": int((~keep).sum())}

    def to_datatree(self, num_samples: int, *args, losses=None, **kwargs):
        """Draws, ``log_p`` / ``log_q`` (unconstrained space) and losses as an ArviZ DataTree."""
        from ..diagnostics import to_datatree

        x, log_p, log_q = self._draw(num_samples, args, kwargs)
        samples = {k: v.detach().cpu().numpy() for k, v in self._constrain(x).items()}
        attrs = {"objective": f"diffusion guide ({self.estimator})", "backend": "pyro",
                 "guide": "DiffusionGuide", "num_steps": self.num_steps,
                 **{f"sde_{k}": v for k, v in self.sde.describe().items()}}
        return to_datatree(samples, log_p.cpu().numpy(), log_q.cpu().numpy(),
                           losses=None if losses is None else np.asarray(losses), attrs=attrs)
