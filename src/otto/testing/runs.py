"""The state of one test run while it runs, and what it becomes: its outcome, the
description of its failing commands, its folder's name, its lines in pytest's summaries."""

from __future__ import annotations

import copy
import hashlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from otto.result import CommandStatus, Status
from otto.testing.records import Attempt, Outcome
from otto.testing.sessionlog import SessionLog
from otto.testing.transcript import Transcript

__all__ = ["TestRun", "by_iteration", "describe", "folder_name", "is_rerun", "outcome_of", "tail"]

_TAIL_LINES = 20
_TAIL_CHARS = 2000


@dataclass
class TestRun:
    """One run (iteration) of one test, while it runs."""

    __test__ = False  # not a pytest test class

    nodeid: str
    name: str
    iteration: int
    folder: str
    start: float
    attempt_start: float
    transcript: Transcript | None = None
    """Every byte sent and received (``transcript.raw.log``)."""
    session_log: SessionLog | None = None
    """The commands, their output and exit status (``transcript.log``)."""
    hosts: list[str] = field(default_factory=list)
    reports: list[pytest.TestReport] = field(default_factory=list)
    failures: list[CommandStatus] = field(default_factory=list)
    earlier: list[Attempt] = field(default_factory=list)
    rerun: bool = False
    attempt: int = 1
    crash_reported: bool = False
    picked: dict[bool, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def outcome_of(reports: Sequence[pytest.TestReport]) -> tuple[Outcome, str]:
    for report in reports:
        if report.failed:
            return ("failed" if report.when == "call" else "error"), str(report.longrepr)
    for report in reports:
        if report.skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            if hasattr(report, "wasxfail"):
                reason = f"xfail: {report.wasxfail or reason}"
            return "skipped", reason
    return "passed", ""


def is_rerun(report: pytest.TestReport) -> bool:
    """pytest-rerunfailures marks a failed try that will be run again."""
    return str(report.outcome) == "rerun"


def tail(text: str) -> str:
    lines = text.splitlines()[-_TAIL_LINES:]
    return "\n".join(lines)[-_TAIL_CHARS:]


def describe(status: CommandStatus) -> str:
    where = f"{status.host}/{status.session}" if status.session else status.host
    how = f"exit status {status.retcode}" if status.status is Status.Failed else "error"
    text = f"{where}: {status.command!r} -> {status.status.name} ({how})"
    if status.error:
        text += f"\n  {status.error}"
    last = tail(status.output)
    if last:
        text += "\n  output (tail):\n" + "\n".join("    " + line for line in last.splitlines())
    return text


def folder_name(nodeid: str) -> str:
    plain = nodeid.replace("::", "__").replace("/", "__")
    safe = re.sub(r"[^A-Za-z0-9._=\[\]-]+", "_", plain)
    if safe != plain or len(safe) > 120:
        digest = hashlib.sha1(nodeid.encode()).hexdigest()[:8]
        safe = f"{safe[:120]}-{digest}"
    return safe


_ITERATION = re.compile(r" \[iteration (\d+)\]$")


def by_iteration(reports: list[Any], key: str, *, per_test: bool) -> list[Any]:
    """Copies of ``reports`` for pytest's summaries, their node ids naming the iteration;
    with ``per_test``, one per test, naming how many runs failed and in which iterations."""
    groups: dict[str, list[tuple[Any, str]]] = {}
    for report in reports:
        location = getattr(report, "location", None)
        found = _ITERATION.search(location[2]) if location else None
        groups.setdefault(report.nodeid, []).append((report, found.group(1) if found else "?"))
    shown: list[Any] = []
    for nodeid, group in groups.items():
        if per_test:
            first = copy.copy(group[0][0])
            numbers = [n for _, n in group]
            listed = ", ".join(numbers[:10]) + (", ..." if len(numbers) > 10 else "")
            first.nodeid = (
                f"{nodeid} [{len(group)} {key} run{'s' if len(group) != 1 else ''}: "
                f"iteration{'s' if len(group) != 1 else ''} {listed}]"
            )
            shown.append(first)
            continue
        for report, number in group:
            named = copy.copy(report)
            named.nodeid = f"{nodeid} [iteration {number}]"
            shown.append(named)
    return shown
