"""JUnit XML from hand-built records, read back with junitparser (Jenkins' xunit2 flavour).

Besides parsing, the file is checked against the structure of Jenkins'
``junit-10.xsd`` with Surefire's rerun elements: which elements may appear
where, their attributes, and the types of the counts, times and timestamp.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import Error, Failure, Skipped
from junitparser.xunit2 import JUnitXml, TestCase, TestSuite

from otto.testing.junit import MAX_TEXT, junit_name, write_junit
from otto.testing.records import TestRecord as Record
from tests.sample_records import CONTROL, HOSTILE, T0, sample_records

_RESULT = {"message", "type"}
_INTERIM = {"children": {"stackTrace", "system-out", "system-err"}, "attrs": _RESULT}
STRUCTURE: dict[str, dict[str, set[str]]] = {
    "testsuites": {
        "children": {"testsuite"},
        "attrs": {"name", "time", "tests", "failures", "disabled", "errors"},
    },
    "testsuite": {
        "children": {"properties", "testcase", "system-out", "system-err"},
        "attrs": {
            "name", "tests", "failures", "errors", "time", "disabled", "skipped",
            "timestamp", "hostname", "id", "package", "file", "log", "url", "version", "group",
        },
    },
    "properties": {"children": {"property"}, "attrs": set()},
    "property": {"children": set(), "attrs": {"name", "value"}},
    "testcase": {
        "children": {
            "skipped", "error", "failure", "rerunFailure", "rerunError",
            "flakyFailure", "flakyError", "system-out", "system-err",
        },
        "attrs": {
            "name", "assertions", "time", "classname", "status", "class", "file", "line", "group",
        },
    },
    "failure": {"children": set(), "attrs": _RESULT},
    "error": {"children": set(), "attrs": _RESULT},
    "skipped": {"children": set(), "attrs": {"message"}},
    "rerunFailure": _INTERIM,
    "rerunError": _INTERIM,
    "flakyFailure": _INTERIM,
    "flakyError": _INTERIM,
    "stackTrace": {"children": set(), "attrs": set()},
    "system-out": {"children": set(), "attrs": set()},
    "system-err": {"children": set(), "attrs": set()},
}  # fmt: skip
REQUIRED = {"testsuite": {"name", "tests"}, "testcase": {"name"}, "property": {"name", "value"}}
INTEGERS = {"tests", "failures", "errors", "skipped", "disabled"}
DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$")
# A final result comes before the interim ones, and output last (junit-10's sequence).
ORDER = ["skipped", "error", "failure", "rerunFailure", "rerunError", "flakyFailure", "flakyError",
         "system-out", "system-err"]  # fmt: skip


def check_structure(element: ET.Element) -> None:
    rules = STRUCTURE.get(element.tag)
    assert rules is not None, f"<{element.tag}> is not a JUnit element"
    assert set(element.attrib) <= rules["attrs"], (element.tag, element.attrib)
    assert REQUIRED.get(element.tag, set()) <= set(element.attrib), element.tag
    for name, value in element.attrib.items():
        if name in INTEGERS:
            assert value.isdigit(), (element.tag, name, value)
        if name == "time":
            assert DECIMAL.match(value), value
        if name == "timestamp":
            assert TIMESTAMP.match(value), value
    tags = [child.tag for child in element]
    assert set(tags) <= rules["children"], (element.tag, tags)
    if element.tag == "testcase":
        ranks = [ORDER.index(t) for t in tags]
        assert ranks == sorted(ranks), tags
        assert sum(t in {"skipped", "error", "failure"} for t in tags) <= 1, tags
    if not rules["children"]:
        assert len(element) == 0
    for child in element:
        check_structure(child)


@pytest.fixture
def written(tmp_path: Path) -> Path:
    path = tmp_path / "out" / "junit.xml"
    write_junit(path, sample_records(), suite_name="nightly <run>", run_dir=tmp_path)
    return path


def cases(path: Path) -> dict[str, TestCase]:
    xml = JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert isinstance(suite, TestSuite)
    return {case.name: case for case in suite}


def test_the_file_has_junit_structure(written: Path) -> None:
    root = ET.parse(written).getroot()
    assert root.tag == "testsuites"
    check_structure(root)
    assert not written.with_name("junit.xml.part").exists()


def test_counts_in_the_suite(written: Path) -> None:
    xml = JUnitXml.fromfile(str(written))
    suite = next(iter(xml))
    assert suite.name == "nightly <run>"
    assert (suite.tests, suite.failures, suite.errors) == (10, 4, 1)
    assert int(suite._elem.get("skipped")) == 1
    assert suite.hostname
    xml.update_statistics()
    assert (xml.tests, xml.failures, xml.errors) == (10, 4, 1)


def test_iterations_are_separate_cases(written: Path) -> None:
    found = cases(written)
    names = [f"test_ping[web-1] [iteration {i}]" for i in (1, 2, 3, 4)]
    assert all(name in found for name in names)
    assert found[names[0]].classname == "tests.test_net"
    assert found[names[0]].is_passed
    third = found[names[2]]
    (result,) = third.result
    assert isinstance(result, Failure)
    assert result.message == "assert 1 == 0"
    assert "ping -c 1 10.0.0.9" in (result.text or "")
    assert float(third.time) == 1.5
    # A test run once keeps its plain name.
    assert "test_boot" in found


def test_failures_errors_and_skips_carry_messages(written: Path) -> None:
    found = cases(written)
    (crash,) = found["test_boot"].result
    assert isinstance(crash, Failure)
    assert crash.message == "device crash on board-1: Kernel panic"
    assert crash.type == "otto.crash"
    assert 'Kernel panic - not syncing: <fatal> & "bad"' in (crash.text or "")
    (error,) = found["test_setup_error"].result
    assert isinstance(error, Error)
    assert error.message == "otto.errors.ConnectError: db: connection refused"
    (skip,) = found["test_skip"].result
    assert isinstance(skip, Skipped)
    assert skip.message == "needs a board with <wifi>"


def test_reruns_keep_every_earlier_try(written: Path) -> None:
    found = cases(written)
    flaky = found["test_up"]
    assert flaky.classname == "tests.test_flaky.TestLink"
    assert flaky.is_passed and flaky.is_flaky and not flaky.is_rerun
    (failure,) = flaky.flaky_failures()
    (error,) = flaky.flaky_errors()
    assert failure.message == "TimeoutError: link did not come up (try 1)"
    assert "try 1" in failure.stack_trace
    assert "fixture setup (try 2)" in error.stack_trace
    broken = found["test_down"]
    assert not broken.is_passed and broken.is_rerun and not broken.is_flaky
    assert [r.message for r in broken.rerun_failures()] == [
        "AssertionError: still up (try 1)",
        "AssertionError: still up (try 2)",
    ]


def test_system_out_points_at_the_transcript(written: Path, tmp_path: Path) -> None:
    out = cases(written)["test_boot"].system_out
    assert "hosts: board-1, web-1" in out
    # Relative to the JUnit file's folder (out/), the transcript is in the run folder.
    assert "transcript: ../tests/test_board.py__test_boot/transcript.log" in out
    target = tmp_path / "tests/test_board.py__test_boot/transcript.log"
    assert f"[[ATTACHMENT|{target}]]" in out
    assert cases(written)["test_ping[web-1] [iteration 2]"].system_out.count("worker: gw0") == 1


def test_hostile_names_and_output_survive(written: Path) -> None:
    found = cases(written)
    name = f"test_name[{HOSTILE}]"
    assert name in found
    (failure,) = found[name].result
    assert failure.message == f"AssertionError: {HOSTILE}"
    text = failure.text or ""
    # The huge output is cut to its tail, with a note.
    assert "the last line of a huge output" in text
    assert "characters cut" in text
    assert len(text) < 3 * MAX_TEXT
    assert written.stat().st_size < 1_000_000
    assert "<script>" not in written.read_text(encoding="utf-8")


def test_characters_xml_cannot_hold_are_escaped(tmp_path: Path) -> None:
    record = Record(
        f"t.py::test_{CONTROL}", f"test_{CONTROL}", "failed", T0, T0 + 1, longrepr=CONTROL
    )
    path = tmp_path / "junit.xml"
    write_junit(path, [record])
    check_structure(ET.parse(path).getroot())
    (case,) = cases(path).values()
    # Shown as escapes, never dropped silently.
    assert case.name == "test_bell\\x07 nul\\x00 esc\\x1b[31m red\\x1b[0m form\\x0c"
    (failure,) = case.result
    assert failure.text == "bell\\x07 nul\\x00 esc\\x1b[31m red\\x1b[0m form\\x0c"


def test_no_records_is_an_empty_valid_suite(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(path, [])
    root = ET.parse(path).getroot()
    check_structure(root)
    assert root.find("testsuite").get("tests") == "0"  # type: ignore[union-attr]


def test_names_like_pytests_own() -> None:
    record = Record("a/b/test_c.py::TestD::test_e[x-y]", "test_e[x-y]", "passed", T0, T0)
    assert junit_name(record, False) == ("a.b.test_c.TestD", "test_e[x-y]")
    record.iteration = 7
    assert junit_name(record, True) == ("a.b.test_c.TestD", "test_e[x-y] [iteration 7]")
    bare = Record("test_f.py::test_g", "", "passed", T0, T0)
    assert junit_name(bare, False) == ("test_f", "test_g")
