"""``otto test``'s pieces that need no pytest run: its command line for pytest, the
default run folder, and the report written from records when pytest left none."""

from __future__ import annotations

from pathlib import Path

import pytest

from otto.cli.testcmd import _QUIET, _write_missing, default_output, pytest_argv
from otto.testing.records import write_record
from tests.sample_records import T0, sample_records


def test_pytest_argv_marks_the_run_and_forwards_options_then_user_args() -> None:
    argv = pytest_argv(
        ["-k", "ping", "-n", "4", "tests/"],
        output=Path("/runs/1"),
        labs=["a.json", "b.json"],
        iterations=3,
        duration=1.5,
        threshold=99.5,
        monitor=True,
        junit=Path("/ci/junit.xml"),
    )
    assert argv[:3] == ["--otto", "--otto-output", "/runs/1"]
    assert argv[3 : 3 + len(_QUIET)] == _QUIET
    assert argv[3 + len(_QUIET):] == [
        "--lab", "a.json", "--lab", "b.json",
        "--otto-iterations", "3", "--otto-duration", "1.5", "--otto-threshold", "99.5",
        "--otto-monitor", "--otto-junit", "/ci/junit.xml", "-k", "ping", "-n", "4", "tests/",
    ]  # fmt: skip
    assert pytest_argv([], output=Path("r")) == ["--otto", "--otto-output", "r", *_QUIET]


def test_default_output_is_a_utc_timestamp() -> None:
    assert default_output(T0) == Path("otto-runs/2023-11-14T221320Z")


def test_runs_started_in_the_same_second_get_folders_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = default_output(T0)
    first.mkdir(parents=True)
    assert default_output(T0) == Path("otto-runs/2023-11-14T221320Z-2")


def test_missing_report_and_junit_are_written_from_records(tmp_path: Path) -> None:
    for record in sample_records():
        write_record(tmp_path / "records-gw0.jsonl", record)
    _write_missing(tmp_path, None, 90.0, interrupted=True)
    assert "interrupted (Ctrl-C)" in (tmp_path / "report.html").read_text()
    assert (tmp_path / "junit.xml").read_text().count("<testcase") == 10
    # Up to date: left as they are.
    before = (tmp_path / "report.html").stat().st_mtime_ns
    _write_missing(tmp_path, None, 90.0, interrupted=False)
    assert (tmp_path / "report.html").stat().st_mtime_ns == before


def test_nothing_is_written_without_records(tmp_path: Path) -> None:
    _write_missing(tmp_path, tmp_path / "j.xml", None, interrupted=False)
    assert list(tmp_path.iterdir()) == []
