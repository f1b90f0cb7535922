"""What a test run records: one ``TestRecord`` per test run (per iteration).

The pytest plugin fills these as tests run and appends each, as one JSON
line, to ``records.jsonl`` in the run folder; the report and the JUnit file
are written from them. Plain data, no pytest here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

__all__ = [
    "Attempt",
    "CaseStatus",
    "CommandFailure",
    "Crash",
    "DeviceCase",
    "FailedCheck",
    "Kind",
    "Metric",
    "Outcome",
    "TestRecord",
    "describe_cases",
    "read_records",
    "write_record",
]

Outcome = Literal["passed", "failed", "error", "skipped"]
Kind = Literal["test", "collection", "crashed", "not-run"]
CaseStatus = Literal["passed", "failed", "skipped", "error"]
"""What a record is of: a test run, a module that could not be collected, a test
whose pytest-xdist worker died under it, or a test the run never got to (its
worker died and no other took it)."""


@dataclass
class CommandFailure:
    """A command that did not succeed during a test."""

    host: str
    command: str
    retcode: int
    status: str
    """``Failed`` or ``Error``."""
    output_tail: str
    error: str = ""


@dataclass
class Crash:
    """A device crash seen on a console the test used."""

    host: str
    pattern: str
    excerpt: str


@dataclass
class Attempt:
    """An earlier try of a rerun test (kept: evidence is never dropped)."""

    outcome: Outcome
    longrepr: str
    start: float
    stop: float


@dataclass
class FailedCheck:
    """A non-fatal check (the ``check`` fixture) that failed: the test went on."""

    message: str
    location: str
    """``file:line`` in the test's source."""


@dataclass
class Metric:
    """A value a test recorded with ``record_metric``."""

    name: str
    value: float
    unit: str | None = None
    host: str | None = None
    better: Literal["lower", "higher"] = "lower"
    """Which way is an improvement, for ``--baseline``."""


@dataclass
class DeviceCase:
    """A result case a device-side suite reported during the test (``otto.results``)."""

    name: str
    status: CaseStatus
    output: str = ""
    """The case's slice of the suite's output."""
    message: str = ""
    duration: float | None = None
    source: str = ""
    """Where the case came from (the command or file the results were read from)."""

    @property
    def bad(self) -> bool:
        """A failed or error case: it fails its test."""
        return self.status in ("failed", "error")


def describe_cases(cases: Iterable[DeviceCase]) -> str:
    """The failed and error cases among ``cases``, one per line, as the terminal, the report
    and JUnit show them."""
    bad = [c for c in cases if c.bad]
    lines = [f"{len(bad)} device-side case{'s' if len(bad) != 1 else ''} failed:"]
    for case in bad:
        why = f": {case.message}" if case.message else ""
        lines.append(f"  {case.name} ({case.status}, from {case.source}){why}")
    return "\n".join(lines)


@dataclass
class TestRecord:
    """One run of one test."""

    __test__: ClassVar[bool] = False  # a record, not a pytest test class

    nodeid: str
    name: str
    outcome: Outcome
    start: float
    """Wall-clock seconds (``time.time()``)."""
    stop: float
    iteration: int = 1
    hosts: list[str] = field(default_factory=list)
    longrepr: str = ""
    """The failure or error as pytest reports it; the skip reason when skipped."""
    failures: list[CommandFailure] = field(default_factory=list)
    crash: Crash | None = None
    transcript: str = ""
    """Path of the test's transcript, relative to the run folder."""
    folder: str = ""
    """The test's artifacts folder, relative to the run folder."""
    earlier: list[Attempt] = field(default_factory=list)
    """Earlier tries when the test was rerun, oldest first."""
    worker: str = ""
    """The pytest-xdist worker that ran it (empty without xdist)."""
    kind: Kind = "test"
    """``collection``, ``crashed`` and ``not-run`` records are errors a pass rate never hides."""
    checks: list[FailedCheck] = field(default_factory=list)
    """The non-fatal checks that failed, in the order they failed."""
    metrics: list[Metric] = field(default_factory=list)
    """What the test recorded with ``record_metric``, in order."""
    cases: list[DeviceCase] = field(default_factory=list)
    """The device-side cases published during the test, in order."""

    @property
    def duration(self) -> float:
        return self.stop - self.start

    def to_json(self) -> str:
        # The nested records are flat dataclasses: their __dict__ is what asdict() would
        # give, without its recursive deep copy (most of the cost of writing a record).
        return json.dumps(self.__dict__, ensure_ascii=False, default=_fields)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestRecord:
        crash = data.get("crash")
        return cls(
            **{
                **data,
                "failures": [CommandFailure(**f) for f in data.get("failures", [])],
                "crash": Crash(**crash) if crash else None,
                "earlier": [Attempt(**a) for a in data.get("earlier", [])],
                "checks": [FailedCheck(**c) for c in data.get("checks", [])],
                "metrics": [Metric(**m) for m in data.get("metrics", [])],
                "cases": [DeviceCase(**c) for c in data.get("cases", [])],
            }
        )


def _fields(value: object) -> dict[str, Any]:
    if not is_dataclass(value):
        raise TypeError(f"{type(value).__name__} is not a record")
    return dict(vars(value))


def write_record(path: Path, record: TestRecord) -> None:
    """Append ``record`` to the JSON-lines file ``path`` (one line, one write)."""
    with path.open("a", encoding="utf-8") as f:
        f.write(record.to_json() + "\n")


def read_records(paths: Iterable[Path]) -> Iterator[TestRecord]:
    """Every record in ``paths`` (several files when xdist workers wrote their own)."""
    for path in paths:
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield TestRecord.from_dict(json.loads(line))
