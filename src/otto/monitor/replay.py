"""A saved monitor run (a JSON export or a collector's SQLite file) as a dashboard source."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from os import PathLike
from typing import Any

from otto.monitor.source import build_snapshot, is_finite_number
from otto.monitor.store import Event, HostState, MetricStore, load_export
from otto.monitor.subscription import Subscribers

__all__ = ["Replay"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


class Replay:
    """A saved monitor run (JSON export or SQLite store) as a dashboard source.

    It is not live: ``subscribe`` ends at once. ``add_event`` adds to memory only.
    Points that are not finite numbers (from files written by older versions)
    are left out.
    """

    def __init__(self, export: Mapping[str, object]) -> None:
        doc = load_export(export)
        meta = doc.get("meta", {})
        self._interval = float(meta.get("interval", "5.0")) if isinstance(meta, dict) else 5.0
        self._samples: dict[str, dict[str, list[tuple[float, float]]]] = {
            host: {
                metric: [(t, v) for t, v in points if is_finite_number(v)]
                for metric, points in metrics.items()
            }
            for host, metrics in doc.get("samples", {}).items()
        }
        self._status: dict[str, list[list[Any]]] = doc.get("status", {})
        self._hosts: list[str] = list(doc.get("hosts", []))
        self._rounds: list[list[float]] = doc.get("rounds", [])
        self._events = [
            Event(e["id"], e["t"], e["label"], e.get("color"), e.get("end"))
            for e in doc.get("events", [])
        ]
        self._subscribers = Subscribers()
        self._subscribers.stop()

    @classmethod
    def from_file(cls, path: str | PathLike[str]) -> Replay:
        """Read a JSON export, or a SQLite file written by a ``Collector``.

        Raises:
            ValueError: the file is neither.
            StoreError: a SQLite file that is not an otto metric database.
        """
        with open(path, "rb") as f:
            head = f.read(16)
        if head == _SQLITE_MAGIC:
            with MetricStore(path) as store:
                return cls(store.export())
        return cls(load_export(path))

    @property
    def interval(self) -> float:
        """The recorded run's interval."""
        return self._interval

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

    def snapshot(self) -> dict[str, object]:
        """The whole recorded run (see ``DashboardSource.snapshot``)."""
        return build_snapshot(
            interval=self._interval,
            live=False,
            hosts={name: (s.up, s.error) for name, s in self.host_states().items()},
            series=(
                (host, metric, points)
                for host, metrics in self._samples.items()
                for metric, points in metrics.items()
            ),
            events=(e.as_dict() for e in self._events),
        )

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
