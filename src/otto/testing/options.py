"""The options of otto's pytest plugin (``--lab``, ``--otto``, ``--otto-NAME`` and, where
no other plugin took it, ``--NAME``)."""

from __future__ import annotations

import argparse
from collections.abc import Generator
from typing import Any

import pytest

from otto.testing.hostlock import wait_hosts_option
from otto.testing.panics import SIGNATURES
from otto.testing.shard import parse_run_dir, parse_shard
from otto.testing.transcript import DEFAULT_LIMIT

__all__ = ["MONITOR_INTERVAL", "pytest_addoption", "pytest_load_initial_conftests"]

MONITOR_INTERVAL = 1.0
"""Seconds between the run-wide monitor's rounds: a run of a few seconds has its charts."""

# (short name, argparse keywords); each is also --otto-<name>.
_OPTIONS: list[tuple[str, dict[str, Any]]] = []


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100, got {text}")
    return value


def _tolerance(text: str) -> str:
    from otto.testing.baseline import parse_tolerance

    try:
        parse_tolerance([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


_OPTIONS = [
    (
        "iterations",
        dict(
            type=_positive_int,
            metavar="N",
            help="run each test N times (stability mode; each run is a record of its own)",
        ),
    ),
    (
        "duration",
        dict(
            type=_positive_float,
            metavar="S",
            help="repeat each test until S seconds have passed since it first started "
            "(with --iterations: whichever ends first)",
        ),
    ),
    (
        "threshold",
        dict(
            type=_percent,
            metavar="PCT",
            help="minimum pass rate of each test, 0-100; the run fails below it "
            "(and passes at or above it, even with some failed runs)",
        ),
    ),
    (
        "monitor",
        dict(
            action="store_true",
            default=False,
            help="sample the lab's hosts for the whole run into monitor.db, "
            "an event at each test's start and end",
        ),
    ),
    (
        "monitor-interval",
        dict(
            type=_positive_float,
            default=MONITOR_INTERVAL,
            metavar="S",
            help=f"seconds between the --monitor's rounds (default {MONITOR_INTERVAL:g})",
        ),
    ),
    (
        "output",
        dict(metavar="DIR", help="the run folder (default: otto-runs/<UTC time>/)"),
    ),
    (
        "junit",
        dict(metavar="FILE", help="the JUnit XML file (default: junit.xml in the run folder)"),
    ),
    (
        "transcript-limit",
        dict(
            type=_positive_int,
            default=DEFAULT_LIMIT,
            metavar="BYTES",
            help=f"bytes one transcript keeps (default {DEFAULT_LIMIT}); the rest is counted",
        ),
    ),
    (
        "crash-pattern",
        dict(
            action="append",
            default=[],
            metavar="REGEX",
            help="a console line that means the device crashed (repeatable; default: "
            + ", ".join(repr(p) for p in SIGNATURES)
            + ")",
        ),
    ),
    (
        "metrics-out",
        dict(
            metavar="FILE",
            help="write the metrics tests recorded (record_metric) to FILE as Prometheus "
            "text exposition",
        ),
    ),
    (
        "baseline",
        dict(
            metavar="RUN_DIR",
            help="compare the metrics tests record with those of an earlier run folder; "
            "one that got worse beyond --tolerance fails the run",
        ),
    ),
    (
        "tolerance",
        dict(
            action="append",
            default=[],
            type=_tolerance,
            metavar="[NAME=]PCT",
            help="how far a metric may get worse than its --baseline, in percent "
            "(default 10%%); NAME=PCT for one metric (repeatable)",
        ),
    ),
    (
        "strict-lab",
        dict(
            action="store_true",
            default=False,
            help="a test that needs features no lab host has is an error, not skipped",
        ),
    ),
    (
        "shard",
        dict(
            type=parse_shard,
            metavar="I/N",
            help="run share I (1..N) of the collected tests, the others deselected; "
            "the N shares hold every test exactly once",
        ),
    ),
    (
        "shard-durations",
        dict(
            type=parse_run_dir,
            metavar="RUN_DIR",
            help="balance --shard by the test durations recorded in this earlier run folder "
            "(default: --baseline's, when given)",
        ),
    ),
    (
        "wait-hosts",
        dict(
            type=wait_hosts_option,
            metavar="DURATION",
            help="otto test: wait up to DURATION (90s, 10m) in the reservation queue for "
            "hosts someone else holds, instead of stopping with exit status 3",
        ),
    ),
]


def _dest(name: str) -> str:
    return "otto_" + name.replace("-", "_")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("otto", "otto: lab hosts, transcripts, stability runs")
    group.addoption(
        "--lab",
        action="append",
        dest="otto_lab",
        default=[],
        metavar="FILE",
        help="otto lab file (repeatable, merged in order; default $OTTO_LAB; "
        "without one the lab is the one host 'local')",
    )
    group.addoption(
        "--otto",
        action="store_true",
        dest="otto_run",
        default=False,
        help="record this run (run folder, transcripts, report) even without a lab",
    )
    for name, kwargs in _OPTIONS:
        group.addoption(f"--otto-{name}", dest=_dest(name), **kwargs)


def _taken_options(parser: pytest.Parser) -> set[str]:
    names: set[str] = set()
    for group in [parser._anonymous, *parser._groups]:
        for option in group.options:
            names.update(option.names())
    return names


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, None, None]:
    # Every plugin and the initial conftests have added their options by now:
    # only then is it known which short names are free.
    result = yield
    taken = _taken_options(parser)
    group = parser.getgroup("otto")
    for name, kwargs in _OPTIONS:
        if f"--{name}" not in taken:
            short = {k: v for k, v in kwargs.items() if k != "default"}
            short["help"] = f"same as --otto-{name}"
            group.addoption(f"--{name}", dest=_dest(name), **short)
    return result
