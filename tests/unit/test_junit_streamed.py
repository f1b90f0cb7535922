"""junit.xml is written as strings: byte for byte the file ElementTree writes of the same
tree (every test case an element, ``ET.indent``, ``ET.tostring``), which is what it was
written with before, and what ``_tree_cases`` still writes for the runs that are not a
plain pass."""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from otto.testing import junit
from otto.testing.records import Attempt, Metric, TestRecord
from tests.sample_records import CONTROL, HOSTILE, T0, sample_records


def tree_junit(records: list[TestRecord], path: Path, run_dir: Path) -> str:
    """The whole file as one ElementTree (how write_junit wrote it before)."""
    ordered = sorted(records, key=lambda r: (r.start, r.nodeid, r.iteration))
    runs = Counter(r.nodeid for r in ordered)
    iterated = {r.nodeid for r in ordered if runs[r.nodeid] > 1 or r.iteration > 1}
    counts = Counter(r.outcome for r in ordered)
    cases = [c for r in ordered for c in r.cases]
    counts.update(c.status for c in cases)
    start = min((r.start for r in ordered), default=time.time())
    stop = max((r.stop for r in ordered), default=start)
    totals = {
        "name": "otto",
        "tests": str(len(ordered) + len(cases)),
        "failures": str(counts["failed"]),
        "errors": str(counts["error"]),
        "time": f"{max(stop - start, 0.0):.3f}",
    }
    root = ET.Element("testsuites", totals)
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            **totals,
            "skipped": str(counts["skipped"]),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start)),
            "hostname": junit._clean(socket.gethostname()),
        },
    )
    links = junit._Links(run_dir, path.parent.resolve())
    for record in ordered:
        junit._testcase(suite, record, record.nodeid in iterated, links)
    ET.indent(root)
    return "<?xml version='1.0' encoding='utf-8'?>\n" + ET.tostring(root, encoding="unicode") + "\n"


def written(records: list[TestRecord], tmp: Path) -> tuple[str, str]:
    path = tmp / "out" / "junit.xml"
    junit.write_junit(path, records, run_dir=tmp / "run")
    return path.read_text(encoding="utf-8"), tree_junit(records, path, tmp / "run")


def passed(nodeid: str, *, hosts: list[str], worker: str = "", transcript: str = "") -> TestRecord:
    return TestRecord(
        nodeid=nodeid,
        name=nodeid.rpartition("::")[2],
        outcome="passed",
        start=T0,
        stop=T0 + 0.0125,
        hosts=hosts,
        worker=worker,
        transcript=transcript,
    )


def test_a_hostile_run_is_written_as_elementtree_writes_it(tmp_path: Path) -> None:
    records = sample_records()
    records += [
        passed(f"t.py::test_{HOSTILE}", hosts=[HOSTILE, CONTROL], transcript=f"{HOSTILE}/t.log"),
        passed("t.py::test_bare", hosts=[]),
        passed("t.py::test_tab\t\r\n", hosts=["a"], worker=f"gw{CONTROL}"),
    ]
    mine, tree = written(records, tmp_path)
    assert mine == tree
    assert mine.count("<testcase ") == len(records) + sum(len(r.cases) for r in records)


def test_no_record_gives_an_empty_suite(tmp_path: Path) -> None:
    mine, tree = written([], tmp_path)
    assert mine == tree
    assert "<testsuite " in mine and "</testsuite>" not in mine


def test_runs_that_are_not_a_plain_pass_keep_the_tree(tmp_path: Path) -> None:
    flaky = passed("t.py::test_flaky", hosts=["a"])
    flaky.earlier = [Attempt("failed", "E  boom & <bang>", T0 - 1, T0)]
    measured = passed("t.py::test_metric", hosts=["a"], transcript="m/transcript.log")
    measured.metrics = [Metric("rtt", 1.5, "ms", host="a")]
    iterated = [passed("t.py::test_again", hosts=["a"]) for _ in range(2)]
    iterated[1].iteration, iterated[1].start = 2, T0 + 1
    mine, tree = written([flaky, measured, *iterated], tmp_path)
    assert mine == tree
    assert "<flakyFailure " in mine and 'name="metric:rtt@a"' in mine
    assert "test_again [iteration 2]" in mine


text = st.text(st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(text, min_size=1, max_size=4),
    hosts=st.lists(text, max_size=3),
    worker=text,
    transcript=text,
    duration=st.floats(min_value=-1, max_value=1e6, allow_nan=False),
)
def test_any_passed_run_is_written_as_elementtree_writes_it(
    names: list[str],
    hosts: list[str],
    worker: str,
    transcript: str,
    duration: float,
) -> None:
    records = []
    for i, name in enumerate(names):
        record = passed(f"dir/t{i}.py::C::{name}", hosts=hosts, worker=worker)
        record.transcript = transcript
        record.stop = record.start + duration
        records.append(record)
    run_dir = Path("/nonexistent/run")
    path = Path("/nonexistent/out/junit.xml")
    links = junit._Links(run_dir, path.parent)
    for record in records:
        holder = ET.Element("testsuite")
        junit._testcase(holder, record, False, links)
        ET.indent(holder, level=1)
        (case,) = holder
        case.tail = None
        assert junit._passed_case(record, False, links) == ET.tostring(case, encoding="unicode")
