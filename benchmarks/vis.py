"""Forward chi-square VIS against ELBO, IWAE and CHIVI-style training (issue 4), NumPyro and Pyro.

Two problems, as in the VIS paper's comparisons (Li et al., ICLR 2024):

(a) the identifiable mixture: z ~ pi N(mu, 1) + (1 - pi) N(-mu, 1), x | z ~ N(z, 2^2), pi = 0.7,
    mu = 3, 1000 train / 1000 test, learnable (pi, mu > 0), amortised Gaussian q(z | x) linear in
    x, minibatches of 100. Held-out log-likelihood is exact (closed-form marginal) and also IS.
(b) a small VAE on scikit-learn's bundled 8x8 digits (binarised at 8/16; 1250 train / 250
    validation / 297 test), latent dim 2, decoder 2-64-64 (tanh, Bernoulli), encoder
    64-64-(mu, log sigma), minibatches of 100. Model selection, the same for every method: the
    validation IS log-likelihood (500 samples) is evaluated every 500 steps and the parameters
    with the best one are kept; the test IS log-likelihood (1000 samples from each method's own
    encoder, the IWAE/VIS protocol) is reported at those parameters (and, for reference, at the
    last ones).

Methods (same particles K, same wall-clock budget per method; compilation and validation excluded):
  ELBO   Trace_ELBO (reparameterised)
  IWAE   vidiv AlphaDivergence(alpha=0) (= numpyro RenyiELBO(alpha=0)); Pyro also runs the
         host RenyiELBO(alpha=0) as "IWAE-host"
  CHIVI  theta by the ELBO, q by CUBO_2 - 1/2 ELBO in score form (the VIS reference code's
         "CHIVI" baseline)
  VIS    vidiv ChiSquaredVIS

Run:  python -m benchmarks.vis [--backend numpyro|pyro|both] [--quick] [--budget SECONDS]
Writes benchmarks/results/vis.json (one entry per backend; a run of one backend keeps the other's
entry) and prints the tables. Timings are on a shared, loaded CPU.

The VIS paper's own VAE protocol (S = 500, minibatch 64, constant Adam 5e-3, 20 epochs, one hidden
layer of 128, several seeds): python -m benchmarks.vis --only vae --protocol paper
[--seeds 0,1,2,3,4] [--epochs 20] [--particles 500], see ``benchmarks/vis_paper.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from benchmarks.vis_common import (
    Run,
    bench_mixture,
    bench_vae,
    mixture_data,
    mixture_ll,
    print_table,
)
from benchmarks.vis_numpyro import mixture_guide, mixture_model

__all__ = ["mixture_data", "mixture_ll", "mixture_model", "mixture_guide", "run", "main"]

MIX_COLS = ["pi", "mu", "test_ll", "test_ll_is", "steps", "seconds"]
VAE_COLS = [
    "test_ll_is",
    "test_ll_grid",
    "best_valid_ll_is",
    "best_step",
    "test_ll_is_last",
    "train_ll_is_last",
    "steps",
    "seconds",
]


def load_backend(backend):
    """The backend module (vis_numpyro or vis_pyro), set up (float64 JAX / 1 torch thread), and
    its versions for the results file."""
    if backend == "pyro":
        import pyro
        import torch

        from benchmarks import vis_pyro as impl

        torch.set_num_threads(1)
        versions = {
            "torch": torch.__version__,
            "pyro": pyro.__version__,
            "dtype": str(torch.get_default_dtype()),
            "torch_threads": 1,
        }
    else:
        import jax
        import numpyro

        from benchmarks import vis_numpyro as impl

        jax.config.update("jax_enable_x64", True)
        versions = {"jax": jax.__version__, "numpyro": numpyro.__version__, "dtype": "float64"}
    return impl, versions


def run(backend, k, mix_budget, vae_budget, seed, steps=None, only=None, quick=False):
    """Run one backend; returns its result entry."""
    impl, versions = load_backend(backend)
    # quick (smoke) mode: short chunks and few importance samples
    vae_every, chunk, samples = (25, 25, (50, 100, 500)) if quick else (500, 250, (500, 1000, 5000))
    mix = vae = None
    budget = f"{steps} steps" if steps else None
    if only in (None, "mixture"):
        mix = bench_mixture(impl, k, mix_budget, seed, steps, chunk, samples[2])
        print_table(
            f"[{backend}] (a) mixture, K={k}, {budget or f'{mix_budget:.0f} s'} per "
            "method (test_ll exact per point; ML = maximum likelihood)",
            mix,
            MIX_COLS,
        )
    if only in (None, "vae"):
        vae = bench_vae(
            impl, k, Run(vae_budget, seed, 3e-3, 4000.0, chunk, steps, vae_every), *samples[:2]
        )
        print_table(
            f"[{backend}] (b) VAE on 8x8 digits, K={k}, {budget or f'{vae_budget:.0f} s'}"
            " per method (IS log-lik per image; test at best validation)",
            vae,
            VAE_COLS,
        )
    per_method = {"steps": steps} if steps else None
    return {
        "particles": k,
        "seed": seed,
        "mixture": mix and {"budget": per_method or {"seconds": mix_budget}, "rows": mix},
        "vae_digits": vae and {"budget": per_method or {"seconds": vae_budget}, "rows": vae},
        "versions": versions,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["numpyro", "pyro", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="short budgets (smoke run)")
    parser.add_argument("--budget", type=float, default=None, help="seconds per method (both)")
    parser.add_argument("--mix-budget", type=float, default=None)
    parser.add_argument("--vae-budget", type=float, default=None)
    parser.add_argument("--particles", type=int, default=None, help="16 (paper protocol: 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="equal steps instead of equal wall-clock (same for every method)",
    )
    parser.add_argument("--only", choices=["mixture", "vae"], default=None)
    parser.add_argument("--protocol", choices=["default", "paper"], default="default")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="paper protocol: comma-separated")
    parser.add_argument("--epochs", type=int, default=20, help="paper protocol")
    parser.add_argument("--methods", default=None, help="paper protocol: e.g. IWAE,VIS")
    parser.add_argument("--out", default=None, help="default benchmarks/results/vis.json")
    parser.add_argument(
        "--report", action="store_true", help="paper protocol: the VIS-IWAE table of all results"
    )
    args = parser.parse_args(argv)
    if args.protocol == "paper":
        from benchmarks import vis_paper

        return vis_paper.main(args)
    args.particles = args.particles or 16
    args.out = args.out or str(Path(__file__).parent / "results" / "vis.json")
    mix_budget = args.mix_budget or args.budget or (3.0 if args.quick else 40.0)
    vae_budget = args.vae_budget or args.budget or (3.0 if args.quick else 90.0)
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    if "backend" in result:  # the single-backend layout written before the Pyro path existed
        result = {}
    result.update(
        benchmark="vis",
        quick=args.quick,
        machine={
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "note": "shared CPU loaded by other jobs; wall-clock budgets are noisy",
        },
    )
    for backend in ["numpyro", "pyro"] if args.backend == "both" else [args.backend]:
        old = result.get(backend) or {}
        result[backend] = new = run(
            backend,
            args.particles,
            mix_budget,
            vae_budget,
            args.seed,
            args.steps,
            args.only,
            args.quick,
        )
        for problem in ("mixture", "vae_digits"):  # --only keeps the other problem's last result
            if new[problem] is None and old.get(problem):
                new[problem] = old[problem]
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
