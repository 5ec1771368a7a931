"""What the two host-catalogue runners share: the plugin's reporting part, how a case is
classified, the summary per objective, the merge into ``benchmarks/results/host_catalogues.json``.

A runner (``host_catalogues_pyro.py``, ``host_catalogues_numpyro.py``) copies the host's own test
files to a temporary directory outside this repository, writes a pytest plugin there that replaces
the host's ELBO classes by factories building a vidiv objective, and runs pytest once per objective
(plus a *reference* run). The plugin's source is the runner's substitution code followed by
:data:`REPORTING`, which records one entry per test.

A test is a *case* when it built at least one objective. Each case is classified (:func:`classify`):

* ``pass``;
* ``refusal``: a :class:`vidiv.errors.VidivError` (its message is recorded);
* ``reference_fails_too``: an assertion (or an expected error / warning) fails that the
  reference run fails as well: an accuracy threshold fitted to ``Trace_ELBO``, or a check that
  the installed host release does not make yet (the catalogue is the host's development head);
* ``host_limitation``: the test asserts a limitation of the host ELBO that vidiv does not share;
* ``host_internals``: the test calls a private method of the host's ELBO class;
* ``pins_host_elbo``: the test pins a value or an optimum of the host's ELBO (the loss's closed
  form, the host's NaN, a float32 tolerance at the ELBO's scale, the KL-optimal fit of a family
  that cannot represent the target), which the objective (``LogVariance``'s value is a variance)
  need not share; listed per objective with the reason;
* ``invalid_accepted``: the test expects an error or a warning and none came;
* ``inaccurate``: an assertion fails that the reference passes;
* ``unclear_error``: any other exception.

Warnings that vidiv gave in a passing case (e.g. the one-draw loop fallback) are listed with it.
"""

from __future__ import annotations

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
OUT = REPO / "benchmarks/results/host_catalogues.json"

#: appended to each runner's substitution code; the environment names the objective and report
REPORTING = r"""
import json as _json, os as _os, warnings as _warnings
import pytest as _pytest

REPORT = _os.environ["VIDIV_CATALOGUE_REPORT"]
RESULTS = {}
_VIDIV_PREFIXES = ("AlphaDivergence", "ChiSquaredVIS", "LogVariance", "vidiv", "LogVariance")


def pytest_runtest_setup(item):
    STATE["built"] = 0


@_pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _warnings.catch_warnings(record=True) as seen:  # the ini's filters stay in force
        yield
    mine = sorted({str(w.message).splitlines()[0][:300] for w in seen
                   if str(w.message).startswith(_VIDIV_PREFIXES)})
    RESULTS.setdefault(item.nodeid, {"outcome": "passed", "built": 0})["warnings"] = mine


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
    text = str(exc)
    rec.update(
        outcome="failed",
        when=call.when,
        exc_type=type(exc).__name__,
        vidiv_error=isinstance(exc, vidiv.errors.VidivError),
        message=text[:600],
        did_not=(type(exc).__name__ == "Failed" and "DID NOT" in text)
        or "No warnings were raised" in text,
    )


def pytest_sessionfinish(session, exitstatus):
    with open(REPORT, "w") as f:
        _json.dump(RESULTS, f, indent=1)
"""


