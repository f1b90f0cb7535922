"""At the run's end the plugin judges and reports the records it wrote without reading
records.jsonl back when that gives the same records; otherwise it reads the folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otto.testing.junit import write_junit
from otto.testing.records import read_records

pytest_plugins = ["pytester"]

SUITE = """
import pytest

def test_passes(host, record_metric):
    record_metric("rtt", 1.5, "ms")
    assert host.name

def test_fails(host):
    from otto import run
    run(host.run("echo 'caf\\u00e9 <&>' ; exit 3"))
    assert False, "boom \\u00e9"

@pytest.mark.skip(reason="not today")
def test_skipped(host):
    pass

def test_checks(check):
    check.equal(1, 2)

def test_uses_nothing():
    pass
"""


def junit_of_the_file(run: Path, tmp: Path) -> str:
    records = list(read_records(sorted(run.glob("records*.jsonl"))))
    path = tmp / "again" / "junit.xml"
    write_junit(path, records, run_dir=run)
    return path.read_text()


def test_the_records_judged_at_the_end_are_those_in_the_file(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess(
        "--otto", "--output", "run", "--junit", "again/junit.xml", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2, failed=2, skipped=1)
    run = pytester.path / "run"
    assert (pytester.path / "again" / "junit.xml").read_text() == junit_of_the_file(
        run, pytester.path
    )


def test_records_already_in_the_folder_are_read_with_this_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_new(host):\n    pass\n")
    run = pytester.path / "run"
    run.mkdir()
    earlier = {
        "nodeid": "test_old.py::test_old",
        "name": "test_old",
        "outcome": "failed",
        "start": 1.0,
        "stop": 2.0,
        "longrepr": "E  an earlier run's failure",
    }
    (run / "records.jsonl").write_text(json.dumps(earlier) + "\n")
    (run / "records-gw3.jsonl").write_text(
        json.dumps({**earlier, "nodeid": "t.py::gw", "name": "gw"}) + "\n"
    )
    result = pytester.runpytest_inprocess("--otto", "--output", "run", "-p", "no:cacheprovider")
    junit = (run / "junit.xml").read_text()
    assert 'name="test_old"' in junit and 'name="gw"' in junit and 'name="test_new"' in junit
    assert result.ret != 0  # the earlier failure is judged with the rest


def test_a_record_with_a_secret_is_judged_as_written(pytester: pytest.Pytester) -> None:
    secret = "pw-in-an-assert-4711"
    lab = pytester.path / "lab.json"
    host = {"name": "box", "term": "local", "become_password": secret}
    lab.write_text(json.dumps({"hosts": [host]}))
    pytester.makepyfile(
        f"""
        def test_leaks(host):
            assert "{secret}" == "x"
        """
    )
    result = pytester.runpytest_inprocess(
        "--lab", str(lab), "--output", "run", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(failed=1)
    run = pytester.path / "run"
    for name in ("junit.xml", "report.html", "records.jsonl"):
        assert secret not in (run / name).read_text()
