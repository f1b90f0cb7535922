"""Outages: the periods a host did not answer, derived from its per-round states.

An outage is a maximal run of rounds in which a host was down (``HostState.up``
false). It starts at the time of its first down round and ends at the time of
the first round after it in which the host was up again; it is *open* (its
``end`` is None) while the host is still down. Rounds in which a host was not
polled at all, and gaps in which no round ran, neither start nor end an
outage: a host down before a gap and down after it had one outage across it.

``OutageTracker`` derives outages incrementally, one state at a time (a round
costs one dict lookup per host), keeping each host's total down seconds so that
``down_seconds`` never rescans the outages. The store keeps one for the run it
writes, the dashboard one per source, and ``derive_outages`` is the same rule
over a whole history at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

__all__ = [
    "MAX_KEPT",
    "LiveOutages",
    "Outage",
    "OutageTracker",
    "OutageView",
    "derive_outages",
]

logger = logging.getLogger("otto.monitor")

MAX_KEPT = 1_000
"""Ended outages an ``OutageTracker`` keeps per host by default (the totals count
every one): a host flapping for days costs no more than this."""


@dataclass(frozen=True, slots=True)
class Outage:
    """A period in which ``host`` did not answer; times are Unix seconds.

    Attributes:
        host: the host's name.
        start: the time of its first down round.
        end: the time of the first round it answered again; None while it is down.
        error: why it was down in its first down round.
    """

    host: str
    start: float
    end: float | None = None
    error: str = ""

    @property
    def open(self) -> bool:
        """True while the host is still down."""
        return self.end is None

    def seconds(self, now: float) -> float:
        """How long it lasted; an open outage lasts until ``now``."""
        end = self.end if self.end is not None else now
        return max(0.0, end - self.start)

    def overlap(self, since: float, until: float) -> float:
        """Seconds of it within ``[since, until]`` (an open one reaches ``until``)."""
        end = self.end if self.end is not None else until
        return max(0.0, min(end, until) - max(self.start, since))

    def as_dict(self) -> dict[str, object]:
        """The outage as the dashboard and the JSON export show it."""
        return {"host": self.host, "start": self.start, "end": self.end, "error": self.error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outage:
        """The outage of ``as_dict`` (or of an export)."""
        end = data.get("end")
        return cls(
            host=str(data["host"]),
            start=float(data["start"]),
            end=None if end is None else float(end),
            error=str(data.get("error") or ""),
        )


class _HostOutages:
    """One host's part of a tracker."""

    __slots__ = ("closed", "closed_seconds", "count", "last_t", "open")

    def __init__(self, max_kept: int | None) -> None:
        self.last_t = float("-inf")
        self.open: Outage | None = None
        self.closed: deque[Outage] = deque(maxlen=max_kept)
        self.closed_seconds = 0.0
        self.count = 0


