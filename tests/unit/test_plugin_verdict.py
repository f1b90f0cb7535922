"""The run's verdict is never better than the truth, and its evidence holds no secret.

Real pytest runs (pytester, in a subprocess where a worker is killed) and real
``python -m otto test`` runs, on this machine only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import Error
from junitparser.xunit2 import JUnitXml

from otto.testing.records import TestRecord, read_records

pytest_plugins = ["pytester"]

DEADLINE = 120.0


def records(run: Path) -> list[TestRecord]:
    return list(read_records(sorted(run.glob("records*.jsonl"))))


def junit_results(path: Path) -> dict[str, list[object]]:
    return {
        case.name: list(case.result) for suite in JUnitXml.fromfile(str(path)) for case in suite
    }


def verdict_of(run: Path) -> str:
    report = (run / "report.html").read_text()
    head = report.split('id="verdict">', 1)[1]
    return head.split("<", 1)[0]


def otto_test(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "PYTEST_ADDOPTS"}}
    return subprocess.run(
        [sys.executable, "-m", "otto", "test", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=DEADLINE,
        check=False,
    )


# --- a pytest-xdist worker that dies ---------------------------------------------------------

DYING = """
import os, signal

def test_ok():
    pass

def test_dies():
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("threshold", [[], ["--threshold", "0"]], ids=["plain", "threshold-0"])
def test_a_killed_worker_is_an_error_in_report_and_junit(
    pytester: pytest.Pytester, threshold: list[str]
) -> None:
    pytester.makepyfile(test_dying=DYING)
    result = pytester.runpytest_subprocess(
        "-n", "2", "--otto", "--output", "run", "-p", "no:cacheprovider", *threshold
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    run = pytester.path / "run"
    crashed = [r for r in records(run) if r.kind == "crashed"]
    assert [(r.nodeid, r.outcome) for r in crashed] == [("test_dying.py::test_dies", "error")]
    assert "crashed" in crashed[0].longrepr
    (error,) = junit_results(run / "junit.xml")["test_dies"]
    assert isinstance(error, Error)
    report = (run / "report.html").read_text()
    assert "test_dying.py::test_dies" in report and verdict_of(run) == "failed"
    assert "worker crashed" in report


def test_tests_a_dead_worker_never_ran_are_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_first=DYING.replace("def test_ok():\n    pass\n", ""),
        test_second="def test_b():\n    pass\ndef test_c():\n    pass\n",
    )
    result = pytester.runpytest_subprocess(
        "-n", "1", "--max-worker-restart", "0", "--otto", "--output", "run",
        "--threshold", "0", "-p", "no:cacheprovider",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    run = pytester.path / "run"
    kinds = {r.nodeid: r.kind for r in records(run)}
    assert kinds == {
        "test_first.py::test_dies": "crashed",
        "test_second.py::test_b": "not-run",
        "test_second.py::test_c": "not-run",
    }
    results = junit_results(run / "junit.xml")
    assert all(isinstance(results[name][0], Error) for name in ("test_dies", "test_b", "test_c"))


# --- collection errors -----------------------------------------------------------------------


def broken_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_broken.py").write_text("import no_such_module_here\n\ndef test_x():\n    pass\n")
    (suite / "test_fine.py").write_text("def test_fine():\n    pass\n")
    return suite


def test_a_module_that_fails_to_import_is_a_failure_not_an_interruption(tmp_path: Path) -> None:
    suite = broken_suite(tmp_path)
    proc = otto_test("--output", "run", str(suite), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = tmp_path / "run"
    assert verdict_of(run) == "failed"
    report = (run / "report.html").read_text()
    assert "interrupted" not in report.lower()
    assert "collection error" in report and "test_broken.py" in report
    (record,) = records(run)
    assert (record.kind, record.outcome) == ("collection", "error")
    assert "no_such_module_here" in record.longrepr
    (error,) = junit_results(run / "junit.xml")["suite/test_broken.py"]
    assert isinstance(error, Error)


def test_continue_on_collection_errors_with_a_threshold_still_fails(tmp_path: Path) -> None:
    suite = broken_suite(tmp_path)
    proc = otto_test(
        "--output", "run", "--threshold", "0", "--continue-on-collection-errors", str(suite),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert verdict_of(tmp_path / "run") == "failed"
    assert sorted((r.nodeid, r.outcome) for r in records(tmp_path / "run")) == [
        ("suite/test_broken.py", "error"),
        ("suite/test_fine.py::test_fine", "passed"),
    ]
    assert "collection error" in proc.stdout


# --- every test skipped ----------------------------------------------------------------------


def test_a_threshold_over_skipped_tests_only_fails_in_report_and_exit(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("import pytest\n\n@pytest.mark.skip('not here')\ndef test_x():\n    pass\n")
    result = pytester.runpytest_inprocess("--otto", "--output", "run", "--threshold", "50")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert verdict_of(pytester.path / "run") == "failed"
    result.stdout.fnmatch_lines(["*no test ran to measure against the 50% threshold*"])


# --- text that UTF-8 cannot hold ---------------------------------------------------------------


def test_a_lone_surrogate_in_a_failure_is_recorded_and_later_tests_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_bad_name():
            name = b"report-\\xff.txt".decode("utf-8", "surrogateescape")
            raise AssertionError("cannot open " + name)

        def test_after():
            pass
        """
    )
    result = pytester.runpytest_inprocess("--otto", "--output", "run", "-p", "no:cacheprovider")
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.assert_outcomes(failed=1, passed=1)
    found = {r.name: r for r in records(pytester.path / "run")}
    assert found["test_after"].outcome == "passed"
    assert "cannot open report-" in found["test_bad_name"].longrepr
    assert "report-" in (pytester.path / "run" / "report.html").read_text()


# --- secrets -----------------------------------------------------------------------------------

SECRET = "Bec0me&<pw>'\"x"


def test_lab_secrets_never_reach_the_run_folder(pytester: pytest.Pytester) -> None:
    lab = pytester.path / "lab.json"
    lab.write_text(
        json.dumps({"hosts": [{"name": "box", "term": "local", "become_password": SECRET}]})
    )
    pytester.makepyfile(
        """
        import logging, shlex

        def test_leaks(lab, host):
            logging.getLogger("otto.test").warning("trying %s", lab.spec("box").become_password)
            assert lab.spec("box").become_password == "something else"

        async def test_prints(host, lab):
            await host.run("echo " + shlex.quote(lab.spec("box").become_password))
        """
    )
    result = pytester.runpytest_inprocess("--lab", str(lab), "--output", "run")
    result.assert_outcomes(failed=1, passed=1)
    run = pytester.path / "run"
    texts = {p: p.read_text(errors="replace") for p in run.rglob("*") if p.is_file()}
    assert {"report.html", "junit.xml", "records.jsonl", "otto.log"} <= {p.name for p in texts}
    assert any(p.name == "transcript.log" for p in texts)
    forms = {SECRET, "Bec0me&amp;&lt;pw&gt;", "Bec0me\\u0026", "Bec0me&<pw>", "<pw>'"}
    for path, text in texts.items():
        for form in forms:
            assert form not in text, (path, form)
    assert "***" in texts[run / "records.jsonl"]


def test_a_collection_error_under_xdist_is_recorded_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_broken="import no_such_module_here\n", test_fine="def test_fine():\n    pass\n"
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "--otto", "--output", "run", "--threshold", "0", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    errors = [r for r in records(pytester.path / "run") if r.kind == "collection"]
    assert [r.nodeid for r in errors] == ["test_broken.py"]
    assert verdict_of(pytester.path / "run") == "failed"
