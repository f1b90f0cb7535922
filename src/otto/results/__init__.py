"""Device-side test output (TAP, ptest, Unity, JUnit XML) as test cases.

``await results.collect(host, command, format=...)`` runs a suite on a host and
returns its cases, each with its own slice of the output; ``results.parse(text,
format=...)`` reads output you already have. The test plugin receives collected
cases through ``set_sink`` and makes each one a JUnit test case.
"""

from __future__ import annotations

from otto.results.collect import Format, ResultsFailed, collect, failed, parse
from otto.results.model import MAX_CASE_OUTPUT, SUITE, Case, CaseStatus
from otto.results.sink import CaseSink, publish, set_sink

__all__ = [
    "MAX_CASE_OUTPUT",
    "SUITE",
    "Case",
    "CaseSink",
    "CaseStatus",
    "Format",
    "ResultsFailed",
    "collect",
    "failed",
    "parse",
    "publish",
    "set_sink",
]