class OutageTracker:
    """Outages derived incrementally from per-round host states.

    Feed it each host's state of each round in time order (``record``, or
    ``record_round`` for a whole round). A state no later than the host's
    previous one is ignored: the rounds of a host are taken in order.

    Args:
        max_kept: ended outages kept per host (older ones leave the list, not
            the totals of ``down_seconds`` and ``count``); 0 keeps only the open
            ones, None every one.
    """

    def __init__(self, *, max_kept: int | None = MAX_KEPT) -> None:
        self._hosts: dict[str, _HostOutages] = {}
        self._max_kept = max_kept
        self.latest: float | None = None
        """The time of the latest state recorded."""

    def _host(self, host: str) -> _HostOutages:
        entry = self._hosts.get(host)
        if entry is None:
            entry = self._hosts[host] = _HostOutages(self._max_kept)
        return entry

    def record(self, t: float, host: str, up: bool, error: str = "") -> Outage | None:
        """Take one host's state in the round at ``t``.

        Returns:
            The outage this state opened (``end`` None) or ended (``end`` is
            ``t``), or None when it changed nothing.
        """
        entry = self._host(host)
        if not t > entry.last_t:
            return None
        entry.last_t = t
        if self.latest is None or t > self.latest:
            self.latest = t
        current = entry.open
        if up:
            if current is None:
                return None
            ended = replace(current, end=t)
            entry.open = None
            entry.closed.append(ended)
            entry.closed_seconds += t - current.start
            return ended
        if current is not None:
            return None
        entry.open = Outage(host, t, None, error)
        entry.count += 1
        return entry.open

    def record_round(self, t: float, states: Mapping[str, Any]) -> list[Outage]:
        """Take a round's states: ``{host: HostState}``, or ``{host: {"up", "last_error"}}``
        as a published round has them.

        Returns:
            The outages that opened or ended in this round.
        """
        changes: list[Outage] = []
        for host, state in states.items():
            if isinstance(state, Mapping):
                up = state.get("up") is not False
                error = str(state.get("last_error") or state.get("error") or "")
            else:
                up, error = bool(state.up), str(state.error)
            change = self.record(t, host, up, error)
            if change is not None:
                changes.append(change)
        return changes

    def add(self, outage: Outage) -> None:
        """Take an outage derived elsewhere (a stored run's); add them oldest first."""
        entry = self._host(outage.host)
        if outage.end is None:
            entry.open = outage
            entry.last_t = max(entry.last_t, outage.start)
        else:
            entry.closed.append(outage)
            entry.closed_seconds += outage.seconds(outage.end)
            entry.last_t = max(entry.last_t, outage.end)
        entry.count += 1
        last = outage.end if outage.end is not None else outage.start
        if self.latest is None or last > self.latest:
            self.latest = last

    @property
    def hosts(self) -> list[str]:
        """Every host a state was recorded for, in the order first seen."""
        return list(self._hosts)

    def outages(self, host: str | None = None) -> list[Outage]:
        """The outages kept (of ``host``, or of every host), by start time."""
        if host is None:
            entries = list(self._hosts.values())
        else:
            entries = [self._hosts[host]] if host in self._hosts else []
        found = [o for entry in entries for o in entry.closed]
        found += [entry.open for entry in entries if entry.open is not None]
        found.sort(key=lambda o: (o.start, o.host))
        return found

    def down_now(self) -> dict[str, Outage]:
        """``{host: its open outage}`` of the hosts down in their latest round."""
        return {host: e.open for host, e in self._hosts.items() if e.open is not None}

    def count(self, host: str) -> int:
        """How many outages ``host`` had (every one, kept or not)."""
        entry = self._hosts.get(host)
        return 0 if entry is None else entry.count

    def down_seconds(self, now: float | None = None) -> dict[str, float]:
        """``{host: seconds down}`` of every host: its ended outages, and its open
        one up to ``now`` (by default the latest state recorded)."""
        if now is None:
            now = self.latest if self.latest is not None else 0.0
        return {
            host: e.closed_seconds + (e.open.seconds(now) if e.open is not None else 0.0)
            for host, e in self._hosts.items()
        }

    @classmethod
    def from_states(
        cls, status: Mapping[str, Iterable[tuple[float, bool, str] | list[Any]]]
    ) -> OutageTracker:
        """A tracker fed ``{host: [(t, up, error), ...]}`` (an export's ``status``),
        keeping every outage."""
        tracker = cls(max_kept=None)
        for host, rows in status.items():
            for t, up, error in sorted(rows, key=lambda row: float(row[0])):
                tracker.record(float(t), host, bool(up), str(error))
        return tracker

    @classmethod
    def from_outages(cls, outages: Iterable[Outage]) -> OutageTracker:
        """A tracker holding ``outages`` (a stored run's), every one."""
        tracker = cls(max_kept=None)
        for outage in sorted(outages, key=lambda o: o.start):
            tracker.add(outage)
        return tracker


def derive_outages(host: str, states: Iterable[tuple[float, bool, str]]) -> list[Outage]:
    """The outages of ``host`` over its ``(t, up, error)`` states, oldest first.

    The states may come in any order; each time counts once.
    """
    tracker = OutageTracker(max_kept=None)
    for t, up, error in sorted(states, key=lambda row: row[0]):
        tracker.record(t, host, up, error)
    return tracker.outages(host)


class OutageView(Protocol):
    """What the dashboard and ``/metrics`` read of a source's outages."""

    def outage_tracker(self) -> OutageTracker:
        """The source's outages so far."""
        ...


class _Subscribable(Protocol):
    def subscribe(self) -> AsyncIterator[dict[str, object]]: ...


class LiveOutages:
    """The outages of a live source without a tracker of its own (a ``Collector``),
    derived from the rounds it publishes from ``start`` on.

    Args:
        source: anything with ``subscribe()`` yielding ``{"type": "round", "t",
            "hosts": {name: {"up", "last_error"}}}`` updates.
    """

    def __init__(self, source: _Subscribable) -> None:
        self._source = source
        self._tracker = OutageTracker()
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self.rounds = 0
        """Rounds taken in so far."""

    def outage_tracker(self) -> OutageTracker:
        """The outages seen so far."""
        return self._tracker

    def start(self) -> None:
        """Follow the source's rounds (on the running loop) until ``stop``."""
        if self._task is None or self._task.done():
            updates = self._source.subscribe()
            self._task = asyncio.get_running_loop().create_task(
                self._follow(updates), name="otto monitor outages"
            )

    async def wait_rounds(self, count: int) -> None:
        """Wait until ``count`` rounds have been taken in (bound it with a timeout)."""
        while self.rounds < count:
            await self._progress.wait()

    async def stop(self) -> None:
        """Stop following the source (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self, updates: AsyncIterator[dict[str, object]]) -> None:
        try:
            async for update in updates:
                if update.get("type") != "round":
                    continue
                t, hosts = update.get("t"), update.get("hosts")
                if isinstance(t, int | float) and isinstance(hosts, Mapping):
                    self._tracker.record_round(float(t), hosts)
                self.rounds += 1
                # Wakes every waiter, and makes the next wait block until the next round.
                self._progress.set()
                self._progress = asyncio.Event()
        finally:
            aclose = getattr(updates, "aclose", None)
            if aclose is not None:
                await aclose()
        if getattr(updates, "overflowed", False):
            logger.warning("outages: fell behind the collector's rounds; following again")
            self._task = None
            self.start()
