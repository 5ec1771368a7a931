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
