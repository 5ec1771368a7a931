"""NumPyro's own SVI / autoguide tests, run with vidiv's objectives in place of NumPyro's ELBOs.

Usage::

    python benchmarks/host_catalogues_numpyro.py /path/to/numpyro [--objectives alpha dreg vis lv]
        [-k EXPR] [--no-reference] [--out benchmarks/results/host_catalogues.json]

``/path/to/numpyro`` is a NumPyro checkout (a work tree, or a bare git directory such as
``/work/.mirror/pyro-ppl+numpyro/repo``). Its ``test/infer/test_svi.py``, ``test_autoguide.py``
and ``test/conftest.py`` are copied to a temporary directory outside this repository (nothing of
NumPyro's test code is kept here) and run with ``pytest -p no:xdist`` once per objective. A small
pytest plugin, written next to them, replaces ``Trace_ELBO``, ``TraceMeanField_ELBO``,
``TraceGraph_ELBO`` and ``RenyiELBO`` in ``numpyro.infer`` (before the test modules import them)
by factories that build the vidiv objective at its default settings: the host's ``num_particles``
and ``alpha`` are ignored, every other host keyword (``vectorize_particles``, ``sum_sites``,
``multi_sample_guide``) is passed through. A test is a *case* when it built at least one
objective. Each case is classified:

* ``pass``;
* ``refusal``: a :class:`vidiv.errors.VidivError` (its message is recorded);
* ``pins_host_optimum``: an assertion fails that NumPyro's own ``RenyiELBO(alpha=0.5,
  num_particles=8)``, substituted the same way (the *reference* run), also fails -- accuracy
  thresholds or exact values fitted to ``Trace_ELBO``; not a defect;
* ``host_limitation``: the test asserts a limitation of the host ELBO that vidiv does not have
  (listed in ``HOST_LIMITATIONS`` with the reason);
* ``invalid_accepted``: the test expects an error or warning (``pytest.raises`` / ``warns``) and
  none came;
* ``inaccurate``: an assertion fails that the reference passes;
* ``unclear_error``: any other exception.

Counts and the refusal messages are merged into ``benchmarks/results/host_catalogues.json``
under the key ``"numpyro"`` (read, merge, write: other keys are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_FILES = ("test/infer/test_svi.py", "test/infer/test_autoguide.py", "test/conftest.py")
OBJECTIVES = {
    "alpha": "AlphaDivergence(alpha=0.5)",
    "dreg": "AlphaDivergence(alpha=0.5, gradient='dreg')",
    "vis": "ChiSquaredVIS()",
    "lv": "LogVariance()",
}
REFERENCE = "RenyiELBO(alpha=0.5, num_particles=8)"
# tests that assert a limitation of the host ELBOs which vidiv's objectives do not share
HOST_LIMITATIONS = {
    "test/infer/test_svi.py::test_svi_discrete_latent": (
        "asserts `can_infer_discrete` is False and the host's 'does not support discrete latent "
        "variables' warning; vidiv's objectives infer discrete guide sites (score terms)"
    ),
}

PLUGIN = r'''
"""pytest plugin: substitute vidiv objectives for NumPyro's ELBO classes (see the runner)."""
import json, os, traceback
import numpyro.infer
import numpyro.infer.elbo

KIND = os.environ["VIDIV_CATALOGUE_OBJECTIVE"]
REPORT = os.environ["VIDIV_CATALOGUE_REPORT"]
_HostRenyi = numpyro.infer.elbo.RenyiELBO
STATE = {"built": 0}
RESULTS = {}


def _build(host, kwargs):
    STATE["built"] += 1
    if KIND == "reference":
        return _HostRenyi(alpha=0.5, num_particles=8)
    import vidiv.numpyro as vn
    if KIND == "alpha":
        return vn.AlphaDivergence(alpha=0.5, **kwargs)
    if KIND == "dreg":
        return vn.AlphaDivergence(alpha=0.5, gradient="dreg", **kwargs)
    if KIND == "vis":
        return vn.ChiSquaredVIS(**kwargs)
    if KIND == "lv":
        return vn.LogVariance(**kwargs)
    raise ValueError(KIND)


