"""Device-side test output (TAP, ptest, Unity, JUnit XML) as test cases."""

from __future__ import annotations

from otto.results.model import MAX_CASE_OUTPUT, Case, CaseStatus
from otto.results.sink import CaseSink, publish, set_sink

__all__ = [
    "MAX_CASE_OUTPUT",
    "Case",
    "CaseSink",
    "CaseStatus",
    "publish",
    "set_sink",
]
