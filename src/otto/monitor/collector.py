"""The metric collector: every host polled at the same instant, round after round.

Round ``k`` starts at ``start + k * interval`` on the monotonic clock (as
``RepeatRunner`` ticks do). In a round every host's probes (``otto.monitor.probe``)
read it at once: a host with a shell gets ONE ``run`` on a session of its own
(``otto.monitor.shell_probe``). A host's probes have the interval as their
budget; a host that fails, or has not answered by then, is down for the round.

Each host's poll is its own: a host that has not answered by the end of the
round keeps its poll running (a straggler: reconnecting, or behind a cut link)
and is recorded as "no answer" for every round it misses, while the other
hosts' rounds start on time. A straggler's poll is cancelled once it is older
than the host's ``connect_timeout`` plus two intervals. A host whose first
connection is still being made, within its ``connect_timeout``, is
"connecting": no state is recorded for it yet.

Each round's metrics go to the in-memory history (compact ring buffers of
``history`` points per metric), to the SQLite store (one transaction per round,
on a writer thread of its own) and to subscribers (the dashboard).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import operator
import re
import secrets
import struct
from array import array
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import repeat
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

from otto.loop import cancel_and_wait
from otto.monitor.logwatch import (
    DEFAULT_BURST,
    DEFAULT_RATE,
    DEFAULT_SUMMARY_INTERVAL,
    LINE_CAP,
    LogWatch,
    WatchHost,
)
from otto.monitor.parsers import DEFAULT_PARSERS, MetricParser
from otto.monitor.probe import CostTally, HostRound, Probe, RoundCost
from otto.monitor.replay import Replay, list_runs
from otto.monitor.shell_probe import DF_EVERY, ShellProbe, join_commands, split_output
from otto.monitor.snmp import SnmpProbe
from otto.monitor.source import DashboardSource, build_snapshot, split_finite
from otto.monitor.store import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    Event,
    HostState,
    MetricStore,
    Run,
    StoreError,
)
from otto.monitor.subscription import Subscribers
from otto.periodic import Clock, HostLike, SystemClock, next_tick, to_seconds
from otto.transfer import write_whole
from otto.transports.snmp import SnmpSettings

__all__ = [
    "LATE_AFTER",
    "Collector",
    "CostTally",
    "DashboardSource",
    "HostRound",
    "MonitorTarget",
    "Probe",
    "RoundCost",
    "join_commands",
    "split_output",
]

logger = logging.getLogger("otto.monitor")

_T = TypeVar("_T")

LATE_AFTER = 0.05
"""Seconds after it was due that a round counts as late (``Collector.rounds_late``)."""

_MISSING = math.nan
"""A metric absent from a round, in the history's value columns (values are finite)."""


@dataclass(frozen=True)
class MonitorTarget:
    """A host to monitor, with parsers of its own on top of (or instead of) the defaults.

    Args:
        host: the host.
        parsers: ``{command: parser}`` added to ``DEFAULT_PARSERS``; a parser of
            None drops that default command for this host.
        replace_defaults: use only ``parsers``, none of the defaults.
        df_every: run ``df -P`` on every this many rounds only (None: the
            collector's ``df_every``); the rounds between start no process.
    """

    host: HostLike
    parsers: Mapping[str, MetricParser | None] = field(default_factory=dict)
    replace_defaults: bool = False
    df_every: int | None = None

    def commands(self) -> dict[str, MetricParser]:
        """The command -> parser table this host is polled with."""
        table: dict[str, MetricParser] = {} if self.replace_defaults else dict(DEFAULT_PARSERS)
        for command, parser in self.parsers.items():
            if parser is None:
                table.pop(command, None)
            else:
                table[command] = parser
        return table

    def probes(
        self,
        *,
        separator: str,
        session_name: str,
        clock: Clock,
        df_every: int = DF_EVERY,
        patience: float = 0.0,
    ) -> list[Probe]:
        """The probes that read this host each round (``df_every``: the collector's;
        ``patience``: seconds a shell's round may run past its end before it is
        interrupted, the collector's interval).

        A host with a shell is read through it; one with ``snmp`` settings (see
        ``otto.monitor.snmp``) from its agent too, or only, if it has no shell;
        where both give a metric, the shell's value is kept.

        Raises:
            ValueError: the host has neither a shell nor SNMP settings.
        """
        probes: list[Probe] = []
        # SNMP first: where both give a metric, the shell's (read last) is kept.
        snmp: SnmpSettings | None = getattr(self.host, "snmp", None)
        if snmp is not None:
            address = getattr(self.host, "address", None) or "127.0.0.1"
            probes.append(SnmpProbe(self.host.name, snmp, address=address, clock=clock))
        if getattr(self.host, "has_shell", True):
            probes.append(
                ShellProbe(
                    self.host,
                    self.commands(),
                    separator=separator,
                    session_name=session_name,
                    clock=clock,
                    df_every=self.df_every if self.df_every is not None else df_every,
                    patience=patience,
                )
            )
        if not probes:
            raise ValueError(f"{self.host.name}: has no shell and no 'snmp': nothing to monitor")
        return probes


