"""Yocto ptest output (``PASS:``/``FAIL:``/``SKIP:`` lines, ptest-runner's blocks) as cases.

A line ``STATUS: name`` is a result; a case's output is the lines since the
previous result, through its own line. Inside ptest-runner's ``BEGIN: <dir>`` ...
``END: <dir>`` block a case is named ``<package>/<name>``. Automake's statuses
count too: ``XFAIL``, ``UNSUPPORTED`` and ``UNTESTED`` are skips, ``XPASS`` a
failure, ``ERROR`` and ``UNRESOLVED`` errors. A block that never reaches its
``END:`` (the runner died), a ``TIMEOUT:`` line, ptest-runner's
``ERROR: Exit status is N`` with no failed case, or an output with no result at
all is an ``error`` case: never a pass.
"""

from __future__ import annotations

from otto.results.model import (
    SUITE,
    Case,
    CaseStatus,
    cap_output,
    make_case,
    no_cases,
    slice_lines,
)

_STATUS: dict[str, CaseStatus] = {
    "PASS": "passed",
    "FAIL": "failed",
    "SKIP": "skipped",
    "XFAIL": "skipped",
    "XPASS": "failed",
    "UNSUPPORTED": "skipped",
    "UNTESTED": "skipped",
    "UNRESOLVED": "error",
    "ERROR": "error",
}
_MESSAGE = {
    "XFAIL": "XFAIL (expected failure)",
    "XPASS": "XPASS (passed, but expected to fail)",
    "UNSUPPORTED": "UNSUPPORTED",
    "UNTESTED": "UNTESTED",
    "UNRESOLVED": "UNRESOLVED",
}
#: Longer than any status word: a line whose first colon is further in is output.
_MAX_WORD = 12


def _package(directory: str) -> str:
    """``/usr/lib/openssl/ptest`` -> ``openssl``."""
    parts = [p for p in directory.strip().split("/") if p]
    if len(parts) >= 2 and parts[-1] == "ptest":
        return parts[-2]
    return parts[-1] if parts else directory.strip()


def parse_ptest(text: str) -> list[Case]:
    """Parse ptest output into cases (see the module's docstring for the rules)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    cases: list[Case] = []
    start = 0
    package = ""  # the open BEGIN block's package, "" outside one
    block_start = 0
    block_failed = False
    block_error = ""
    for index, line in enumerate(lines):
        colon = line.find(":", 0, _MAX_WORD)
        if colon <= 0:
            continue
        word = line[:colon]
        status = _STATUS.get(word)
        rest = line[colon + 1 :].strip()
        if status is not None:
            if word == "ERROR" and package and rest.startswith("Exit"):
                block_error = rest  # ptest-runner's "ERROR: Exit status is 1"
                continue
            if not rest:
                continue
            name = f"{package}/{rest}" if package else rest
            message = _MESSAGE.get(word, "" if status == "passed" else word)
            cases.append(make_case(name, status, slice_lines(lines, start, index + 1), message))
            start = index + 1
            if status in ("failed", "error"):
                block_failed = True
        elif word == "BEGIN":
            if package:
                cases.append(_unfinished(package, lines, block_start, index))
            package = _package(rest)
            block_start = start = index
            block_failed = False
            block_error = ""
        elif word == "TIMEOUT" and package:
            message = f"{package}: ptest-runner stopped it: it ran past its timeout"
            cases.append(
                make_case(f"{package}/{SUITE}", "error", _tail(lines, start, index), message)
            )
            start = index + 1
            block_failed = True
        elif word == "END" and package:
            if block_error and not block_failed:
                message = f"{package}: {block_error}, but no case failed"
                output = _tail(lines, start, index)
                cases.append(make_case(f"{package}/{SUITE}", "error", output, message))
            package = ""
            start = index + 1
    if package:
        cases.append(_unfinished(package, lines, block_start, len(lines)))
    if not cases:
        return [no_cases("PASS:/FAIL:/SKIP: lines")]
    return cases


def _tail(lines: list[str], start: int, index: int) -> str:
    return slice_lines(lines, start, index + 1)


def _unfinished(package: str, lines: list[str], start: int, stop: int) -> Case:
    message = f"{package}: its BEGIN: block never reached END: (the run stopped in it)"
    output = cap_output("\n".join(lines[max(start, stop - 200) : stop]))
    return make_case(f"{package}/{SUITE}", "error", output, message)
