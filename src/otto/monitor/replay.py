"""A saved monitor run (from a JSON export or a collector's SQLite file) as a dashboard source.

A file holds one run or several: ``Replay.from_file(path, run=...)`` picks one by
id or label (the latest by default), ``list_runs(path)`` lists them, and a
``Replay`` switches the dashboard to another run of its file (``run_source``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from otto.monitor.outages import OutageTracker
from otto.monitor.source import DashboardSource, build_snapshot, is_finite_number
from otto.monitor.store import (
    Event,
    HostState,
    MetricStore,
    Run,
    export_run_list,
    load_export,
    outages_of_export,
    pick_export_run,
    run_from_export,
)
from otto.monitor.subscription import Subscribers

__all__ = ["Replay", "is_sqlite", "list_runs"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


def is_sqlite(path: str | PathLike[str]) -> bool:
    """True for a SQLite file (a metric database), false for anything else (JSON)."""
    with open(path, "rb") as f:
        return f.read(16) == _SQLITE_MAGIC


def list_runs(path: str | PathLike[str]) -> list[Run]:
    """The runs of a metric database or a JSON export, oldest first.

    Raises:
        ValueError: the file is neither.
        StoreError: a SQLite file that is not an otto metric database.
        OSError: the file cannot be read.
    """
    if is_sqlite(path):
        with MetricStore(path) as store:
            return store.runs()
    return export_run_list(load_export(path))


class Replay:
    """One saved run (of a JSON export or a SQLite store) as a dashboard source.

    It is not live: ``subscribe`` ends at once. ``add_event`` adds to memory only.
    Points that are not finite numbers (from files written by older versions)
    are left out.

    Args:
        export: an export (``MetricStore.export``, ``Collector.export``), of
            version 1 or 2.
        run: the run to show, by id or label; the latest run by default.

    Raises:
        ValueError: not an export.
        StoreError: no such run in it.
    """

    def __init__(self, export: Mapping[str, object], *, run: int | str | None = None) -> None:
        doc = load_export(export)
        entry = pick_export_run(doc, run, "the export")
        self._doc: dict[str, Any] | None = doc
        self._path: Path | None = None
        self._load(entry)

    def _load(self, entry: Mapping[str, Any]) -> None:
        try:
            self._read(entry)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ValueError(
                f"run {entry.get('id', '?')} is malformed ({type(exc).__name__}: {exc})"
            ) from None

    def _read(self, entry: Mapping[str, Any]) -> None:
        self._run = run_from_export(entry)
        self._interval = self._run.interval if self._run.interval is not None else 5.0
        self._samples: dict[str, dict[str, list[tuple[float, float]]]] = {
            host: {
                metric: [(t, v) for t, v in points if is_finite_number(v)]
                for metric, points in metrics.items()
            }
            for host, metrics in entry.get("samples", {}).items()
        }
        self._status: dict[str, list[list[Any]]] = entry.get("status", {})
        self._hosts: list[str] = list(entry.get("hosts", []))
        self._rounds: list[list[float]] = entry.get("rounds", [])
        self._events = [Event.from_dict(e) for e in entry.get("events", [])]
        self._outages = OutageTracker.from_outages(outages_of_export(entry))
        self._subscribers = Subscribers()
        self._subscribers.stop()

    @classmethod
    def from_file(cls, path: str | PathLike[str], *, run: int | str | None = None) -> Replay:
        """Read a run of a JSON export, or of a SQLite file written by a ``Collector``.

        Args:
            path: the file.
            run: the run's id or label; the latest run by default.

        Raises:
            ValueError: the file is neither.
            StoreError: a SQLite file that is not an otto metric database, or no
                such run.
        """
        if is_sqlite(path):
            with MetricStore(path) as store:
                entry = store.run_export(store.find_run(run).id)
            replay = cls.__new__(cls)
            replay._doc = None
            replay._path = Path(path)
            replay._load(entry)
            return replay
        replay = cls(load_export(path), run=run)
        replay._path = Path(path)
        return replay

    @property
    def interval(self) -> float:
        """The recorded run's interval."""
        return self._interval

    @property
    def run(self) -> Run:
        """The run shown."""
        return self._run

    def runs(self) -> list[dict[str, object]]:
        """Every run of the file (or export) this run comes from, oldest first."""
        if self._doc is not None:
            return [r.as_dict() for r in export_run_list(self._doc)]
        assert self._path is not None
        return [r.as_dict() for r in list_runs(self._path)]

    def run_source(self, run: int | str) -> DashboardSource:
        """Another run of the same file (or this replay for its own run)."""
        if str(run) == str(self._run.id):
            return self
        if self._doc is not None:
            other = Replay(self._doc, run=run)
            other._path = self._path
            return other
        assert self._path is not None
        return Replay.from_file(self._path, run=run)

    def host_states(self) -> dict[str, HostState]:
        """Each host's state in the last recorded round it was polled in."""
        states: dict[str, HostState] = {}
        for name in self._hosts:
            rows = self._status.get(name)
            if rows:
                _, up, error = rows[-1]
                states[name] = HostState(bool(up), str(error))
            else:
                states[name] = HostState(bool(self._samples.get(name)), "")
        return states

    def latest_values(self) -> dict[str, dict[str, float]]:
        """``{host: metrics}`` at each host's last recorded point (hosts up at the end)."""
        up = self.host_states()
        return {
            host: {metric: points[-1][1] for metric, points in metrics.items() if points}
            for host, metrics in self._samples.items()
            if up.get(host, HostState(True)).up
        }

    @property
    def last_round_duration(self) -> float | None:
        """The recorded run's last round duration."""
        return float(self._rounds[-1][1]) if self._rounds else None

    def events(self) -> list[dict[str, object]]:
        """The run's events, as the dashboard lists them."""
        return [e.as_dict() for e in self._events]

    @property
    def end_time(self) -> float:
        """Where the run stops: its end, else its last round (open outages last until it)."""
        times = [self._run.ended, self._run.last, self._outages.latest]
        return max((t for t in times if t is not None), default=self._run.started)

    def outage_tracker(self) -> OutageTracker:
        """The run's outages (stored with it, or derived from its host states)."""
        return self._outages

    def down_seconds(self) -> dict[str, float]:
        """``{host: seconds down}`` over the run, an outage open at its end up to ``end_time``."""
        totals = dict.fromkeys(self._hosts, 0.0)
        totals.update(self._outages.down_seconds(self.end_time))
        return totals

    def snapshot(self) -> dict[str, object]:
        """The whole recorded run (see ``DashboardSource.snapshot``), with its
        ``outages`` and the ``now`` they are measured to (the run's end)."""
        snapshot = build_snapshot(
            interval=self._interval,
            live=False,
            hosts={name: (s.up, s.error) for name, s in self.host_states().items()},
            series=(
                (host, metric, points)
                for host, metrics in self._samples.items()
                for metric, points in metrics.items()
            ),
            events=(e.as_dict() for e in self._events),
            run=self._run.as_dict(),
        )
        snapshot["outages"] = [o.as_dict() for o in self._outages.outages()]
        snapshot["now"] = self.end_time
        return snapshot

    def subscribe(self) -> AsyncIterator[dict[str, object]]:
        """Nothing happens in a replay: the stream ends at once."""
        return self._subscribers.subscribe()

    def add_event(
        self, label: str, color: str | None = None, end: float | None = None
    ) -> dict[str, object]:
        """Add an annotation to the replay (in memory; the file is not changed)."""
        next_id = max((e.id for e in self._events), default=0) + 1
        event = Event(next_id, time.time(), label, color, end)
        self._events.append(event)
        return event.as_dict()