def Trace_ELBO(num_particles=1, vectorize_particles=True, multi_sample_guide=False,
               sum_sites=True):
    kw = {}
    if vectorize_particles is not True:
        kw["vectorize_particles"] = vectorize_particles
    if multi_sample_guide:
        kw["multi_sample_guide"] = multi_sample_guide
    if sum_sites is not True:
        kw["sum_sites"] = sum_sites
    return _build("Trace_ELBO", kw)


def TraceMeanField_ELBO(num_particles=1, vectorize_particles=True, sum_sites=True):
    return Trace_ELBO(num_particles, vectorize_particles, sum_sites=sum_sites)


def TraceGraph_ELBO(num_particles=1, vectorize_particles=True):
    return Trace_ELBO(num_particles, vectorize_particles)


def RenyiELBO(alpha=0, num_particles=2):
    return Trace_ELBO(num_particles)


for _mod in (numpyro.infer, numpyro.infer.elbo):
    for _name, _fn in (("Trace_ELBO", Trace_ELBO), ("TraceMeanField_ELBO", TraceMeanField_ELBO),
                       ("TraceGraph_ELBO", TraceGraph_ELBO), ("RenyiELBO", RenyiELBO)):
        setattr(_mod, _name, _fn)


def pytest_runtest_setup(item):
    STATE["built"] = 0


def pytest_runtest_makereport(item, call):
    if call.when == "setup" and call.excinfo is None:
        return
    rec = RESULTS.setdefault(item.nodeid, {"outcome": "passed", "built": 0})
    if call.when == "call":
        rec["built"] = STATE["built"]
    if call.excinfo is None:
        return
    if call.excinfo.errisinstance(__import__("_pytest").outcomes.Skipped):
        rec["outcome"] = "skipped"
        return
    if rec["outcome"] == "failed":
        return
    exc = call.excinfo.value
    import vidiv.errors
    rec.update(
        outcome="failed",
        when=call.when,
        exc_type=type(exc).__name__,
        vidiv_error=isinstance(exc, vidiv.errors.VidivError),
        message=str(exc)[:600],
        did_not=type(exc).__name__ == "Failed" and "DID NOT" in str(exc),
    )


def pytest_sessionfinish(session, exitstatus):
    with open(REPORT, "w") as f:
        json.dump(RESULTS, f, indent=1)
