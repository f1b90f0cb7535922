"""What the dashboard shows: the one protocol a live ``Collector``, a ``Replay`` of a
saved file and a ``MemorySource`` all implement, and the snapshot they all build."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Protocol

__all__ = ["DashboardSource", "RunHistory", "build_snapshot", "is_finite_number", "split_finite"]


class DashboardSource(Protocol):
    """A source of rounds and events for the dashboard."""

    def snapshot(self) -> dict[str, object]:
        """Everything known now, in fresh containers the caller may keep.

        ``{"interval": float, "live": bool, "hosts": {name: {"up": bool, "last_error": str}},
        "metrics": [sorted names], "series": {metric: {host: [[t, v], ...]}},
        "events": [{"id", "t", "end", "label", "color", "host"?, "line"?}],
        "run"?: {"id", "label", ...}}``; ``t`` in Unix seconds.
        """
        ...

    def subscribe(self) -> AsyncIterator[dict[str, object]]:
        """Updates from now on, until the source stops.

        Yields ``{"type": "round", "t", "duration", "hosts": {name: {"up", "metrics",
        "last_error"}}}`` and ``{"type": "event", "event": {...}}``. Registers when
        called, not on the first ``__anext__``: the stream takes the snapshot right
        after, and a round in between would be lost.
        """
        ...

    def add_event(
        self, label: str, color: str | None = None, end: float | None = None
    ) -> dict[str, object]:
        """Put an annotation on the timeline now and return it."""
        ...


class RunHistory(Protocol):
    """A source that can show other runs of its database (a ``Collector`` with ``db``,
    a ``Replay``). Both methods block (they read the file): call them in a thread."""

    def runs(self) -> list[dict[str, object]]:
        """Every run (``Run.as_dict``), oldest first; [] when there is no history."""
        ...

    def run_source(self, run: int | str) -> DashboardSource:
        """The source that shows ``run`` (an id or a label).

        Raises:
            StoreError: no such run.
        """
        ...


def build_snapshot(
    *,
    interval: float,
    live: bool,
    hosts: Mapping[str, tuple[bool, str]],
    series: Iterable[tuple[str, str, Sequence[Sequence[float]]]],
    events: Iterable[Mapping[str, object]],
    run: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The snapshot of ``DashboardSource.snapshot`` from a source's parts.

    Args:
        interval: seconds between rounds.
        live: false for a replay.
        hosts: ``{host: (up, last error)}``.
        series: ``(host, metric, points)``; each point a ``(t, v)`` pair that is
            never mutated, so the snapshot shares it instead of copying it.
        events: the events as dicts (copied).
        run: the run shown (``Run.as_dict``), when the source is a run of a database.
    """
    by_metric: dict[str, dict[str, list[Sequence[float]]]] = {}
    for host, metric, points in series:
        by_metric.setdefault(metric, {})[host] = list(points)
    snapshot: dict[str, object] = {
        "interval": interval,
        "live": live,
        "hosts": {name: {"up": up, "last_error": error} for name, (up, error) in hosts.items()},
        "metrics": sorted(by_metric),
        "series": by_metric,
        "events": [dict(event) for event in events],
    }
    if run is not None:
        snapshot["run"] = dict(run)
    return snapshot


def is_finite_number(value: object) -> bool:
    """True for an int or float that is neither NaN nor infinite."""
    return isinstance(value, int | float) and math.isfinite(value)


def split_finite(metrics: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
    """``metrics`` without NaN and infinities (not numbers JSON, SQLite or charts take),
    and the names of the metrics left out."""
    kept: dict[str, float] = {}
    dropped: list[str] = []
    for name, value in metrics.items():
        if is_finite_number(value):
            kept[name] = float(value)
        else:
            dropped.append(name)
    return kept, dropped