def extract(checkout: Path, files: tuple[str, ...], dest: Path) -> None:
    """Copy ``files`` from a host work tree, or a bare git directory, into ``dest``."""
    if (checkout / files[0]).exists():
        for rel in files:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(checkout / rel, dest / rel)
        return
    archive = subprocess.run(
        ["git", "-C", str(checkout), "archive", "HEAD", *files], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


#: vidiv's own warnings (the one-draw loop fallback, ...) are recorded, not raised as errors
VIDIV_WARNINGS = r"always:(AlphaDivergence|ChiSquaredVIS|LogVariance|vidiv)"


def pytest_ini(host_config: Path) -> str:
    """A ``pytest.ini`` with the host's own ``filterwarnings`` (both hosts turn every warning
    into an error, so ``assert_ok``-style tests also fail on a warning), plus
    :data:`VIDIV_WARNINGS`."""
    if host_config.name == "pyproject.toml":
        import tomllib

        conf = tomllib.loads(host_config.read_text())["tool"]["pytest"]["ini_options"]
        filters = list(conf.get("filterwarnings", []))
    else:
        import configparser

        cp = configparser.ConfigParser()
        cp.read(host_config)
        lines = cp.get("tool:pytest", "filterwarnings", fallback="").splitlines()
        filters = [line.strip() for line in lines if line.strip()]
    body = "\n".join(f"    {f}" for f in [*filters, VIDIV_WARNINGS])
    return f"[pytest]\nfilterwarnings =\n{body}\n"


def run_one(
    workdir: Path,
    kind: str,
    tests: list[str],
    select: str | None,
    reports: Path | None = None,
    reuse: bool = False,
) -> dict:
    """Run ``tests`` in ``workdir`` with objective ``kind``; return ``{nodeid: record}``. With
    ``reports`` the raw report is kept there as ``report_<kind>.json`` (and read back instead of
    running when ``reuse``)."""
    report = (reports or workdir) / f"report_{kind}.json"
    if reuse and report.exists():
        print(f"  {kind}: reused {report}", flush=True)
        return json.loads(report.read_text())
    env = {**os.environ, "VIDIV_CATALOGUE_OBJECTIVE": kind, "VIDIV_CATALOGUE_REPORT": str(report)}
    env["PYTHONPATH"] = os.pathsep.join([str(workdir), str(REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-p",
           "_vidiv_substitute", "-q", "--no-header", "-rN", "-W", "ignore::DeprecationWarning",
           "-c", str(workdir / "pytest.ini"), "--rootdir", str(workdir), *tests]  # fmt: skip
    if select:
        cmd += ["-k", select]
    t0 = time.time()
    subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL)
    print(f"  {kind}: {time.time() - t0:.0f} s", flush=True)
    return json.loads(report.read_text()) if report.exists() else {}


def _reason(table: dict, nodeid: str) -> str | None:
    """``table``'s entry for the test (its full id first, then the id without parameters)."""
    return table.get(nodeid, table.get(nodeid.split("[")[0]))


def classify(rec: dict, ref: dict | None, nodeid: str, limitations: dict, internals: dict,
             pins: dict | None = None) -> str:
    """The class of one case (see the module docstring); ``pins`` are this objective's
    host-pinning tests."""
    if rec["outcome"] == "passed":
        return "pass"
    if rec["outcome"] == "skipped":
        return "skipped"
    if _reason(limitations, nodeid):
        return "host_limitation"
    if _reason(internals, nodeid):
        return "host_internals"
    if pins and _reason(pins, nodeid) and rec.get("exc_type") == "AssertionError":
        return "pins_host_elbo"
    if rec.get("vidiv_error"):
        return "refusal"
    if rec.get("did_not") or rec.get("exc_type") == "AssertionError":
        if ref is not None and ref.get("outcome") == "failed":
            return "reference_fails_too"
        if rec.get("did_not"):
            return "invalid_accepted"
        return "inaccurate" if ref is not None else "inaccurate (no reference run)"
    return "unclear_error"


def summarise(
    results: dict, reference: dict | None, names: dict, limitations: dict, internals: dict,
    host_pins: dict | None = None,
) -> dict:
    """``{objective name: {"cases", "tests_run", "counts", <class>: [details]}}``;
    ``host_pins``: ``{kind: {test id: reason}}``."""
    out = {}
    for kind, res in results.items():
        cases = {n: r for n, r in res.items() if r.get("built")}
        pins = (host_pins or {}).get(kind, {})
        classes = {
            n: classify(r, (reference or {}).get(n) if reference else None, n, limitations,
                        internals, pins)
            for n, r in cases.items()
        }  # fmt: skip
        details: dict[str, list] = {}
        for n, c in sorted(classes.items()):
            r = cases[n]
            if c == "skipped" or (c == "pass" and not r.get("warnings")):
                continue
            entry = {"test": n}
            if c == "pass":
                c = "pass_with_vidiv_warning"
                entry["warnings"] = r["warnings"]
            if c in (
                "refusal",
                "unclear_error",
                "inaccurate",
                "invalid_accepted",
                "reference_fails_too",
            ):
                entry.update(exc_type=r.get("exc_type"), message=r.get("message"))
            if c == "host_limitation":
                entry["reason"] = _reason(limitations, n)
            if c == "host_internals":
                entry["reason"] = _reason(internals, n)
            if c == "pins_host_elbo":
                entry.update(reason=_reason(pins, n), message=r.get("message"))
            details.setdefault(c, []).append(entry)
        out[names[kind]] = {"cases": len(cases), "tests_run": len(res),
                            "counts": dict(sorted(Counter(classes.values()).items())),
                            **details}  # fmt: skip
    return out


def run_catalogue(
    backend: str,
    checkout: Path,
    files: tuple[str, ...],
    tests: list[str],
    plugin: str,
    names: dict,
    limitations: dict,
    internals: dict,
    args,
    version: str,
    reference_name: str,
    host_config: str,
    host_pins: dict | None = None,
) -> None:
    """Run every objective in ``names`` (and the reference) and merge the summary into
    ``args.out`` under ``backend`` (a ``-k`` subset is printed, not written)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"vidiv_{backend}_catalogue_"))
    try:
        extract(checkout.resolve(), (*files, host_config), workdir)
        (workdir / "_vidiv_substitute.py").write_text(plugin + REPORTING)
        (workdir / "pytest.ini").write_text(pytest_ini(workdir / host_config))
        print(f"{backend} tests from {checkout} (installed {backend} {version})", flush=True)
        if args.reports:
            args.reports.mkdir(parents=True, exist_ok=True)
        kinds = ([] if args.no_reference else ["reference"]) + list(args.objectives)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = {
                k: pool.submit(run_one, workdir, k, tests, args.select, args.reports,
                               k in args.reuse)
                for k in kinds
            }  # fmt: skip
            raw = {k: f.result() for k, f in futures.items()}
        reference = raw.pop("reference", None)
        summary = summarise(raw, reference, names, limitations, internals, host_pins)
        for name, s in summary.items():
            print(f"{name:45s} {s['cases']:4d} cases  {s['counts']}")
        entry = dict(summary)
        entry["_meta"] = {
            backend: version, "files": list(tests), "subset": args.select,
            "reference": reference_name,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }  # fmt: skip
        if args.select is None:
            merged = json.loads(args.out.read_text()) if args.out.exists() else {}
            if set(args.objectives) != set(names):  # a partial run keeps the other objectives
                entry = {**merged.get(backend, {}), **entry}
            merged[backend] = entry
            args.out.write_text(json.dumps(merged, indent=1) + "\n")
            print(f"wrote {args.out} (key {backend!r})")
        else:
            print(json.dumps(entry, indent=1))
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def parser(description: str, host: str, objectives: list[str]):
    """The command line both runners take."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("checkout", type=Path, help=f"{host} checkout (work tree or bare git dir)")
    ap.add_argument("--objectives", nargs="+", default=objectives, choices=objectives)
    ap.add_argument("-k", dest="select", default=None, help="pytest -k expression (subset)")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference run")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--reports", type=Path, default=None, help="keep raw reports in this folder")
    ap.add_argument("--reuse", nargs="*", default=[], help="kinds whose raw report to reuse")
    ap.add_argument("--jobs", type=int, default=1, help="objectives run concurrently")
    return ap
