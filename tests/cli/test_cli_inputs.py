"""The command line's handling of paths (issue 15): ``vidiv bench`` never imports code from the
working directory, and ``vidiv demo --out`` paths it cannot use are one-line errors, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidiv import cli


def _plant(folder: Path) -> Path:
    """A folder with a ``benchmarks`` package whose import leaves a marker file."""
    marker = folder / "PLANTED_CODE_RAN"
    pkg = folder / "benchmarks"
    pkg.mkdir()
    code = f"open({str(marker)!r}, 'w').write('ran')\n"
    (pkg / "__init__.py").write_text(code)
    (pkg / "posteriordb.py").write_text(code + "def main(argv=None):\n    return 0\n")
    return marker


def test_bench_never_imports_benchmarks_from_the_working_directory(tmp_path, monkeypatch, capsys):
    marker = _plant(tmp_path)
    monkeypatch.chdir(tmp_path)
    # the planted folder is not a vidiv checkout (no pyproject.toml naming vidiv)
    assert cli.main(["bench", "--checkout", str(tmp_path), "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vidiv: error: --checkout") and "is not a vidiv source checkout" in err
    assert not marker.exists()


def test_bench_refuses_a_lookalike_checkout(tmp_path, monkeypatch, capsys):
    marker = _plant(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "not-vidiv"\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "--checkout", ".", "--quick"]) == 2
    assert "is not a vidiv source checkout" in capsys.readouterr().err
    assert not marker.exists()


def test_bench_without_a_checkout_says_how_to_name_one(tmp_path, monkeypatch, capsys):
    marker = _plant(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "is_checkout", lambda path: False)  # an installed wheel
    assert cli.main(["bench", "--quick"]) == 2
    assert "pass --checkout PATH" in capsys.readouterr().err
    assert not marker.exists()


def test_this_repository_is_recognised_as_a_checkout():
    assert cli.is_checkout(Path(__file__).resolve().parents[2])


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda tmp: "", "--out is empty"),
        (lambda tmp: str(tmp / "a_file"), "is an existing file, not a folder"),
        (lambda tmp: str(tmp / "a_file" / "below"), "cannot create the output folder"),
    ],
    ids=["empty", "existing-file", "under-a-file"],
)
def test_demo_out_that_cannot_be_used_is_one_line_exit_2(tmp_path, capsys, make, expected):
    (tmp_path / "a_file").write_text("x")
    assert cli.main(["demo", "--backend", "numpyro", "--methods", "fbgvi", "--out",
                     make(tmp_path)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("vidiv: error: ") and expected in err and err.count("\n") == 1
