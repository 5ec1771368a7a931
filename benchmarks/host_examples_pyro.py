"""Pyro's own example programs with only the loss changed: ``Trace_ELBO`` / ``TraceMeanField_ELBO``
replaced by each vidiv objective at its default settings.

Usage::

    python -m benchmarks.host_examples_pyro /path/to/pyro [--objectives alpha dreg vis lv]

``/path/to/pyro`` is a Pyro checkout (work tree or bare git directory). Each program in
:data:`EXAMPLES` (those that need no download and no GPU) is copied to a temporary directory and
run in its own process: ``pyro.infer.Trace_ELBO`` (and ``TraceMeanField_ELBO``) are replaced
before the program is imported, then its ``main`` is called with the arguments listed here (fewer
steps than the program's defaults, so that the whole run takes minutes; the arguments are the
programs' own). A run is ``ok`` when ``main`` returns and every loss it reported is finite (the
losses are read from the objective's calls), ``refusal`` for a :class:`vidiv.errors.VidivError`,
``error`` otherwise. The warnings vidiv gave are recorded. The reference run uses Pyro's own
ELBO. Results: ``benchmarks/results/host_examples_pyro.json``. Needs ``pip install
-e .[benchmarks]`` (seaborn, for the neutra example's plots).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.host_catalogues_common import REPO, extract

#: program -> (extra files it imports, arguments of its ``main``)
EXAMPLES = {
    "examples/eight_schools/svi.py": (
        ("examples/eight_schools/data.py",),
        {"lr": 0.01, "num_epochs": 300, "jit": False},
    ),
    "examples/sparse_regression.py": (
        (),
        {"num_data": 750, "num_steps": 200, "num_dimensions": 100, "num_restarts": 2,
         "sigma": 0.05, "active_dimensions": 10, "quadratic_dimensions": 5, "lr": 0.3},
    ),  # fmt: skip
    "examples/svi_torch.py": (
        (),
        {"size": 2000, "batch_size": 100, "learning_rate": 0.01, "seed": 20200723,
         "num_epochs": 2, "cuda": False},
    ),  # fmt: skip
    "examples/neutra.py": (
        (),
        {"num_steps": 300, "learning_rate": 1e-2, "rng_seed": 1, "num_warmup": 50,
         "num_samples": 50, "param_a": 1.15, "param_b": 1.0, "num_flows": 1,
         "x_lim": "-3,3", "y_lim": "0,8"},
    ),  # fmt: skip
}
OBJECTIVES = {
    "alpha": "AlphaDivergence(alpha=0.5)",
    "dreg": "AlphaDivergence(alpha=0.5, gradient='dreg')",
    "vis": "ChiSquaredVIS()",
    "lv": "LogVariance()",
}

CHILD = r'''
import argparse, importlib.util, json, math, os, sys, traceback, warnings
import matplotlib
matplotlib.use("Agg")
import torch
torch.set_num_threads(1)
import pyro, pyro.infer

kind, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
kwargs = json.loads(sys.argv[4])
losses = []


def factory(host):
    def build(*a, **kw):
        if kind == "reference":
            elbo = host(*a, **kw)
        else:
            import vidiv.pyro as vp
            kw.pop("num_particles", None)
            elbo = {"alpha": lambda: vp.AlphaDivergence(alpha=0.5, **kw),
                    "dreg": lambda: vp.AlphaDivergence(alpha=0.5, gradient="dreg", **kw),
                    "vis": lambda: vp.ChiSquaredVIS(**kw),
                    "lv": lambda: vp.LogVariance(**kw)}[kind]()
        for name in ("loss", "loss_and_grads", "differentiable_loss"):
            fn = getattr(elbo, name)
            def wrapped(*a, _fn=fn, **k):
                value = _fn(*a, **k)
                losses.append(float(value.detach() if torch.is_tensor(value) else value))
                return value
            setattr(elbo, name, wrapped)
        return elbo
    return build


for name in ("Trace_ELBO", "TraceMeanField_ELBO"):
    setattr(pyro.infer, name, factory(getattr(pyro.infer, name)))
# harness shim, not a vidiv change: the examples at Pyro's head pass numpy integers to
# pyro.set_rng_seed (sparse_regression: np.argmin(...)), which the installed release refuses
_set_rng_seed = pyro.set_rng_seed
pyro.set_rng_seed = lambda seed: _set_rng_seed(int(seed))
sys.path.insert(0, os.path.dirname(path))
os.chdir(os.path.dirname(path))
rec = {"status": "ok"}
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    try:
        spec = importlib.util.spec_from_file_location("example", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mod.main(argparse.Namespace(**kwargs))
    except Exception as e:
        import vidiv.errors
        rec = {"status": "refusal" if isinstance(e, vidiv.errors.VidivError) else "error",
               "exc_type": type(e).__name__, "message": str(e)[:600],
               "where": traceback.format_exc().splitlines()[-3][:300]}
finite = [x for x in losses if math.isfinite(x)]
rec.update(num_losses=len(losses), num_nonfinite=len(losses) - len(finite),
           first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None)
if rec["status"] == "ok" and (not losses or rec["num_nonfinite"]):
    rec["status"] = "error"
    rec["message"] = "no loss was computed" if not losses else "non-finite losses"
rec["vidiv_warnings"] = sorted({str(w.message).splitlines()[0][:300] for w in seen
                                if str(w.message).startswith(("AlphaDivergence", "ChiSquaredVIS",
                                                              "LogVariance", "vidiv"))})
json.dump(rec, open(out, "w"), indent=1)
'''


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkout", type=Path)
    ap.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    ap.add_argument("--examples", nargs="+", default=list(EXAMPLES), choices=list(EXAMPLES))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/host_examples_pyro.json")
    args = ap.parse_args(argv)
    import pyro

    work = Path(tempfile.mkdtemp(prefix="vidiv_pyro_examples_"))
    files = tuple(f for ex in args.examples for f in (ex, *EXAMPLES[ex][0]))
    extract(args.checkout.resolve(), files, work)
    (work / "_child.py").write_text(CHILD)
    results: dict = {}
    for ex in args.examples:
        results[ex] = {}
        for kind in ["reference", *args.objectives]:
            out = work / "rec.json"
            out.unlink(missing_ok=True)
            t0 = time.time()
            cmd = [sys.executable, str(work / "_child.py"), kind, str(work / ex), str(out),
                   json.dumps(EXAMPLES[ex][1])]  # fmt: skip
            env_path = f"{REPO}"
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**__import__("os").environ, "PYTHONPATH": env_path})
            rec = json.loads(out.read_text()) if out.exists() else {
                "status": "error", "message": proc.stderr[-600:]}
            rec["seconds"] = round(time.time() - t0, 1)
            results[ex][OBJECTIVES.get(kind, "Pyro's own ELBO (reference)")] = rec
            print(f"{ex:40s} {kind:10s} {rec['status']:8s} {rec['seconds']:6.1f} s "
                  f"last loss {rec.get('last_loss')} {rec.get('message', '')[:120]}", flush=True)
    merged = json.loads(args.out.read_text()) if args.out.exists() else {}  # other examples kept
    merged.update(results)
    done = [ex for ex in EXAMPLES if ex in merged]
    meta = {"pyro": pyro.__version__, "arguments": {ex: EXAMPLES[ex][1] for ex in done},
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    merged["_meta"] = meta
    args.out.write_text(json.dumps(merged, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
