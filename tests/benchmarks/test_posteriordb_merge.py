"""``benchmarks.posteriordb --merge``: partial reruns accumulate in one results file."""

import json

from benchmarks.posteriordb import merged


def test_merge_adds_a_run_and_replaces_only_its_own_rows(tmp_path):
    path = tmp_path / "pdb.json"
    old_rows = [{"posterior": "a", "method": "NUTS", "run": "first"},
                {"posterior": "a", "method": "VIS", "run": "second"}]
    path.write_text(json.dumps({"config": {"runs": {"first": {"seed": 0}, "second": {"seed": 1}},
                                           "note": "kept"}, "rows": old_rows}))
    config, rows = merged(path, "second", {"seed": 2}, [{"posterior": "b", "method": "FBGVI"}])
    assert config == {"runs": {"first": {"seed": 0}, "second": {"seed": 2}}, "note": "kept"}
    assert rows == [old_rows[0], {"posterior": "b", "method": "FBGVI", "run": "second"}]


def test_merge_into_a_missing_file_starts_one(tmp_path):
    config, rows = merged(tmp_path / "new.json", "only", {"seed": 0}, [{"posterior": "a"}])
    assert config == {"runs": {"only": {"seed": 0}}}
    assert rows == [{"posterior": "a", "run": "only"}]


def test_merge_drops_an_earlier_error_that_this_run_fixes(tmp_path):
    path = tmp_path / "pdb.json"
    base = {"posterior": "hmm", "backend": "numpyro", "method": "MSVGD"}
    old_rows = [{**base, "steps": 1000, "status": "error", "run": "all"},
                {**base, "steps": 300, "status": "error", "run": "short"},
                {**base, "backend": "pyro", "steps": 1000, "status": "error", "run": "all"}]
    path.write_text(json.dumps({"config": {"runs": {"all": {}, "short": {}}}, "rows": old_rows}))
    new = [{**base, "steps": 1000, "status": "ok"}]
    _, rows = merged(path, "fix", {}, new)
    assert rows == [old_rows[1], old_rows[2], {**new[0], "run": "fix"}]


def test_supersede_replaces_earlier_method_rows_but_keeps_references(tmp_path):
    path = tmp_path / "pdb.json"
    base = {"posterior": "ark", "backend": "pyro", "steps": 1000, "status": "ok"}
    old_rows = [{**base, "method": "MirroredSVGD", "run": "all"},
                {**base, "method": "NUTS", "run": "all"},
                {**base, "method": "MirroredSVGD", "steps": 300, "run": "short"},
                {**base, "method": "FBGVI", "run": "all"}]
    path.write_text(json.dumps({"config": {"runs": {"all": {}, "short": {}}}, "rows": old_rows}))
    new = [{**base, "method": "MirroredSVGD"}, {**base, "method": "NUTS"}]
    _, kept = merged(path, "dual", {}, new)
    assert kept[:4] == old_rows  # without supersede nothing ok is dropped
    _, rows = merged(path, "dual", {}, new, supersede=True)
    assert rows == [old_rows[1], old_rows[2], old_rows[3]] + [{**r, "run": "dual"} for r in new]
