"""Unity (ThrowTheSwitch) test output as cases.

Unity prints ``file:line:name:PASS``, ``file:line:name:FAIL: message`` and
``file:line:name:IGNORE[: message]`` per test, then a summary::

    -----------------------
    3 Tests 1 Failures 1 Ignored
    FAIL

A case's output is the lines since the previous result, through its own line.
A run with no summary line (the program crashed or was cut off), a summary that
counts more tests than were printed, or an output with no result at all is an
``error`` case: never a pass. Several runs in one output (several test
programs) are each checked against their own summary.
"""

from __future__ import annotations

from otto.results.model import (
    SUITE,
    Case,
    CaseStatus,
    make_case,
    no_cases,
    slice_lines,
)

_MARKERS: tuple[tuple[str, CaseStatus], ...] = (
    (":PASS", "passed"),
    (":FAIL", "failed"),
    (":IGNORE", "skipped"),
)


def _result(line: str) -> tuple[str, CaseStatus, str] | None:
    """``(name, status, message)`` of a Unity result line, or None for any other line."""
    best: tuple[int, str, CaseStatus] | None = None
    for marker, status in _MARKERS:
        at = line.find(marker)
        while at >= 0:
            end = at + len(marker)
            if end == len(line) or line[end] == ":":
                break
            at = line.find(marker, end)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, marker, status)
    if best is None:
        return None
    at, marker, status = best
    head = line[:at].rsplit(":", 2)
    if len(head) != 3 or not head[1].isdigit() or not head[2] or not head[0]:
        return None
    message = line[at + len(marker) + 1 :].strip()
    if status == "failed" and not message:
        message = "FAIL"
    elif status == "skipped":
        message = f"IGNORE: {message}" if message else "IGNORE"
    return head[2], status, message


def _summary(line: str) -> tuple[int, int, int] | None:
    """``(tests, failures, ignored)`` of a summary line, or None."""
    if "Tests" not in line:
        return None
    words = line.split(None, 6)
    if (
        len(words) >= 6
        and words[1] == "Tests"
        and words[3] in ("Failures", "Failure")
        and words[5] == "Ignored"
        and words[0].isdigit()
        and words[2].isdigit()
        and words[4].isdigit()
    ):
        return int(words[0]), int(words[2]), int(words[4])
    return None


def parse_unity(text: str) -> list[Case]:
    """Parse Unity output into cases (see the module's docstring for the rules)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    cases: list[Case] = []
    start = 0
    run_start = 0  # the first line of the current run
    in_run = 0  # results printed since the last summary
    for index, line in enumerate(lines):
        if ":" in line:
            found = _result(line)
            if found is not None:
                name, status, message = found
                cases.append(make_case(name, status, slice_lines(lines, start, index + 1), message))
                start = index + 1
                in_run += 1
                continue
        counts = _summary(line)
        if counts is None:
            continue
        tests = counts[0]
        if tests > in_run:
            message = f"the summary counts {tests} tests, the output shows {in_run}"
            output = slice_lines(lines, run_start, index + 2)
            cases.append(make_case(SUITE, "error", output, message))
        start = run_start = index + 2 if index + 1 < len(lines) else index + 1
        in_run = 0
    if in_run or (not cases and start < len(lines)):
        message = (
            f"no summary line (N Tests M Failures K Ignored) after {in_run} result"
            f"{'s' if in_run != 1 else ''}: the program crashed or its output was cut off"
        )
        cases.append(make_case(SUITE, "error", slice_lines(lines, start, len(lines)), message))
    if not cases:
        return [no_cases("Unity results")]
    return cases
