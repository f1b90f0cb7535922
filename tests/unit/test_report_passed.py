"""A test that ran once and passed is written in one go (``_passed_block``): the same
block, byte for byte, and the same span as the general ``_test_block`` gives it."""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from otto.testing import report
from otto.testing.records import Attempt, DeviceCase, Metric, TestRecord
from tests.sample_records import CONTROL, HOSTILE, T0


def general(index: int, record: TestRecord) -> tuple[str, list[dict[str, object]]]:
    stats = report.stability([record])[record.nodeid]
    return report._test_block(index, stats, [record], None)


def passed(**fields: object) -> TestRecord:
    values: dict[str, object] = {
        "nodeid": "t.py::test_x",
        "name": "test_x",
        "outcome": "passed",
        "start": T0,
        "stop": T0 + 0.25,
    }
    values.update(fields)
    return TestRecord(**values)  # type: ignore[arg-type]


def test_a_hostile_passed_test_is_the_general_block() -> None:
    record = passed(
        nodeid=f"t.py::test_[{HOSTILE}]",
        name="",
        hosts=[HOSTILE, "b", "a", "b"],
        worker=CONTROL,
        transcript=f"t.py__{HOSTILE}/transcript.log",
        folder=f"t.py__{HOSTILE}",
    )
    fast = report._passed_block(7, record)
    assert fast is not None
    assert fast == general(7, record)
    assert "<script>" not in fast[0]


def test_other_tests_take_the_general_block() -> None:
    for record in (
        passed(outcome="failed", longrepr="E  boom"),
        passed(outcome="skipped", longrepr="why"),
        passed(earlier=[Attempt("failed", "E  boom", T0 - 1, T0)]),
        passed(cases=[DeviceCase("c1", "passed")]),
        passed(metrics=[Metric("rtt", 1.0)]),
    ):
        assert report._passed_block(0, record) is None


def test_the_page_lists_a_passed_test_as_before(tmp_path: Path) -> None:
    record = passed(hosts=["h"], transcript="d/transcript.log", folder="d")
    page = report.write_report(tmp_path, [record]).read_text(encoding="utf-8")
    assert general(0, record)[0] in page


text = st.text(st.characters(codec="utf-8"), max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=10_000),
    nodeid=text,
    name=text,
    hosts=st.lists(text, max_size=4),
    worker=text,
    folder=text,
    start=st.floats(min_value=-1e9, max_value=4e9, allow_nan=False),
    duration=st.floats(min_value=-5, max_value=1e6, allow_nan=False),
)
def test_any_passed_test_is_the_general_block(
    index: int,
    nodeid: str,
    name: str,
    hosts: list[str],
    worker: str,
    folder: str,
    start: float,
    duration: float,
) -> None:
    record = passed(
        nodeid=nodeid,
        name=name,
        hosts=hosts,
        worker=worker,
        start=start,
        stop=start + duration,
        folder=folder,
        transcript=f"{folder}/transcript.log" if folder else "",
    )
    assert report._passed_block(index, record) == general(index, record)


def test_the_time_shown_is_the_second_it_falls_in() -> None:
    for t in (-0.5, 0.0, 0.999999, T0 + 0.5, -86400.25):
        expected = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(math.floor(t)))
        assert report._when(t) == expected == time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


@settings(max_examples=300, deadline=None)
@given(folder=st.text(st.characters(codec="utf-8"), min_size=1, max_size=30))
def test_a_test_folders_links_are_its_paths_percent_encoded(folder: str) -> None:
    record = passed(folder=folder, transcript=f"{folder}/transcript.log")
    # quote() leaves no character that HTML would have to escape.
    transcript = quote(f"{folder}/transcript.log")
    assert report._links(record) == (
        f'<a href="{transcript}">transcript</a> · <a href="{quote(folder)}">test folder</a>'
    )


@given(text=st.text(max_size=40))
def test_text_is_escaped_as_html_escape_does(text: str) -> None:
    assert report._e(text) == html.escape(text, quote=True)
