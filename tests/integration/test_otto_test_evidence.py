"""``otto test`` end to end: non-fatal checks, metrics and baselines, device-side cases.

Each test runs ``python -m otto test`` on a suite written into its temporary folder,
with and without pytest-xdist (``-n 2``) and ``--iterations``, and reads what the run
left: the terminal, ``junit.xml``, ``report.html``, ``records*.jsonl`` and the
Prometheus file.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

DEADLINE = 120.0
SECRET = "evidence-s3cret-value"

CONFTEST = f"""
from otto import redact

redact.register({SECRET!r})
"""

CHECKS = f"""
import pytest

SECRET = {SECRET!r}


def test_every_check_is_listed(check):
    check.equal(1 + 1, 3, "arithmetic")
    check.that("ok" in "fine", "no ok in fine")
    with check:
        assert [1, 2] == [1, 2, 3]
    check.equal("pass: " + SECRET, "x")
    print("the test went on to its end")


def test_passing_checks_pass(check):
    assert check.equal(2, 2) and check.that(True, "true")
    with check:
        assert 1 == 1


def test_other_errors_end_the_test(check):
    with check:
        raise KeyError("not an assertion")
    raise AssertionError("never reached")


def test_a_failing_test_also_lists_its_checks(check):
    check.that(False, "first, non-fatal")
    assert 0 == 1, "then fatal"
"""

METRICS = f"""
import os

SECRET = {SECRET!r}


def test_speed(record_metric):
    record_metric("latency", float(os.environ.get("LATENCY", "10")), unit="ms", host="local")
    record_metric("through put", float(os.environ.get("RATE", "100")), unit="MB/s",
                  better="higher")
    record_metric("count", 3)
    record_metric("hidden", 1, host="h-" + SECRET)


def test_not_a_number(record_metric):
    record_metric("temperature", float("nan"))
"""

CASES = """
from otto import Host
from otto.results import Case, publish


async def test_device_suite(host: Host):
    result = await host.run("printf 'PASS: boot\\nFAIL: usb\\nSKIP: wifi\\n'")
    cases = []
    for line in result.only.output.splitlines():
        word, name = line.split(": ")
        status = {"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}[word]
        cases.append(Case(name, status, line, "" if status == "passed" else f"{word} {name}"))
    publish("local: run-ptest", cases)


def test_a_swallowed_crash_still_fails():
    try:
        publish("board: run-tests", [Case("fs", "error", "Segmentation fault", "crashed")])
    except Exception:
        pass


def test_all_passed():
    publish("board: run-tests", [Case("one", "passed", "ok 1"), Case("two", "passed", "ok 2")])
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "PYTEST_ADDOPTS"}}
    env["COLUMNS"] = "200"
    return env | extra


