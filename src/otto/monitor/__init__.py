"""Host metrics in rounds: collector, parsers, SQLite store, Prometheus export.

The dashboard lives in ``otto.monitor.web``; it is imported on its own so that
collecting needs no web framework.
"""

from otto.monitor.collector import Collector, HostRound, MonitorTarget
from otto.monitor.logwatch import LogWatch
from otto.monitor.parsers import (
    DEFAULT_PARSERS,
    FREE_PARSERS,
    MetricParser,
    Parsed,
    Sample,
    gauge_parser,
)
from otto.monitor.probe import Probe, RoundCost
from otto.monitor.replay import Replay, list_runs
from otto.monitor.source import DashboardSource
from otto.monitor.store import Event, HostState, MetricStore, Run, StoreError

__all__ = [
    "DEFAULT_PARSERS",
    "FREE_PARSERS",
    "Collector",
    "DashboardSource",
    "Event",
    "HostRound",
    "HostState",
    "LogWatch",
    "MetricParser",
    "MetricStore",
    "MonitorTarget",
    "Parsed",
    "Probe",
    "Replay",
    "RoundCost",
    "Run",
    "Sample",
    "StoreError",
    "gauge_parser",
    "list_runs",
]