# --- per-host state ----------------------------------------------------------------------


class _History:
    """One host's metrics in memory: a ring of rounds, each a row of every metric's value.

    The rows are one ``array('f')`` (4 bytes a value: 32-bit floats, about seven
    significant digits, plenty for a chart; the store, ``latest()`` and the
    subscribers keep every value whole), allocated at its full length on the
    second round (the first round lacks the rates: an array of its width would
    be thrown away at once, and leave a hole in the heap of every host). A
    round is written as one row (a C-level copy, not a loop over the metrics)
    and a metric read back as a strided slice. A value too large for 32 bits
    turns the host's rows into ``array('d')``. A metric absent from a round
    holds NaN there (the values kept are finite). The times are one
    ``array('d')`` column per host, shared by its metrics.
    """

    __slots__ = (
        "capacity",
        "head",
        "index",
        "names",
        "pick",
        "row",
        "rows",
        "size",
        "slots",
        "times",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.slots = 1
        """Rows allocated: one until the second round, then ``capacity``."""
        self.head = 0
        """Where the next row goes (once the ring is full: the oldest row)."""
        self.size = 0
        self.times = array("d")
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.rows = array("f")
        self.pick: Callable[[Mapping[str, float]], tuple[float, ...]] = _nothing
        """The round's values in column order (KeyError: a metric is missing)."""
        self.row = struct.Struct("=0f")
        """One row, packed with range checks ("="): a value beyond 32 bits raises."""

    def append(self, t: float, metrics: Mapping[str, float]) -> None:
        if not self.size:
            self.times = _empty(self.capacity, "d")
        if not metrics.keys() <= self.index.keys():
            self._widen([name for name in metrics if name not in self.index])
        at = self.head
        if at >= self.slots:
            self._grow()
        self.times[at] = t
        try:
            values = self.pick(metrics)
        except KeyError:  # NaN for the metrics this round lacks
            values = tuple(map(metrics.get, self.names, repeat(_MISSING)))
        try:
            self.row.pack_into(self.rows, at * self.row.size, *values)
        except OverflowError:  # a value beyond float32's range: keep doubles from now on
            self._retype("d")
            self.row.pack_into(self.rows, at * self.row.size, *values)
        self.head = (at + 1) % self.capacity
        if self.size < self.capacity:
            self.size += 1

    def _grow(self) -> None:
        """Allocate every row of the ring (the rows written so far are kept)."""
        rows = _empty(self.capacity * len(self.names), self.rows.typecode)
        rows[: len(self.rows)] = self.rows
        self.rows, self.slots = rows, self.capacity

    def _retype(self, typecode: str) -> None:
        self.rows = array(typecode, self.rows)
        self.row = struct.Struct(f"={len(self.names)}{typecode}")

    def _widen(self, added: list[str]) -> None:
        """Make room for new metrics: every row gets their columns, NaN so far."""
        width, wider = len(self.names), len(self.names) + len(added)
        typecode = self.rows.typecode
        rows = _empty(self.slots * wider, typecode)
        for column in range(width):
            rows[column::wider] = self.rows[column::width]
        self.rows = rows
        for name in added:
            self.index[name] = len(self.names)
            self.names.append(name)
        names = tuple(self.names)
        if len(names) == 1:
            self.pick = lambda metrics: (metrics[names[0]],)
        else:
            self.pick = operator.itemgetter(*names)
        self.row = struct.Struct(f"={len(names)}{typecode}")

    def points(self, metric: str) -> list[tuple[float, float]]:
        """``(t, value)`` of ``metric``, oldest first."""
        column = self.index.get(metric)
        if column is None:
            return []
        values, times = self.rows[column :: len(self.names)], self.times
        if self.size < self.capacity:
            times, values = times[: self.size], values[: self.size]
        elif self.head:
            at = self.head
            times, values = times[at:] + times[:at], values[at:] + values[:at]
        isnan = math.isnan
        return [(t, v) for t, v in zip(times, values, strict=True) if not isnan(v)]

    def metrics(self) -> list[str]:
        return list(self.names)


def _nothing(metrics: Mapping[str, float]) -> tuple[float, ...]:
    return ()


def _empty(length: int, typecode: str) -> array[float]:
    return array(typecode, (_MISSING,)) * length


class _States:
    """A host's up/down states in memory, one per recorded round, in a ring."""

    __slots__ = ("capacity", "errors", "head", "times", "ups")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.head = 0
        self.times = array("d")
        self.ups = bytearray()
        self.errors: list[str] = []

    def append(self, t: float, up: bool, error: str) -> None:
        if self.errors:
            # The same text as the previous round's: keep one string, not 720 copies.
            previous = self.errors[self.head - 1]
            if previous == error:
                error = previous
        if len(self.times) < self.capacity:
            self.times.append(t)
            self.ups.append(up)
            self.errors.append(error)
            return
        at = self.head
        self.times[at], self.ups[at], self.errors[at] = t, up, error
        self.head = (at + 1) % self.capacity

    def __iter__(self) -> Iterator[tuple[float, bool, str]]:
        at, n = self.head, len(self.times)
        for i in range(n):
            j = (at + i) % n
            yield self.times[j], bool(self.ups[j]), self.errors[j]


class _Track:
    """Everything the collector keeps about one host."""

    def __init__(self, target: MonitorTarget, probes: Sequence[Probe], history: int) -> None:
        self.target = target
        self.name = target.host.name
        self.probes = list(probes)
        self.last_cost: tuple[RoundCost, ...] = ()
        self.costs = CostTally()
        self.up = False
        self.polled = False
        self.last_error = ""
        self.latest: dict[str, float] = {}
        self.counters: Mapping[str, Mapping[str, int]] = {}
        self.series = _History(history)
        self.states = _States(history)
        self.connect_timeout = float(getattr(target.host, "connect_timeout", 10.0))
        self.poll: asyncio.Task[HostRound] | None = None
        """The poll in flight, if any (a straggler's, after its round ended)."""
        self.poll_began = 0.0
        self.missed = 0
        """Rounds recorded as "no answer" while an earlier poll was still running."""
        self.dropped: dict[str, int] = {}
        """Values of each metric left out because they were NaN, infinite or not numbers."""

    def connecting(self, now: float) -> bool:
        """True while the host's first connection is being made, within its
        ``connect_timeout`` (no state is recorded for it yet)."""
        return (
            not self.polled
            and self.poll is not None
            and now - self.poll_began < self.connect_timeout
            and any(getattr(p, "connecting", False) for p in self.probes)
        )

    def record(self, t: float, outcome: HostRound) -> None:
        self.states.append(t, outcome.up, outcome.error)
        if outcome.up != self.up or (not outcome.up and outcome.error != self.last_error):
            if outcome.up and self.polled:
                logger.info("%s: answering again", self.name)
            elif not outcome.up:
                logger.warning("%s: down this round: %s", self.name, outcome.error)
        self.polled = True
        self.up = outcome.up
        self.last_error = outcome.error
        if not outcome.up:
            return
        self.latest = outcome.metrics
        self.counters = outcome.counters
        self.series.append(t, outcome.metrics)


class _Round:
    """One round in flight: the polls it started, and when it is over."""

    __slots__ = ("began", "deadline", "due", "left", "over", "polls", "t")

    def __init__(self, due: float, began: float, t: float, interval: float) -> None:
        self.due = due
        self.began = began
        self.t = t
        self.deadline = due + interval
        self.polls: list[tuple[_Track, asyncio.Task[HostRound] | None]] = []
        """Each host: the poll this round started, or None (busy with an earlier one)."""
        self.left = 0
        self.over: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def answered(self) -> None:
        """One poll this round started has ended (answered, failed or cancelled)."""
        self.left -= 1
        if self.left == 0 and not self.over.done():
            self.over.set_result(None)


# --- the collector -----------------------------------------------------------------------


class Collector:
    """Polls hosts in rounds and keeps their metrics.

    Args:
        hosts: hosts, or ``MonitorTarget`` for a host with parsers of its own.
        interval: seconds (or ``timedelta``) between round starts; also each
            host's timeout within a round.
        db: a SQLite file to store every round in, or None for memory only. A file
            that holds earlier runs keeps them: this collector appends a new run.
        label: a short name for the run in ``db`` (``otto monitor --run LABEL`` picks it).
        note: free text about the run, kept with it.
        history: points kept in memory per host and metric (and ten times as
            many events; the store keeps them all).
        clock: the schedule's clock (tests pass ``otto.periodic.FakeClock``).
        df_every: run ``df -P`` on every this many rounds only (its last reading
            stands in between): the other rounds of a Linux host start no
            process on it. A ``MonitorTarget`` may set its own.

    Raises:
        ValueError: a bad interval or history, or two hosts with the same name.
    """

    def __init__(
        self,
        hosts: Iterable[HostLike | MonitorTarget],
        *,
        interval: float | timedelta = 5.0,
        db: str | PathLike[str] | None = None,
        label: str | None = None,
        note: str | None = None,
        history: int = 720,
        clock: Clock | None = None,
        df_every: int = DF_EVERY,
    ) -> None:
        self._interval = to_seconds(interval, "interval")
        if history < 1:
            raise ValueError(f"history must be at least 1, got {history!r}")
        if df_every < 1:
            raise ValueError(f"df_every must be at least 1, got {df_every!r}")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._db_path = None if db is None else Path(db)
        self._label = label
        self._note = note
        self._run: Run | None = None
        self._started: float | None = None
        tag = secrets.token_hex(4)
        self._separator = f"__otto_monitor_{secrets.token_hex(8)}__"
        self._tracks: dict[str, _Track] = {}
        for item in hosts:
            target = item if isinstance(item, MonitorTarget) else MonitorTarget(item)
            name = target.host.name
            if name in self._tracks:
                raise ValueError(f"host {name!r} is listed twice")
            probes = target.probes(
                separator=self._separator,
                session_name=f"monitor:{tag}",
                clock=self._clock,
                df_every=df_every,
                patience=self._interval,
            )
            self._tracks[name] = _Track(target, probes, history)
        self._history = history
        # The timeline in memory is bounded like the series (a log watch adds an
        # event every few seconds for days); the store keeps every event.
        self._events: deque[Event] = deque(maxlen=10 * history)
        self._next_event_id = 1
        self._rounds: deque[tuple[float, float]] = deque(maxlen=history)
        self._subscribers = Subscribers()
        self._task: asyncio.Task[None] | None = None
        self._store: MetricStore | None = None
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._writes: set[asyncio.Future[Any]] = set()
        self._last_write: asyncio.Future[Any] | None = None
        self._rounds_run = 0
        self._rounds_skipped = 0
        self._rounds_late = 0
        self._lateness: deque[float] = deque(maxlen=history)
        self._last_duration: float | None = None
        self._watches: list[LogWatch] = []

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def interval(self) -> float:
        """Seconds between round starts."""
        return self._interval

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._task is not None and not self._task.done()

    @property
    def host_names(self) -> list[str]:
        """The monitored hosts, in the order given."""
        return list(self._tracks)

    @property
    def rounds_run(self) -> int:
        """Rounds completed so far."""
        return self._rounds_run

    @property
    def rounds_skipped(self) -> int:
        """Rounds not run because the previous one ended too late."""
        return self._rounds_skipped

    @property
    def rounds_late(self) -> int:
        """Rounds that started more than ``LATE_AFTER`` seconds after they were due."""
        return self._rounds_late

    def round_lateness(self) -> list[float]:
        """Seconds each of the latest ``history`` rounds started after it was due, oldest first."""
        return list(self._lateness)

    @property
    def connecting(self) -> list[str]:
        """Hosts whose first connection is still being made (no state recorded for them yet)."""
        now = self._clock.monotonic()
        return [name for name, t in self._tracks.items() if t.connecting(now)]

    def missed_rounds(self) -> dict[str, int]:
        """``{host: rounds}`` recorded as "no answer" while its previous poll still ran."""
        return {name: t.missed for name, t in self._tracks.items() if t.missed}

    @property
    def dropped_values(self) -> dict[str, dict[str, int]]:
        """``{host: {metric: count}}`` of values left out as NaN, infinite or not numbers."""
        return {name: dict(t.dropped) for name, t in self._tracks.items() if t.dropped}

    @property
    def last_round_duration(self) -> float | None:
        """Seconds the latest round took, from its start to its last host's answer."""
        return self._last_duration

    def round_costs(self) -> dict[str, CostTally]:
        """What each host's rounds cost: the latest one and the sums since the start.

        Per round: seconds from sending to the whole answer, bytes received, and
        the processes the round started on the host, measured there (see
        ``otto.monitor.shell_probe.round_processes``).
        """
        return {name: t.costs.copy() for name, t in self._tracks.items()}

    async def start(self) -> None:
        """Open the store (if any) and start the rounds; the first one starts now.

        Raises:
            RuntimeError: already running.
        """
        if self.running:
            raise RuntimeError("the collector is already running")
        if self._started is None:
            self._started = self._clock.time()
        if self._db_path is not None and self._store is None:
            self._writer = concurrent.futures.ThreadPoolExecutor(1, "otto-monitor-store")
            try:
                self._store = await self._in_writer(MetricStore, self._db_path)
                store, started = self._store, self._clock.time()
                self._run = await self._in_writer(
                    lambda: store.start_run(
                        label=self._label,
                        note=self._note,
                        interval=self._interval,
                        hosts=list(self._tracks),
                        started=started,
                    )
                )
                for event in self._events:
                    await self._in_writer(self._store.add_event, event)
            except BaseException:
                if self._store is not None:
                    await self._in_writer(self._store.close)
                    self._store = None
                self._writer.shutdown(wait=False)
                self._writer = None
                raise
        self._subscribers.restart()
        self._task = asyncio.get_running_loop().create_task(self._schedule(), name="otto monitor")
        for watch in self._watches:
            watch.start()

    async def stop(self) -> None:
        """Stop the rounds, close the sessions, finish writing and close the store."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            await cancel_and_wait(task)
        elif task is not None and not task.cancelled() and task.exception() is not None:
            logger.error("the collector's schedule had crashed", exc_info=task.exception())
        # Before the store closes: a watch's last summary event is written too.
        await asyncio.gather(*(w.stop() for w in self._watches))
        polls = [t.poll for t in self._tracks.values() if t.poll is not None]
        for poll in polls:
            poll.cancel()
        if polls:
            await asyncio.gather(*polls, return_exceptions=True)
        await asyncio.gather(*(self._close_probes(t) for t in self._tracks.values()))
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._store is not None:
            try:
                await self._in_writer(self._store.end_run, self._clock.time())
            except Exception:
                logger.error("recording the end of the run failed", exc_info=True)
            await self._in_writer(self._store.close)
            self._store = None
        if self._writer is not None:
            self._writer.shutdown(wait=False)
            self._writer = None
        self._subscribers.stop()

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- reading -----------------------------------------------------------------------

    def latest(self, host_name: str) -> dict[str, float]:
        """The metrics of the host's latest answer (kept while it is down).

        Raises:
            KeyError: the host is not monitored.
        """
        return dict(self._track(host_name).latest)

    def series(self, host_name: str, metric: str) -> list[tuple[float, float]]:
        """``(unix time, value)`` of one metric of one host, oldest first, in memory.

        The values are kept as 32-bit floats (about seven significant digits;
        see ``latest`` and the store for whole ones).

        Raises:
            KeyError: the host is not monitored.
        """
        return self._track(host_name).series.points(metric)

    def host_states(self) -> dict[str, HostState]:
        """Each host's state in the latest round."""
        return {name: HostState(t.up, t.last_error) for name, t in self._tracks.items()}

    def latest_values(self) -> dict[str, dict[str, float]]:
        """``{host: latest metrics}`` of the hosts that answered in the latest round."""
        return {name: dict(t.latest) for name, t in self._tracks.items() if t.up}

    def latest_counters(self) -> dict[str, dict[str, Mapping[str, int]]]:
        """``{host: {parser name: raw counters}}`` of the hosts up in the latest round."""
        return {name: dict(t.counters) for name, t in self._tracks.items() if t.up}

    def snapshot(self) -> dict[str, object]:
        """Everything in memory, for the dashboard (see ``DashboardSource``)."""
        return build_snapshot(
            interval=self._interval,
            live=self.running,
            hosts={name: (t.up, t.last_error) for name, t in self._tracks.items()},
            series=(
                (name, metric, track.series.points(metric))
                for name, track in self._tracks.items()
                for metric in track.series.metrics()
            ),
            events=(e.as_dict() for e in self._events),
            run=None if self._run is None else self._run.as_dict(),
        )

    def subscribe(self) -> AsyncIterator[dict[str, object]]:
        """Round and event updates from now on; ends when the collector stops."""
        return self._subscribers.subscribe()

    def add_event(
        self, label: str, color: str | None = None, end: float | None = None
    ) -> dict[str, object]:
        """Put an annotation on the timeline now (``end``: unix seconds) and return it."""
        return self._record_event(label, color=color, end=end)

    def watch_log(
        self,
        host: WatchHost | str,
        path: str,
        pattern: str | re.Pattern[str],
        *,
        label: str | None = None,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        summary_interval: float = DEFAULT_SUMMARY_INTERVAL,
        line_cap: int = LINE_CAP,
    ) -> LogWatch:
        """Put each new line of ``path`` on ``host`` that ``pattern`` matches on the timeline.

        Each match becomes an event with the host and the line (``label`` as
        its label; default ``"FILE ~ PATTERN"``). The watch follows the file
        from now on, while the collector runs (it starts with ``start``, or at
        once if the collector runs already, and ends with ``stop``), on a
        session of its own: rotation, truncation, reconnects, the rate limit
        (``rate``, ``burst``, ``summary_interval``) and long lines (``line_cap``)
        are as ``otto.monitor.logwatch`` says.

        Args:
            host: a host object, or the name of a monitored host.
            path: the file on the host (any name: it is quoted for the shell).
            pattern: a Python regular expression, searched in each line.
            label: the events' label.

        Returns:
            The watch (its counters: ``matched``, ``suppressed``, ``restarts``).

        Raises:
            KeyError: ``host`` names no monitored host.
            ValueError: a bad pattern, path or limit, a host that cannot open a
                session of its own, or one with a single stream (a console).
        """
        found = self._track(host).target.host if isinstance(host, str) else host
        if not isinstance(found, WatchHost):
            raise ValueError(f"{found.name}: cannot open a session of its own for a log watch")
        watch_host = found

        def emit(event_label: str, line: str) -> None:
            self._record_event(event_label, host=watch_host.name, line=line)

        watch = LogWatch(
            watch_host,
            path,
            pattern,
            emit=emit,
            label=label,
            clock=self._clock,
            rate=rate,
            burst=burst,
            summary_interval=summary_interval,
            line_cap=line_cap,
        )
        self._watches.append(watch)
        if self.running:
            watch.start()
        return watch

    @property
    def log_watches(self) -> list[LogWatch]:
        """The watches ``watch_log`` made, in order."""
        return list(self._watches)

    def _record_event(
        self,
        label: str,
        *,
        color: str | None = None,
        end: float | None = None,
        host: str | None = None,
        line: str | None = None,
    ) -> dict[str, object]:
        event = Event(
            self._next_event_id, self._clock.time(), label, color, end, host=host, line=line
        )
        self._next_event_id += 1
        self._events.append(event)
        if self._store is not None:
            self._write(self._store.add_event, event)
        self._subscribers.publish({"type": "event", "event": event.as_dict()})
        return event.as_dict()

    def export(self) -> dict[str, object]:
        """What is in memory, in the JSON export format of ``MetricStore.export``."""
        samples: dict[str, dict[str, list[list[float]]]] = {}
        status: dict[str, list[list[object]]] = {}
        metrics: set[str] = set()
        for name, track in self._tracks.items():
            history = track.series
            samples[name] = {
                m: [[t, v] for t, v in history.points(m)] for m in sorted(history.metrics())
            }
            metrics.update(history.metrics())
            status[name] = [[t, up, error] for t, up, error in track.states]
        run = self._run
        times = [t for t, _ in self._rounds]
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "runs": [
                {
                    "id": 1 if run is None else run.id,
                    "label": self._label,
                    "note": self._note,
                    "started": run.started if run is not None else min(times, default=0.0),
                    "ended": None if self.running else max(times, default=None),
                    "interval": self._interval,
                    "meta": {"interval": repr(self._interval)},
                    "hosts": sorted(self._tracks),
                    "metrics": sorted(metrics),
                    "rounds": [[t, d] for t, d in self._rounds],
                    "status": status,
                    "samples": samples,
                    "events": [e.as_dict() for e in self._events],
                }
            ],
        }

    def export_json(self, path: str | PathLike[str]) -> None:
        """Write ``export()`` to ``path`` as JSON (``Replay.from_file`` reads it)."""
        write_whole(path, json.dumps(self.export(), allow_nan=False))

    # --- the runs of the database --------------------------------------------------------

    @property
    def run(self) -> Run | None:
        """The run this collector writes to ``db`` (None without ``db``, or before start)."""
        return self._run

    def runs(self) -> list[dict[str, object]]:
        """Every run in ``db``, this one included, oldest first.

        Without ``db``, the one run this collector keeps in memory, with an
        ``id`` of None (it is stored nowhere); [] before it started.

        Blocking (it reads the file on a connection of its own): the dashboard
        calls it from a thread.
        """
        if self._db_path is None:
            if self._started is None:
                return []
            times = [t for t, _ in list(self._rounds)]
            return [
                {
                    "id": None,
                    "label": self._label,
                    "note": self._note,
                    "started": self._started,
                    "ended": None if self.running else max(times, default=None),
                    "interval": self._interval,
                    "hosts": list(self._tracks),
                    "rounds": len(times),
                    "last": max(times, default=None),
                }
            ]
        if self._run is None:
            return []
        return [run.as_dict() for run in list_runs(self._db_path)]

    def run_source(self, run: int | str) -> DashboardSource:
        """A run of ``db`` (an id or a label) for the dashboard: this collector itself
        for its own run, else a ``Replay`` of the stored one. Blocking, like ``runs``.

        Raises:
            StoreError: no such run, or no ``db``.
        """
        own = self._run
        if own is not None and str(run) in (str(own.id), own.label):
            return self
        if self._db_path is None:
            raise StoreError("this collector stores no runs (it has no db)")
        return Replay.from_file(self._db_path, run=run)

    # --- rounds ------------------------------------------------------------------------

    async def poll_round(self) -> dict[str, HostRound]:
        """Run one round now, outside the schedule, and record it like any other.

        A host still busy with an earlier poll is "no answer" in it.
        """
        started = self._launch(self._clock.monotonic())
        await self._wait(started)
        return await self._finish(started)

    async def _schedule(self) -> None:
        clock = self._clock
        start = clock.monotonic()
        # A round that ends a little late (a host's interrupt took a moment)
        # still lets the next one run, late; only a whole missed interval skips.
        slack = self._interval / 2
        k = 0
        await clock.sleep_until(start)
        current = self._launch(start)
        while True:
            if await self._wait(current):
                await self._finish(current)
                following = next_tick(start, self._interval, k, clock.monotonic() - slack)
                if following > k + 1:
                    self._rounds_skipped += following - k - 1
                    logger.warning("monitor rounds overran: skipped %d", following - k - 1)
                k = following
                await clock.sleep_until(start + k * self._interval)
                current = self._launch(start + k * self._interval)
            else:
                # The round's end is the next one's start: start it first, so the
                # hosts that answer are polled on time, then record the round.
                k += 1
                ended, current = current, self._launch(start + k * self._interval)
                await self._finish(ended)

    def _launch(self, due: float) -> _Round:
        """Start the polls of the round due at ``due`` (a busy host keeps its poll)."""
        clock = self._clock
        began = clock.monotonic()
        started = _Round(due, began, clock.time(), self._interval)
        lateness = max(0.0, began - due)
        self._lateness.append(lateness)
        if lateness > LATE_AFTER:
            self._rounds_late += 1
        loop = asyncio.get_running_loop()
        index = self._rounds_run
        polls = started.polls
        for track in self._tracks.values():
            busy = track.poll
            if busy is not None and not busy.done():
                if began - track.poll_began > track.connect_timeout + 2 * self._interval:
                    busy.cancel()  # the probe is left ready for the next round
                polls.append((track, None))
                continue
            task = loop.create_task(self._poll(track, index, started))
            track.poll, track.poll_began = task, began
            started.left += 1
            polls.append((track, task))
        if not started.left:
            started.over.set_result(None)
        return started

    async def _wait(self, started: _Round) -> bool:
        """Wait until every poll ``started`` began has ended (True) or its deadline (False)."""
        if started.over.done():
            return True
        alarm = asyncio.ensure_future(self._clock.sleep_until(started.deadline))
        try:
            await asyncio.wait((started.over, alarm), return_when=asyncio.FIRST_COMPLETED)
        finally:
            alarm.cancel()
        return started.over.done()

    async def _finish(self, started: _Round) -> dict[str, HostRound]:
        """Record the round: answers, "no answer" for the hosts still busy."""
        now = self._clock.monotonic()
        duration = now - started.began
        late = f"no answer within {self._interval:g}s"
        results: dict[str, HostRound] = {}
        for track, poll in started.polls:
            if poll is None or not poll.done():
                if track.connecting(now):
                    continue
                if poll is None:
                    track.missed += 1
                result = HostRound(False, {}, late)
            elif poll.cancelled():
                result = HostRound(False, {}, late)
            else:
                failed = poll.exception()
                if failed is None:
                    result = poll.result()
                else:
                    result = HostRound(False, {}, f"{type(failed).__name__}: {failed}")
            track.record(started.t, result)
            results[track.name] = result
        t = started.t
        self._rounds.append((t, duration))
        self._rounds_run += 1
        self._last_duration = duration
        if self._store is not None:
            await self._save(t, results, duration)
        self._publish(t, duration, results)
        return results

    async def _poll(self, track: _Track, index: int, started: _Round) -> HostRound:
        """Poll one host for the round ``started``, and tell the round when it ended.

        (In the coroutine rather than in done callbacks: two fewer callbacks per
        host per round. Only a poll cancelled before it ever ran, at ``stop``,
        skips the ``finally``.)
        """
        deadline = started.deadline
        try:
            if len(track.probes) == 1:
                outcomes = [await track.probes[0].poll(index, deadline)]
            else:
                outcomes = list(
                    await asyncio.gather(*(p.poll(index, deadline) for p in track.probes))
                )
            return self._merge(track, outcomes)
        except Exception:
            logger.debug("%s: a poll failed", track.name, exc_info=True)
            raise
        finally:
            track.poll = None  # no other poll of the host starts while this one runs
            started.answered()

    def _merge(self, track: _Track, outcomes: Sequence[HostRound]) -> HostRound:
        """One host's round from its probes' answers; values that are not finite
        numbers are dropped, counted and logged once per metric."""
        if len(outcomes) == 1:
            only = outcomes[0]
            if not only.up or _all_finite_floats(only.metrics):
                # The common case, a shell alone whose values are all clean: as it is.
                track.last_cost = () if only.cost is None else (only.cost,)
                track.costs.add(track.last_cost)
                return only
        metrics: dict[str, float] = {}
        counters: dict[str, Mapping[str, int]] = {}
        errors = [o.error for o in outcomes if o.error]
        for outcome in outcomes:
            if not outcome.up:
                continue
            counters.update(outcome.counters)
            # NaN, infinity or a non-number (a user's parser, or garbage in /proc)
            # would poison latest(), JSON, /metrics and the charts: drop and count it.
            finite, dropped = split_finite(outcome.metrics)
            metrics.update(finite)
            for metric in dropped:
                count = track.dropped.get(metric, 0)
                if not count:
                    logger.warning(
                        "%s: %s = %r is not a finite number: dropped "
                        "(counted in Collector.dropped_values; logged once per metric)",
                        track.name,
                        metric,
                        outcome.metrics[metric],
                    )
                track.dropped[metric] = count + 1
        track.last_cost = tuple(o.cost for o in outcomes if o.cost is not None)
        track.costs.add(track.last_cost)
        up = any(o.up for o in outcomes)
        cost = track.costs.last if track.last_cost else None
        return HostRound(up, metrics, "; ".join(errors), cost, counters=counters)

    async def _close_probes(self, track: _Track) -> None:
        for probe in track.probes:
            try:
                await probe.close()
            except Exception:
                logger.debug("%s: closing a probe failed", track.name, exc_info=True)

    def _publish(self, t: float, duration: float, results: Mapping[str, HostRound]) -> None:
        if not self._subscribers:
            return
        update: dict[str, object] = {
            "type": "round",
            "t": t,
            "duration": duration,
            # A round's metrics dicts are new each round and never changed after:
            # subscribers share them rather than get a copy per host per round.
            "hosts": {
                name: {"up": r.up, "metrics": r.metrics, "last_error": r.error}
                for name, r in results.items()
            },
            # What the round cost each host that answered (RoundCost's fields).
            "costs": {
                name: {
                    "seconds": r.cost.seconds,
                    "received": r.cost.received,
                    "processes": r.cost.processes,
                }
                for name, r in results.items()
                if r.cost is not None
            },
        }
        self._subscribers.publish(update)

    # --- the store, off the event loop ---------------------------------------------------

    async def _save(self, t: float, results: Mapping[str, HostRound], duration: float) -> None:
        store = self._store
        assert store is not None
        samples = {name: r.metrics for name, r in results.items() if r.up}
        states = {name: HostState(r.up, r.error) for name, r in results.items()}
        previous = self._last_write
        if previous is not None and not previous.done():
            # The round does not wait for its own write, but it does wait for
            # the previous one: a writer slower than the rounds must not let
            # rounds pile up in memory without bound.
            await asyncio.wait([previous])
        self._last_write = self._write(store.write_round, t, samples, states, duration)

    def _write(self, fn: Callable[..., object], *args: object) -> asyncio.Future[Any]:
        assert self._writer is not None
        future = asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)
        self._writes.add(future)
        future.add_done_callback(self._written)
        return future

    def _written(self, future: asyncio.Future[Any]) -> None:
        self._writes.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.error("writing to the metric store failed", exc_info=future.exception())

    async def _in_writer(self, fn: Callable[..., _T], *args: object) -> _T:
        assert self._writer is not None
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    def _track(self, host_name: str) -> _Track:
        try:
            return self._tracks[host_name]
        except KeyError:
            raise KeyError(f"{host_name!r} is not monitored by this collector") from None


def _all_finite_floats(metrics: Mapping[str, float]) -> bool:
    """True when every value is a finite ``float`` (checked at C speed: a sum and a type set)."""
    values = metrics.values()
    try:
        total = sum(values, 0.0)
    except TypeError:
        return False
    # A sum of finite values is finite unless it overflows (then the slow path decides).
    return total - total == 0.0 and set(map(type, values)) <= {float}