def otto_test(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto", "test", "-p", "no:cacheprovider", *args],
        capture_output=True, text=True, env=clean_env(**env), cwd=cwd, timeout=DEADLINE,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def suite(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir(exist_ok=True)
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / name).write_text(text)
    return folder


def junit_cases(junit: Path) -> dict[str, ET.Element]:
    root = ET.parse(junit).getroot()
    return {case.attrib["name"]: case for case in root.iter("testcase")}


def results(case: ET.Element) -> list[ET.Element]:
    """A test case's failure, error or skipped elements (not its output or properties)."""
    return [e for e in case if e.tag in {"failure", "error", "skipped"}]


def records(run: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(run.glob("records*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def every_file(run: Path) -> str:
    return "".join(p.read_text() for p in run.rglob("*") if p.is_file() and p.suffix != ".db")


XDIST = pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])


# --- checks ---------------------------------------------------------------------------------


@XDIST
def test_checks_fail_the_test_at_its_end_listing_every_one(
    tmp_path: Path, workers: list[str]
) -> None:
    folder = suite(tmp_path, "test_checks.py", CHECKS)
    proc = otto_test(tmp_path, "--output", "run", "-rA", *workers, str(folder))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 passed" in proc.stdout and "3 failed" in proc.stdout
    where = "suite/test_checks.py"
    for line, text in ((8, "arithmetic: 2 != 3"), (9, "no ok in fine"), (11, "assert [1, 2] == ")):
        assert f"{where}:{line}: {text}" in out
    assert f"{where}:12: 'pass: ***' != 'x'" in out
    assert "the test went on to its end" in out  # -rA shows its output: it ran to the end
    assert SECRET not in out
    run = tmp_path / "run"
    cases = junit_cases(run / "junit.xml")
    (failure,) = results(cases["test_every_check_is_listed"])
    assert failure.tag == "failure"
    message = failure.attrib["message"]
    assert message.startswith("4 checks failed: ")
    for line in (8, 9, 11, 12):
        assert f"{where}:{line}: " in message
    assert results(cases["test_passing_checks_pass"]) == []
    (error,) = results(cases["test_other_errors_end_the_test"])
    assert "KeyError" in error.attrib["message"]
    (fatal,) = results(cases["test_a_failing_test_also_lists_its_checks"])
    assert "then fatal" in fatal.attrib["message"]
    assert "first, non-fatal" in (fatal.text or "")  # the checks are in its report too
    report = (run / "report.html").read_text()
    assert "4 failed checks" in report and html.escape("arithmetic: 2 != 3") in report
    by_name = {r["name"]: r for r in records(run)}
    assert [c["location"] for c in by_name["test_every_check_is_listed"]["checks"]] == [
        f"{where}:{n}" for n in (8, 9, 11, 12)
    ]
    assert SECRET not in every_file(run)
    if workers:
        assert len(list(run.glob("records-gw*.jsonl"))) == 2


OTHER_CHECK = """
import pytest


class Lenient:
    def equal(self, a, b, msg=None):
        return a == b


@pytest.fixture
def check():  # what pytest-check, or a project, may call its own fixture
    return Lenient()
"""

BOTH = """
def test_the_projects_check(check):
    assert not check.equal(1, 2)  # not otto's: nothing recorded, nothing failed


def test_ottos_check_by_its_own_name(otto_check):
    otto_check.equal(1, 2, "otto's")


def test_both_names(check, otto_check):
    otto_check.that(False, "still otto's")
"""


def test_another_check_fixture_wins_by_its_name_and_otto_check_stays_ottos(
    tmp_path: Path,
) -> None:
    folder = suite(tmp_path, "test_both.py", BOTH)
    (folder / "conftest.py").write_text(OTHER_CHECK)
    proc = otto_test(tmp_path, "--output", "run", str(folder))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 failed, 1 passed" in proc.stdout
    assert "suite/test_both.py:7: otto's: 1 != 2" in proc.stdout
    assert "suite/test_both.py:11: still otto's" in proc.stdout


# --- metrics --------------------------------------------------------------------------------


@XDIST
def test_metrics_reach_junit_the_report_and_prometheus(tmp_path: Path, workers: list[str]) -> None:
    folder = suite(tmp_path, "test_metrics.py", METRICS)
    proc = otto_test(
        tmp_path, "--output", "run", "--metrics-out", "metrics.prom", *workers, str(folder)
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # test_not_a_number
    assert "record_metric('temperature'): the value must be finite, got nan" in out
    run = tmp_path / "run"
    properties = {
        p.attrib["name"]: p.attrib["value"]
        for p in junit_cases(run / "junit.xml")["test_speed"].iter("property")
    }
    assert properties == {
        "metric:latency@local": "10.0",
        "metric-unit:latency@local": "ms",
        "metric:through put": "100.0",
        "metric-unit:through put": "MB/s",
        "metric:count": "3",
        "metric:hidden@h-***": "1",
    }
    text = (tmp_path / "metrics.prom").read_text()
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    test = "suite/test_metrics.py::test_speed"
    assert found == {
        ("latency", (("host", "local"), ("test", test), ("unit", "ms"))): 10.0,
        ("through_put", (("test", test), ("unit", "MB/s"))): 100.0,
        ("count", (("test", test),)): 3.0,
        ("hidden", (("host", "h-***"), ("test", test))): 1.0,
    }
    report = (run / "report.html").read_text()
    assert '<tr class="metric"><td><code>latency</code></td><td>local</td>' in report
    assert "metric-chart" not in report  # one run each: a table, no chart
    assert SECRET not in every_file(run) + text


def test_metrics_across_iterations_are_charted(tmp_path: Path) -> None:
    folder = suite(tmp_path, "test_metrics.py", METRICS)
    proc = otto_test(tmp_path, "--output", "run", "--iterations", "3", "-k", "speed", str(folder))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "run"
    assert [len(r["metrics"]) for r in records(run)] == [4, 4, 4]
    report = (run / "report.html").read_text()
    assert report.count('class="metric-chart"') == 4  # one per metric and host
    assert report.count("<title>iteration 3: 10</title>") == 1


# --- baselines ------------------------------------------------------------------------------


def test_a_regression_beyond_tolerance_fails_the_run(tmp_path: Path) -> None:
    folder = suite(tmp_path, "test_metrics.py", METRICS)
    base = otto_test(tmp_path, "--output", "base", "-k", "speed", str(folder))
    assert base.returncode == 0, base.stdout + base.stderr
    worse = otto_test(
        tmp_path, "--output", "worse", "--baseline", "base", "-k", "speed", str(folder),
        LATENCY="12", RATE="95",
    )  # fmt: skip
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "1 passed" in worse.stdout and "verdict: failed" in worse.stdout
    assert (
        "suite/test_metrics.py::test_speed: latency@local: 10 ms -> 12 ms "
        "(+20.0%, lower is better, tolerance 10%)"
    ) in worse.stdout
    assert "through put" not in worse.stdout  # -5% of a higher-is-better metric: within 10%
    report = (tmp_path / "worse" / "report.html").read_text()
    assert 'id="verdict">failed' in report
    assert (
        '<tr class="below" data-verdict="regressed"><td><code>suite/test_metrics.py::test_speed'
        "</code></td><td><code>latency</code></td><td>local</td><td class=num>10 ms</td>"
        "<td class=num>12 ms</td><td class=num>+20.0%</td><td class=num>10%</td>"
    ) in report
    allowed = otto_test(
        tmp_path, "--output", "allowed", "--baseline", "base", "--tolerance", "5%",
        "--tolerance", "latency=25%", "-k", "speed", str(folder), LATENCY="12", RATE="96",
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "verdict: passed" in allowed.stdout
    higher = otto_test(
        tmp_path, "--output", "higher", "--baseline", "base", "-k", "speed", str(folder),
        RATE="80",
    )  # fmt: skip
    assert higher.returncode == 1
    assert "through put: 100 MB/s -> 80 MB/s (-20.0%, higher is better" in higher.stdout


def test_help_names_the_metric_options(tmp_path: Path) -> None:
    proc = otto_test(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for option in ("--metrics-out FILE", "--baseline RUN_DIR", "--tolerance [NAME=]PCT"):
        assert option in text


def test_a_baseline_that_cannot_be_read_is_a_usage_error(tmp_path: Path) -> None:
    folder = suite(tmp_path, "test_metrics.py", METRICS)
    missing = otto_test(tmp_path, "--output", "run", "--baseline", "no/such/run", str(folder))
    assert missing.returncode == 4, missing.stdout + missing.stderr
    assert f"--baseline {tmp_path / 'no/such/run'}: no such run folder" in missing.stderr
    assert not (tmp_path / "run").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "records.jsonl").write_text("{not json\n")
    bad = otto_test(tmp_path, "--output", "run", "--baseline", "broken", str(folder))
    assert bad.returncode == 4
    assert f"--baseline {broken}: its records are not otto records" in bad.stderr
    tolerance = otto_test(tmp_path, "--output", "run", "--tolerance", "lots", str(folder))
    assert tolerance.returncode == 4
    assert "not a percentage: 'lots'" in tolerance.stderr


# --- device-side cases ----------------------------------------------------------------------


@XDIST
def test_device_cases_are_junit_cases_and_fail_their_test(
    tmp_path: Path, workers: list[str]
) -> None:
    folder = suite(tmp_path, "test_cases.py", CASES)
    proc = otto_test(tmp_path, "--output", "run", *workers, str(folder))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "2 failed, 1 passed" in proc.stdout
    assert "usb (failed, from local: run-ptest): FAIL usb" in out
    assert "fs (error, from board: run-tests): crashed" in out
    run = tmp_path / "run"
    root = ET.parse(run / "junit.xml").getroot()
    suite_element = root.find("testsuite")
    assert suite_element is not None
    assert suite_element.attrib["tests"] == "9"  # 3 tests and 6 cases
    cases = junit_cases(run / "junit.xml")
    boot, usb, wifi = (cases[f"test_device_suite::{n}"] for n in ("boot", "usb", "wifi"))
    assert {c.attrib["classname"] for c in (boot, usb, wifi)} == {
        cases["test_device_suite"].attrib["classname"]
    }
    assert [e.tag for e in boot] == ["system-out"]
    assert [e.tag for e in usb] == ["failure", "system-out"]
    assert usb[0].attrib["message"] == "FAIL usb"
    assert usb.find("system-out").text == "from: local: run-ptest\nFAIL: usb"  # type: ignore[union-attr]
    assert wifi[0].tag == "skipped"
    assert cases["test_a_swallowed_crash_still_fails::fs"][0].tag == "error"
    (failed,) = results(cases["test_a_swallowed_crash_still_fails"])
    assert "1 device-side case failed" in failed.attrib["message"]
    assert [e.tag for e in cases["test_all_passed::one"]] == ["system-out"]
    assert results(cases["test_all_passed"]) == []
    report = (run / "report.html").read_text()
    assert "Device-side cases (1 failed, 1 passed, 1 skipped)" in report
    assert "Device-side cases (2 passed)" in report
    # A passed case of a failed test is shown passed (not in its test's colour).
    assert 'style="color:var(--passed);background:var(--passed-bg)">passed</span>' in report
    assert "pytest's report" not in report.split('data-nodeid="suite/test_cases.py::test_a_sw')[1]
    by_name = {r["name"]: r for r in records(run)}
    assert [c["name"] for c in by_name["test_device_suite"]["cases"]] == ["boot", "usb", "wifi"]


FIXTURE_CASES = """
import pytest
from otto.results import Case, publish


@pytest.fixture
def suite_ran():
    publish("board: setup suite", [Case("early", "failed", "FAIL: early", "early failure")])
    yield


@pytest.fixture
def suite_broke():
    publish("board: setup suite", [Case("setup", "error", "", "crashed in setup")])
    raise RuntimeError("setup gave up")


def test_after_a_fixture_published(suite_ran):
    pass


def test_a_fixture_that_fails(suite_broke):
    pass
"""


def test_cases_a_fixture_publishes_are_judged_once(tmp_path: Path) -> None:
    folder = suite(tmp_path, "test_fixture_cases.py", FIXTURE_CASES)
    proc = otto_test(tmp_path, "--output", "run", str(folder))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 error" in proc.stdout  # no second error from its teardown
    assert "early (failed, from board: setup suite): early failure" in proc.stdout
    assert "setup (error, from board: setup suite): crashed in setup" in proc.stdout
    outcomes = {r["name"]: r["outcome"] for r in records(tmp_path / "run")}
    assert outcomes == {
        "test_after_a_fixture_published": "failed",
        "test_a_fixture_that_fails": "error",
    }


def test_device_cases_of_each_iteration_are_named_by_it(tmp_path: Path) -> None:
    folder = suite(tmp_path, "test_cases.py", CASES)
    proc = otto_test(tmp_path, "--output", "run", "--iterations", "2", "-k", "all_passed",
                     str(folder))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = sorted(junit_cases(tmp_path / "run" / "junit.xml"))
    assert names == [
        "test_all_passed [iteration 1]",
        "test_all_passed [iteration 2]",
        "test_all_passed::one [iteration 1]",
        "test_all_passed::one [iteration 2]",
        "test_all_passed::two [iteration 1]",
        "test_all_passed::two [iteration 2]",
    ]
