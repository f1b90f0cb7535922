"""The test case record every result format is parsed into."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CaseStatus = Literal["passed", "failed", "skipped", "error"]

#: The largest output slice kept per case; the rest is cut with a note saying how much.
MAX_CASE_OUTPUT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Case:
    """One test case reported by a suite run on a device.

    Attributes:
        name: The case's name as the suite reported it (nested names joined by ``/``).
        status: ``passed``, ``failed``, ``skipped`` or ``error`` (crashed, missing, malformed).
        output: The case's own slice of the suite's output, at most ``MAX_CASE_OUTPUT``.
        message: Why it failed, was skipped or is an error; empty for a pass.
        duration: Seconds the suite reported for the case, when it reports one.
    """

    name: str
    status: CaseStatus
    output: str
    message: str = ""
    duration: float | None = None


def cap_output(text: str, limit: int = MAX_CASE_OUTPUT) -> str:
    """Return ``text`` cut to ``limit`` characters, noting how many were cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"{text[:limit]}\n[otto: {cut} more characters of this case's output were cut]"
