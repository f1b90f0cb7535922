"""The verdict of a run: one rule gives both the exit status and the report's headline.

It is fed by every record of the run: the tests' own, and those the plugin
writes for what produced no test record (a module that could not be collected,
a test whose pytest-xdist worker died, a test never run because of that), and
by pytest's own exit status. It is never better than the truth:

- a user's interruption (Ctrl-C) is ``interrupted``, exit 2 (pytest's), which
  ``otto test`` shows as 130; pytest's 2 for collection errors is not one;
- collection errors, crashed and never-run tests, and a run pytest stopped
  before its end (``pytest.exit``), fail the run, ``--threshold`` or not;
- with ``--threshold``, the run passes when each test that ran passed at least
  that share of its runs, and at least one run counted (a run of skips
  measured nothing);
- without it, any failed or error run fails the run, as pytest's own status does;
- with a baseline (``--baseline``), a metric that moved the worse way beyond its
  tolerance fails the run, whatever the tests' outcomes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from otto.testing.baseline import Comparison, Tolerance, compare
from otto.testing.records import TestRecord

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NO_TESTS",
    "EXIT_OK",
    "Headline",
    "Verdict",
    "judge",
    "pass_rates",
    "regression_line",
    "user_interrupt",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 2
EXIT_NO_TESTS = 5
_JUDGED = {EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NO_TESTS}
"""pytest's statuses the records can judge; others (usage error, internal error,
``pytest.exit(returncode=...)``) are kept as they are."""

Headline = Literal["passed", "failed", "interrupted", "no tests"]


@dataclass(frozen=True)
class Verdict:
    """What the run came to."""

    headline: Headline
    exit_status: int
    reasons: list[str] = field(default_factory=list)
    """Why it failed, one line each (collection errors, crashes, tests below the threshold)."""
    below: list[str] = field(default_factory=list)
    """Node ids of the tests whose pass rate is below the threshold."""
    metrics: list[Comparison] = field(default_factory=list)
    """Each metric against the baseline (empty without one)."""

    @property
    def passed(self) -> bool:
        return self.headline == "passed"


def pass_rates(records: Iterable[TestRecord]) -> dict[str, tuple[float | None, int, int]]:
    """Each test's ``(pass rate in percent or None when every run skipped, passed, counted)``,
    over its test records, in the order tests first ran."""
    runs: dict[str, Counter[str]] = {}
    for record in sorted(records, key=lambda r: (r.start, r.iteration)):
        if record.kind == "test":
            runs.setdefault(record.nodeid, Counter())[record.outcome] += 1
    rates: dict[str, tuple[float | None, int, int]] = {}
    for nodeid, counts in runs.items():
        counted = sum(counts.values()) - counts["skipped"]
        rate = 100.0 * counts["passed"] / counted if counted else None
        rates[nodeid] = (rate, counts["passed"], counted)
    return rates


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _number(value: float | None, unit: str | None) -> str:
    return "-" if value is None else f"{value:g}" + (f" {unit}" if unit else "")


def regression_line(c: Comparison) -> str:
    """One line saying how a metric regressed against its baseline."""
    change = f"{c.change:+.1f}%" if c.change is not None else "from 0"
    return (
        f"{c.label}: {_number(c.baseline, c.unit)} -> {_number(c.now, c.unit)} ({change}, "
        f"{c.better} is better, tolerance {c.tolerance:g}%)"
    )


def judge(
    records: Iterable[TestRecord],
    *,
    threshold: float | None = None,
    interrupted: bool = False,
    pytest_status: int | None = None,
    baseline: Sequence[TestRecord] | None = None,
    tolerance: Tolerance | None = None,
) -> Verdict:
    """The verdict of a run.

    Args:
        records: every record of the run (tests, collection errors, crashes).
        threshold: ``--threshold``, the minimum pass rate per test in percent.
        interrupted: the user stopped the run (Ctrl-C, SIGTERM).
        pytest_status: pytest's exit status, when pytest ran to its end; None
            when only the records are known (a report written afterwards).
        baseline: the records of an earlier run (``--baseline``): each metric is
            compared with its value there.
        tolerance: how far a metric may move the worse way (default 10%).
    """
    records = list(records)
    reasons: list[str] = []
    metrics: list[Comparison] = []
    if baseline is not None:
        metrics = compare(records, baseline, tolerance or Tolerance())
    for kind, what in (
        ("collection", "collection error"),
        ("crashed", "test whose worker crashed"),
        ("not-run", "test never run (its worker crashed)"),
    ):
        found = [r.nodeid for r in records if r.kind == kind]
        if found:
            reasons.append(f"{_plural(len(found), what)}: {', '.join(found)}")
    if interrupted:
        return Verdict("interrupted", EXIT_INTERRUPTED, ["interrupted (Ctrl-C)", *reasons])
    if pytest_status is not None and pytest_status not in _JUDGED:
        return Verdict("failed", pytest_status, [f"pytest exited {pytest_status}", *reasons])
    if pytest_status == EXIT_INTERRUPTED and not reasons:
        # pytest.exit(), or pytest-xdist stopping at --maxfail: not every test had its run.
        reasons.append("pytest stopped the run before its end")
    tests = [r for r in records if r.kind == "test"]
    below: list[str] = []
    if threshold is not None:
        rates = pass_rates(tests)
        below = [n for n, (rate, _, _) in rates.items() if rate is not None and rate < threshold]
        if below:
            reasons.append(
                f"{_plural(len(below), 'test')} below the {threshold:g}% threshold: "
                + ", ".join(below)
            )
        if tests and not any(counted for _, _, counted in rates.values()):
            reasons.append(f"no test ran to measure against the {threshold:g}% threshold")
    else:
        counts: Counter[str] = Counter(r.outcome for r in tests)
        if counts["failed"] or counts["error"]:
            reasons.append(
                ", ".join(
                    _plural(counts[o], w)
                    for o, w in (("failed", "failed run"), ("error", "error"))
                    if counts[o]
                )
            )
        elif pytest_status == EXIT_FAILED and not reasons:
            reasons.append("pytest reported a failure")
    regressed = [c for c in metrics if c.verdict == "regressed"]
    if regressed:
        reasons.append(
            f"{_plural(len(regressed), 'metric')} regressed beyond tolerance: "
            + "; ".join(regression_line(c) for c in regressed)
        )
    if reasons:
        return Verdict("failed", EXIT_FAILED, reasons, below, metrics)
    if not tests and pytest_status in (None, EXIT_NO_TESTS):
        return Verdict("no tests", EXIT_NO_TESTS, ["no test ran"], metrics=metrics)
    return Verdict("passed", EXIT_OK, [], below, metrics)


def user_interrupt(error: BaseException) -> bool:
    """Whether ``error``, what pytest's ``pytest_keyboard_interrupt`` hook got, is the user
    stopping the run (Ctrl-C, SIGTERM), not pytest stopping itself after collection errors
    or ``--maxfail`` (its ``Session.Interrupted``, a ``KeyboardInterrupt`` too)."""
    import pytest

    return isinstance(error, KeyboardInterrupt) and not isinstance(
        error, (pytest.Session.Interrupted, pytest.Session.Failed)
    )
