"""Pyro's catalogue of valid and invalid models, run with vidiv's objectives for Pyro's ELBOs.

Usage::

    python -m benchmarks.host_catalogues_pyro /path/to/pyro [--objectives alpha dreg vis lv]
        [-k EXPR] [--no-reference] [--jobs 2]

``/path/to/pyro`` is a Pyro checkout (a work tree, or a bare git directory such as
``/work/.mirror/pyro-ppl+pyro/repo``). Its ``tests/infer/test_valid_models.py`` with the
``tests/`` package files it imports are copied to a temporary directory outside this repository
(nothing of Pyro's test code is kept here) and run once per objective. The plugin replaces
``Trace_ELBO``, ``TraceGraph_ELBO`` and ``TraceMeanField_ELBO`` in ``pyro.infer`` (before the test
module imports them) by factories that build the vidiv objective at its default settings: the
host's ``num_particles`` is used when the test asks for 2 or more (vidiv's default count
otherwise), every other keyword (``max_plate_nesting``,
``strict_enumeration_warning``, ``vectorize_particles``, ...) is passed through. The catalogue's
other ELBOs (``TraceEnum_ELBO``, ``TraceTMC_ELBO``, ``EnergyDistance``, ...) are left alone; tests
that use only those are not cases. The *reference* run is the catalogue with Pyro's own ELBOs.

The tests run with Pyro's own ``filterwarnings`` (from its ``setup.cfg``: every warning is an
error), except that vidiv's own warnings (such as the one-draw loop fallback, by design) are
recorded rather than raised; each passing case in which vidiv warned is listed.
Classes and the merge into ``benchmarks/results/host_catalogues.json`` (key ``"pyro"``) are those
of :mod:`benchmarks.host_catalogues_common`.
"""

from __future__ import annotations

from benchmarks.host_catalogues_common import parser, run_catalogue

FILES = (
    "tests/infer/test_valid_models.py",
    "tests/__init__.py",
    "tests/common.py",
    "tests/conftest.py",
    "tests/infer/__init__.py",
    "tests/infer/conftest.py",
)
TESTS = ["tests/infer/test_valid_models.py"]
OBJECTIVES = {
    "alpha": "AlphaDivergence(alpha=0.5)",
    "dreg": "AlphaDivergence(alpha=0.5, gradient='dreg')",
    "vis": "ChiSquaredVIS()",
    "lv": "LogVariance()",
}
REFERENCE = "Pyro's own Trace_ELBO / TraceGraph_ELBO / TraceMeanField_ELBO"
# tests that assert a limitation of the host ELBOs which vidiv's objectives do not share
HOST_LIMITATIONS = {
    "tests/infer/test_valid_models.py::test_mean_field_warn": (
        "asserts TraceMeanField_ELBO's warning that a guide whose sites depend on each other "
        "breaks its analytic-KL (mean-field) assumption; vidiv's objectives use no analytic KL "
        "and are exact for any guide dependency structure"
    ),
}
# tests that call private methods of the host's ELBO classes
HOST_INTERNALS: dict[str, str] = {}

PLUGIN = r'''
"""pytest plugin: substitute vidiv objectives for Pyro's ELBO classes (see the runner)."""
import os
import pyro.infer

KIND = os.environ["VIDIV_CATALOGUE_OBJECTIVE"]
STATE = {"built": 0}


def _factory(host_cls):
    def build(*args, **kwargs):
        STATE["built"] += 1
        if KIND == "reference":
            return host_cls(*args, **kwargs)
        if args:
            kwargs.setdefault("num_particles", args[0])
        if kwargs.get("num_particles", 1) < 2:  # the host's default 1: vidiv's default count
            kwargs.pop("num_particles", None)
        import vidiv.pyro as vp
        if KIND == "alpha":
            return vp.AlphaDivergence(alpha=0.5, **kwargs)
        if KIND == "dreg":
            return vp.AlphaDivergence(alpha=0.5, gradient="dreg", **kwargs)
        if KIND == "vis":
            return vp.ChiSquaredVIS(**kwargs)
        if KIND == "lv":
            return vp.LogVariance(**kwargs)
        raise ValueError(KIND)

    build.__name__ = host_cls.__name__
    return build


for _name in ("Trace_ELBO", "TraceGraph_ELBO", "TraceMeanField_ELBO"):
    setattr(pyro.infer, _name, _factory(getattr(pyro.infer, _name)))
'''


def main(argv=None) -> None:
    args = parser(__doc__.split("\n")[0], "Pyro", list(OBJECTIVES)).parse_args(argv)
    import pyro

    run_catalogue("pyro", args.checkout, FILES, TESTS, PLUGIN, OBJECTIVES, HOST_LIMITATIONS,
                  HOST_INTERNALS, args, pyro.__version__, REFERENCE, "setup.cfg")  # fmt: skip


if __name__ == "__main__":
    main()