'''


def copy_tests(checkout: Path, dest: Path) -> None:
    """Copy NumPyro's test files from a work tree or a bare git directory into ``dest``."""
    if (checkout / "test" / "infer" / "test_svi.py").exists():
        for rel in TEST_FILES:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(checkout / rel, dest / rel)
        return
    archive = subprocess.run(
        ["git", "-C", str(checkout), "archive", "HEAD", *TEST_FILES],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


def run_one(workdir: Path, kind: str, select: str | None, reports: Path | None = None,
            reuse: bool = False) -> dict:
    """Run the copied tests with objective ``kind``; return ``{nodeid: record}``. With
    ``reports``, the raw report is kept there as ``report_<kind>.json`` (and read back instead of
    running when ``reuse``)."""
    report = (reports or workdir) / f"report_{kind}.json"
    if reuse and report.exists():
        print(f"  {kind}: reused {report}", flush=True)
        return json.loads(report.read_text())
    env = {**os.environ, "VIDIV_CATALOGUE_OBJECTIVE": kind, "VIDIV_CATALOGUE_REPORT": str(report)}
    env["PYTHONPATH"] = os.pathsep.join([str(workdir), str(REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-p",
           "_vidiv_substitute", "-q", "--no-header", "-rN", "-W", "ignore::DeprecationWarning",
           "test/infer/test_svi.py", "test/infer/test_autoguide.py"]  # fmt: skip
    if select:
        cmd += ["-k", select]
    t0 = time.time()
    subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL)
    print(f"  {kind}: {time.time() - t0:.0f} s", flush=True)
    return json.loads(report.read_text()) if report.exists() else {}


def classify(rec: dict, ref: dict | None, nodeid: str) -> str:
    if rec["outcome"] == "passed":
        return "pass"
    if rec["outcome"] == "skipped":
        return "skipped"
    base = nodeid.split("[")[0]
    if base in HOST_LIMITATIONS:
        return "host_limitation"
    if rec.get("vidiv_error"):
        return "refusal"
    if rec.get("did_not"):
        return "invalid_accepted"
    if rec.get("exc_type") == "AssertionError":
        if ref is None:
            return "inaccurate (no reference run)"
        return "pins_host_optimum" if ref.get("outcome") == "failed" else "inaccurate"
    return "unclear_error"


def summarise(results: dict, reference: dict | None) -> dict:
    out = {}
    for kind, res in results.items():
        cases = {n: r for n, r in res.items() if r.get("built")}
        classes = {n: classify(r, (reference or {}).get(n) if reference else None, n)
                   for n, r in cases.items()}  # fmt: skip
        counts = Counter(classes.values())
        details: dict[str, list] = {}
        for n, c in sorted(classes.items()):
            if c in ("pass", "skipped"):
                continue
            r = cases[n]
            entry = {"test": n}
            if c in ("refusal", "unclear_error", "inaccurate", "invalid_accepted"):
                entry.update(exc_type=r.get("exc_type"), message=r.get("message"))
            if c == "host_limitation":
                entry["reason"] = HOST_LIMITATIONS[n.split("[")[0]]
            details.setdefault(c, []).append(entry)
        out[OBJECTIVES[kind]] = {"cases": len(cases), "tests_run": len(res),
                                 "counts": dict(sorted(counts.items())), **details}  # fmt: skip
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("numpyro", type=Path, help="NumPyro checkout (work tree or bare git dir)")
    ap.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    ap.add_argument("-k", dest="select", default=None, help="pytest -k expression (subset)")
    ap.add_argument("--no-reference", action="store_true", help="skip the RenyiELBO(0.5) run")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/host_catalogues.json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--reports", type=Path, default=None, help="keep raw reports in this folder")
    ap.add_argument("--reuse", nargs="*", default=[], help="kinds whose raw report to reuse")
    ap.add_argument("--jobs", type=int, default=1, help="objectives run concurrently")
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="vidiv_numpyro_catalogue_"))
    try:
        copy_tests(args.numpyro.resolve(), workdir)
        (workdir / "_vidiv_substitute.py").write_text(PLUGIN)
        import numpyro

        print(f"NumPyro tests from {args.numpyro} (installed numpyro {numpyro.__version__})")
        if args.reports:
            args.reports.mkdir(parents=True, exist_ok=True)
        kinds = ([] if args.no_reference else ["reference"]) + list(args.objectives)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = {k: pool.submit(run_one, workdir, k, args.select, args.reports,
                                      k in args.reuse) for k in kinds}  # fmt: skip
            raw = {k: f.result() for k, f in futures.items()}
        reference = raw.pop("reference", None)
        results = raw
        summary = summarise(results, reference)
        for name, s in summary.items():
            print(f"{name:45s} {s['cases']:4d} cases  {s['counts']}")
        merged = json.loads(args.out.read_text()) if args.out.exists() else {}
        entry = merged.get("numpyro", {}) if args.select is None else {}
        entry.update(summary)
        entry["_meta"] = {
            "numpyro": numpyro.__version__, "files": list(TEST_FILES[:2]), "subset": args.select,
            "reference": REFERENCE, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }  # fmt: skip
        if args.select is None:
            merged = json.loads(args.out.read_text()) if args.out.exists() else {}
            merged["numpyro"] = entry
            args.out.write_text(json.dumps(merged, indent=1) + "\n")
            print(f"wrote {args.out} (key 'numpyro')")
        else:
            print(json.dumps(entry, indent=1))
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
