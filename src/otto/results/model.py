"""The test case record every result format is parsed into, and the helpers the parsers share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from otto.redact import redact

CaseStatus = Literal["passed", "failed", "skipped", "error"]

#: The most output kept per case; the middle of a longer slice is cut, with a note.
MAX_CASE_OUTPUT = 64 * 1024
_HEAD = 16 * 1024

#: The name of a case that stands for the whole suite (it crashed, bailed out, was cut off).
SUITE = "(suite)"


@dataclass(frozen=True, slots=True, repr=False)
class Case:
    """One test case reported by a suite run on a device.

    Attributes:
        name: The case's name as the suite reported it (a nested case is ``parent/child``).
        status: ``passed``, ``failed``, ``skipped``, or ``error`` (crashed, never reported,
            malformed).
        output: The case's own slice of the suite's output, at most about ``MAX_CASE_OUTPUT``
            characters (the middle of a longer slice is cut, with a note saying how much).
        message: Why it failed, was skipped or is an error; empty for a plain pass.
        duration: Seconds the suite reported for the case, when it reports them.
    """

    name: str
    status: CaseStatus
    output: str
    message: str = ""
    duration: float | None = None

    def __repr__(self) -> str:
        # What a device printed may hold a registered secret: a repr is shown in tracebacks.
        return (
            f"Case(name={redact(self.name)!r}, status={self.status!r}, "
            f"output={redact(self.output)!r}, message={redact(self.message)!r}, "
            f"duration={self.duration!r})"
        )

    @property
    def ok(self) -> bool:
        """True unless the case failed or is an error (a skip is not a failure)."""
        return self.status in ("passed", "skipped")


#: The slot setters of ``Case``'s fields, in order: a parser's hot loop builds cases with them.
CASE_SETTERS = tuple(
    getattr(Case, field).__set__ for field in ("name", "status", "output", "message", "duration")
)
_new_case = object.__new__
_set_name, _set_status, _set_output, _set_message, _set_duration = CASE_SETTERS


def make_case(
    name: str, status: CaseStatus, output: str, message: str = "", duration: float | None = None
) -> Case:
    """Build a ``Case`` without the frozen dataclass's ``__init__`` (a parser makes 100,000s)."""
    case = _new_case(Case)
    _set_name(case, name)
    _set_status(case, status)
    _set_output(case, output)
    _set_message(case, message)
    _set_duration(case, duration)
    return case


def cap_output(text: str, limit: int = MAX_CASE_OUTPUT) -> str:
    """Return ``text``, its middle cut when it is longer than ``limit`` characters."""
    if len(text) <= limit:
        return text
    head = min(_HEAD, limit // 4)
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[otto: {cut} characters of this case's output cut]\n{text[-tail:]}"


def slice_lines(lines: Sequence[str], start: int, stop: int, limit: int = MAX_CASE_OUTPUT) -> str:
    """Join ``lines[start:stop]`` with newlines, capped as ``cap_output`` caps.

    Only the lines that are kept are joined, so a case whose output runs to
    gigabytes costs ``limit`` characters, not a copy of all of it.
    """
    if stop - start == 1:
        line = lines[start]
        return line if len(line) <= limit else cap_output(line, limit)
    if stop <= start:
        return ""
    size = stop - start - 1
    for index in range(start, stop):
        size += len(lines[index])
        if size > limit:
            break
    else:
        return "\n".join(lines[start:stop])
    head_want = min(_HEAD, limit // 4)
    head: list[str] = []
    got = 0
    index = start
    while index < stop and got < head_want:
        head.append(lines[index])
        got += len(lines[index]) + 1
        index += 1
    tail: list[str] = []
    got_tail = 0
    back = stop - 1
    tail_want = limit - head_want
    while back >= index and got_tail < tail_want:
        tail.append(lines[back])
        got_tail += len(lines[back]) + 1
        back -= 1
    tail.reverse()
    head_text = "\n".join(head)[:head_want]
    tail_text = "\n".join(tail)
    tail_text = tail_text[-tail_want:] if len(tail_text) > tail_want else tail_text
    total = sum(len(lines[i]) for i in range(start, stop)) + stop - start - 1
    cut = total - len(head_text) - len(tail_text)
    return f"{head_text}\n[otto: {cut} characters of this case's output cut]\n{tail_text}"


def suite_error(message: str, output: str = "", name: str = SUITE) -> Case:
    """An ``error`` case standing for the whole suite (or a named part of it)."""
    return make_case(name, "error", cap_output(output), message)


def no_cases(what: str) -> Case:
    """The error case of an output that holds no result at all."""
    return suite_error(f"no {what} in the output: the suite did not run, or printed something else")
