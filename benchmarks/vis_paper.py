"""The VIS paper's own VAE protocol on the 8x8 digits (issue 4), NumPyro and Pyro.

Settings from the reference code (JerrySoybean/vis, ``vae_mnist/main.py``; notes §1.5): decoder
2-128 (tanh)-pixels (Bernoulli), encoder pixels-128 (tanh)-(mu, log sigma), latent dim 2, S = 500
particles for every method, minibatch 64, constant Adam lr 5e-3, 20 epochs, several seeds, the
held-out IS log-likelihood (1000 samples from the method's own encoder) reported at the end of
training. On the 1250 training digits an epoch is ceil(1250 / 64) = 20 steps, so 20 epochs are
400 steps. Minibatches are drawn at random each step (a subsampled plate), not by epoch passes;
initialisation is this benchmark's (N(0, 1/fan_in) decoder, N(0, 0.25/fan_in) encoder weights),
the same for every method at a given seed, as are the data split and the random streams.

Per method and seed: test log-likelihood by IS and by exact quadrature (``grid_log_lik``) at the
last parameters (the paper's number) and at the best-validation parameters (500 samples, validated
every epoch, or every epochs/20 epochs in longer runs), the training IS log-likelihood (first 300
training images), steps and training seconds. The summary gives mean and sd over seeds, Welch
t-tests of VIS against each other method and, as the seeds pair the runs, paired t-tests and mean
paired differences. Runs of further seeds are merged into the output file (per backend).

Run:  python -m benchmarks.vis --only vae --protocol paper [--backend numpyro|pyro|both]
      [--seeds 0,1,2,3,4] [--epochs 20] [--particles 500] [--methods IWAE,VIS] [--out FILE]
(``--methods``: only these methods; their rows are added to, or replace, those of the same seeds.)
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import numpy as np
from scipy.stats import binomtest, ttest_ind, ttest_rel, wilcoxon

from benchmarks.vis_common import PAPER_ARCH, Run, bench_vae, digits, print_table

LR = 5e-3
METRICS = ("test_ll_is_last", "test_ll_grid_last", "test_ll_is", "test_ll_grid", "train_ll_is_last")
COLS = [*METRICS, "best_step", "steps", "seconds"]


def protocol(particles, epochs, steps=None, quick=False):
    """The settings of one run (stored with the results; runs merge only if these agree)."""
    per_epoch = math.ceil(len(digits()[0]) / PAPER_ARCH.batch)
    total = steps or epochs * per_epoch
    return {
        "particles": particles,
        "epochs": total / per_epoch,
        "steps": total,
        "steps_per_epoch": per_epoch,
        "batch": PAPER_ARCH.batch,
        "adam_lr": LR,
        "decoder_hidden": list(PAPER_ARCH.decoder),
        "encoder_hidden": list(PAPER_ARCH.encoder),
        "valid_every_steps": min(per_epoch * max(1, epochs // 20), total),  # <= ~20 validations
        "samples": {"valid": 50, "test": 100} if quick else {"valid": 500, "test": 1000},
        **({"quadrature_grid": 121} if quick else {}),  # default 241 x 241
    }


def default_name(proto: dict) -> str:
    """Results file of a protocol: the paper's S = 500 and 20 epochs, or the settings that differ
    (so a sweep over S never overwrites the paper-protocol file)."""
    tags = [f"s{proto['particles']}"] if proto["particles"] != 500 else []
    tags += [f"{proto['epochs']:g}ep"] if proto["epochs"] != 20 else []
    return "_".join(["vis_vae_paper", *tags]) + ".json"


def run_seed(impl, proto, seed, names=None):
    """One seed of every method of ``impl.paper_methods`` (or of those in ``names``)."""
    methods = impl.paper_methods(proto["particles"])
    methods = {n: loss for n, loss in methods.items() if not names or n in names}
    every = proto["valid_every_steps"]
    run = Run(math.inf, seed, LR, math.inf, every, proto["steps"], every)  # constant Adam
    samples = proto["samples"]
    return bench_vae(
        impl,
        proto["particles"],
        run,
        samples["valid"],
        samples["test"],
        PAPER_ARCH,
        proto.get("quadrature_grid", 241),
        methods,
    )


def summarise(seeds: dict) -> dict:
    """Mean and sd over seeds per method and metric; Welch (and paired) t-tests of VIS against
    the others, each over the seeds where both were run."""
    names = list(dict.fromkeys(n for rows in seeds.values() for n in rows))

    def values(n, m, among=seeds):
        return [seeds[s][n][m] for s in among if n in seeds[s]]

    out = {n: {} for n in names}
    for n in names:
        for m in (*METRICS, "seconds"):
            v = values(n, m)
            sd = float(np.std(v, ddof=1)) if len(v) > 1 else None
            out[n][m] = {"mean": float(np.mean(v)), "sd": sd, "seeds": len(v)}
    for other in (n for n in names if n != "VIS" and "VIS" in out):
        both = [s for s in seeds if "VIS" in seeds[s] and other in seeds[s]]
        if len(both) > 1:
            out["VIS"][f"welch_vs_{other}"] = {
                m: _tests(values("VIS", m, both), values(other, m, both)) for m in METRICS[:4]
            }
    return out


def _tests(vis, other):
    """Welch t-test of VIS against another method over seeds, and (seeds share the data split,
    the initialisation and the random streams) the paired t-test, the mean paired difference and
    two rank tests that one outlying seed cannot dominate: Wilcoxon's signed-rank test and the
    two-sided sign test (binomial, ties dropped)."""
    welch = ttest_ind(vis, other, equal_var=False)
    diff = np.subtract(vis, other)
    better, worse = int(np.sum(diff > 0)), int(np.sum(diff < 0))
    return {
        "t": float(welch.statistic),
        "p": float(welch.pvalue),
        "vis_better_seeds": better,
        "mean_diff": float(np.mean(diff)),
        "paired_p": float(ttest_rel(vis, other).pvalue),
        "wilcoxon_p": float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0,
        "sign_p": float(binomtest(better, better + worse).pvalue) if better + worse else 1.0,
        "seeds": len(vis),
    }


def print_summary(backend, proto, summary, n_seeds):
    print(f"\n[{backend}] paper protocol, {n_seeds} seed(s): mean (sd) per image")
    print(f"{'method':10s}" + "".join(f"{m:>22s}" for m in METRICS))
    for name, per in summary.items():
        if per["test_ll_is_last"]["seeds"] < n_seeds:
            name = f"{name}[{per['test_ll_is_last']['seeds']}]"
        cells = "".join(f"{per[m]['mean']:13.3f} ({per[m]['sd'] or 0.0:5.3f})" for m in METRICS)
        print(f"{name:10s}{cells}")
    for key, tests in summary["VIS"].items():
        if key.startswith("welch_vs_"):
            text = ", ".join(
                f"{m} {t['mean_diff']:+.3f} Welch p={t['p']:.3g} paired p={t['paired_p']:.3g} "
                f"Wilcoxon p={t['wilcoxon_p']:.3g} ({t['vis_better_seeds']}/{t['seeds']}, "
                f"sign p={t['sign_p']:.3g})"
                for m, t in tests.items()
            )
            print(f"VIS vs {key[9:]}: {text}")


# NumPyro's Trace_ELBO draws one minibatch per particle in a subsampled plate (S minibatches per
# step: S times the data of every other method); its equal-data control is "ELBO-1batch"
NOT_EQUAL_DATA = {"numpyro": {"ELBO"}}


def sweep_report(paths) -> str:
    """Markdown table over result files (one row per file and backend): VIS against IWAE, paired
    by seed, on the held-out IS log-likelihood (the metric of issue 4) and by quadrature (the
    decoder alone), each encoder's IS deficit (mean quadrature minus IS log-likelihood at the same
    parameters: what the encoder loses as an importance sampler), and the best method by mean IS
    log-likelihood over the seeds where every method ran, among the methods that see one
    minibatch per step (``NOT_EQUAL_DATA`` excluded)."""
    head = (
        "| S | epochs | backend | seeds | VIS − IWAE, IS (VIS better; Wilcoxon p) "
        "| VIS − IWAE, quadrature (VIS better; p) | encoder's IS deficit, IWAE / VIS "
        "| best by IS (methods; seeds all ran) | file |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for path in paths:
        result = json.loads(Path(path).read_text())
        for backend in ("numpyro", "pyro"):
            entry = result.get(backend)
            if not entry or not all("IWAE" in s and "VIS" in s for s in entry["seeds"].values()):
                continue
            proto, summary = entry["protocol"], summarise(entry["seeds"])  # current tests
            test = summary["VIS"]["welch_vs_IWAE"]
            n = test["test_ll_is_last"]["seeds"]
            seeds = entry["seeds"]
            methods = [m for m in summary if m not in NOT_EQUAL_DATA.get(backend, ())]
            common = [s for s in seeds if all(m in seeds[s] for m in methods)]
            best = max(
                methods,
                key=lambda m: np.mean([seeds[s][m]["test_ll_is_last"] for s in common]),
            )

            def cell(metric, test=test):
                t = test[metric]
                return (
                    f"{t['mean_diff']:+.3f} ({t['vis_better_seeds']}/{t['seeds']}; "
                    f"{t['wilcoxon_p']:.3f})"
                )

            # quadrature minus IS at the same parameters: what the encoder loses as a proposal
            mean = {
                m: {k: v["mean"] for k, v in summary[m].items() if "mean" in v} for m in summary
            }
            deficit = "/".join(
                f"{mean[m]['test_ll_grid_last'] - mean[m]['test_ll_is_last']:.3f}"
                for m in ("IWAE", "VIS")
            )
            line = (
                f"| {proto['particles']} | {proto['epochs']:g} | {backend} | {n} "
                f"| {cell('test_ll_is_last')} | {cell('test_ll_grid_last')} | {deficit} "
                f"| {best} ({len(methods)}; {len(common)}) | `{Path(path).name}` |"
            )
            rows.append(((proto["particles"], proto["epochs"], backend), line))
    return "\n".join([head, *(line for _, line in sorted(rows))])


def main(args) -> None:
    from benchmarks.vis import load_backend

    if args.report:
        results = Path(__file__).parent / "results"
        print(sweep_report(sorted(results.glob("vis_vae_paper*.json"))))
        return

    if args.only == "mixture":
        raise SystemExit("--protocol paper is the VAE protocol; use --only vae")
    proto = protocol(args.particles or 500, args.epochs, args.steps, args.quick)
    out = Path(args.out or Path(__file__).parent / "results" / default_name(proto))
    seeds = [int(s) for s in args.seeds.split(",")]
    for backend in ["numpyro", "pyro"] if args.backend == "both" else [args.backend]:
        impl, versions = load_backend(backend)
        for seed in seeds:
            rows = run_seed(impl, proto, seed, args.methods and args.methods.split(","))
            print_table(f"[{backend}] paper protocol, seed {seed}", rows, COLS)
            result = json.loads(out.read_text()) if out.exists() else {}  # re-read: merge
            entry = result.get(backend) or {}
            if entry.get("protocol") != proto:  # other settings: start this backend afresh
                entry = {"protocol": proto, "seeds": {}}
            entry["versions"] = versions
            old = entry["seeds"].get(str(seed), {})  # --methods: add to / replace in a seed
            order = [*impl.paper_methods(2), *old]
            merged = {**old, **rows}
            entry["seeds"][str(seed)] = {n: merged[n] for n in dict.fromkeys(order) if n in merged}
            entry["summary"] = summarise(entry["seeds"])
            result.update(
                benchmark="vis_vae_paper",
                machine={
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "note": "shared CPU loaded by other jobs; seconds are noisy",
                },
            )
            result[backend] = entry
            out.parent.mkdir(exist_ok=True)
            out.write_text(json.dumps(result, indent=2))
        print_summary(backend, proto, entry["summary"], len(entry["seeds"]))
    print(f"\nwrote {out}")
