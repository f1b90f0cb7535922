"""Periodic tasks: run commands on a host every ``interval`` seconds, drift-free.

Tick ``k`` of a repeat is due at ``start + k * interval`` on a monotonic clock.
Each deadline is computed from the start, never from the previous tick, so
lateness does not accumulate however long a repeat runs. A tick whose command
is still running when the next one is due makes that next one skip (counted in
``RepeatStats.ticks_skipped``); ticks never stack up behind a slow command.

The clock is injectable: ``FakeClock`` lets tests drive the schedule without
sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from otto import loop as otto_loop
from otto.loop import cancel_and_wait
from otto.result import CommandStatus, RunResult, Status

__all__ = [
    "Clock",
    "FakeClock",
    "HostLike",
    "OnResult",
    "RepeatRunner",
    "RepeatStats",
    "SessionLike",
    "SystemClock",
    "check_repeat",
    "next_tick",
    "to_seconds",
]

logger = logging.getLogger("otto.periodic")

OnResult = Callable[[str, datetime, list[CommandStatus]], object]
"""``on_result(name, timestamp, statuses)``; may return an awaitable, which is awaited."""


class SessionLike(Protocol):
    """What a repeat needs of a session: ``run`` and ``close``."""

    async def run(self, cmds: str | Sequence[str], *, timeout: float | None = None) -> RunResult:
        """Run commands in the session's shell."""
        ...

    async def close(self) -> None:
        """End the session."""
        ...


class HostLike(Protocol):
    """What a repeat needs of a host: a name and named sessions."""

    @property
    def name(self) -> str:
        """The host's name, for messages."""
        ...

    def open_session(self, name: str) -> Awaitable[SessionLike]:
        """Open (or return the already open) session called ``name``."""
        ...


class Clock(Protocol):
    """Time as a schedule sees it: a monotonic clock, the wall clock, and a sleep."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences mean anything."""
        ...

    def time(self) -> float:
        """Unix time (seconds) now, for timestamps."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``monotonic()`` has reached ``deadline``."""
        ...


class SystemClock:
    """The real clocks: ``time.monotonic`` (the event loop's clock) and ``time.time``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    spin: float = 0.001
    """Seconds before a deadline at which sleeping gives way to yielding in a loop."""

    async def sleep_until(self, deadline: float) -> None:
        # The event loop's timers wake up to a millisecond late (epoll counts in
        # whole milliseconds, rounded up). Sleeping until just before the
        # deadline and then yielding to the loop until it passes lands within
        # microseconds of it, for at most ``spin`` seconds of busy loop per tick.
        delay = deadline - time.monotonic() - self.spin
        if delay > 0:
            await asyncio.sleep(delay)
        while time.monotonic() < deadline:  # noqa: ASYNC110 - a deliberate short spin
            await asyncio.sleep(0)


class FakeClock:
    """A clock that moves only when told to, so schedule tests never sleep.

    Tasks that ``sleep_until`` a future deadline wait until ``advance`` moves
    the clock to (or past) it. ``wait_for_sleepers`` lets a test wait until the
    code under test is parked on the clock before moving it.

    Args:
        start: the initial ``monotonic()`` value.
        wall: the ``time()`` value when ``monotonic()`` reads ``start``.
    """

    def __init__(self, start: float = 0.0, wall: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._changed: asyncio.Event | None = None

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            # Still yield, as a real sleep would, so a loop of past deadlines
            # cannot starve the event loop.
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), future))
        self._notify()
        await future

    @property
    def sleepers(self) -> int:
        """How many tasks are waiting on the clock right now."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline anyone waits for, or None."""
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back (advance({seconds}))")
        self.advance_to(self._now + seconds)

    def advance_to(self, when: float) -> None:
        """Move the clock to ``when`` (not back) and wake the sleepers that are due."""
        self._now = max(self._now, when)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        self._notify()

    async def wait_for_sleepers(self, count: int = 1) -> None:
        """Wait until at least ``count`` tasks sleep on the clock (wrap it in a timeout)."""
        while self.sleepers < count:
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    async def step(self, sleepers: int = 1) -> float:
        """Wait for ``sleepers`` tasks to park, then jump to the earliest deadline.

        Returns:
            The clock's new ``monotonic()`` value.
        """
        await self.wait_for_sleepers(sleepers)
        deadline = self.next_deadline
        assert deadline is not None
        self.advance_to(deadline)
        return self._now

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


def to_seconds(value: float | timedelta, what: str) -> float:
    """``value`` in seconds; ``ValueError`` unless it is a finite number above zero.

    Args:
        value: seconds (an int or a float), or a ``timedelta``.
        what: the parameter's name, for the error message.

    Raises:
        ValueError: zero, negative, NaN, infinite, or not a number at all (a
            string, None, a bool).
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(
            f"{what} must be seconds (an int or a float) or a timedelta, "
            f"got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")
    return seconds


def check_repeat(
    cmds: str | Sequence[str],
    interval: float | timedelta,
    *,
    times: int | None = None,
    duration: float | timedelta | None = None,
    max_history: int = 1000,
) -> None:
    """Check the arguments of a repeat (``RepeatRunner.start``, ``Host.start_repeat``).

    Raises:
        ValueError: a bad interval, times, duration, max_history or command list.
    """
    to_seconds(interval, "interval")
    if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
        raise ValueError(f"times must be a whole number of at least 1, got {times!r}")
    if duration is not None:
        to_seconds(duration, "duration")
    if not isinstance(max_history, int) or isinstance(max_history, bool) or max_history < 0:
        raise ValueError(f"max_history must be a whole number, at least 0, got {max_history!r}")
    if isinstance(cmds, str):
        if not cmds:
            raise ValueError("cmds must hold at least one command")
    elif not list(cmds) or not all(isinstance(c, str) for c in cmds):
        raise ValueError("cmds must hold at least one command, each a string")


def next_tick(start: float, interval: float, done: int, now: float) -> int:
    """The index of the next tick to run after tick ``done`` finished at ``now``.

    Ticks whose deadline ``start + k * interval`` has already passed are skipped;
    a tick due exactly now still runs.

    Returns:
        The smallest ``k > done`` with ``start + k * interval >= now``.
    """
    # The small tolerance keeps float rounding from skipping a tick that is due
    # exactly now (e.g. a fake clock landing right on the deadline).
    due = math.ceil((now - start) / interval - 1e-9)
    return max(done + 1, due)


@dataclass(frozen=True, slots=True)
class RepeatStats:
    """Counters of one repeat."""

    ticks_run: int = 0
    ticks_skipped: int = 0
    """Ticks not run because the previous tick was still running when they fell due."""
    errors: int = 0
    """Ticks with a command in ``Status.Error`` or an exception, plus failed callbacks."""
    last_error: str | None = None
    running: bool = False


@dataclass(eq=False)
class _Repeat:
    name: str
    cmds: str | list[str]
    interval: float
    times: int | None
    duration: float | None
    until: datetime | None
    on_result: OnResult | None
    history: deque[tuple[datetime, list[CommandStatus]]]
    task: asyncio.Task[None] | None = None
    session: SessionLike | None = None
    ticks_run: int = 0
    ticks_skipped: int = 0
    errors: int = 0
    last_error: str | None = None


class RepeatRunner:
    """Named periodic tasks bound to one host, each on a session of its own.

    Args:
        host: where the commands run; each repeat opens ``repeat:<name>`` on it.
        clock: the clock the schedule follows (``SystemClock()`` by default).
    """

    def __init__(self, host: HostLike, *, clock: Clock | None = None) -> None:
        self._host = host
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._repeats: dict[str, _Repeat] = {}

    def start(
        self,
        name: str,
        cmds: str | Sequence[str],
        interval: float | timedelta,
        *,
        times: int | None = None,
        duration: float | timedelta | None = None,
        until: datetime | None = None,
        on_result: OnResult | None = None,
        max_history: int = 1000,
    ) -> None:
        """Start running ``cmds`` every ``interval``; the first tick is due at once.

        Not a coroutine. Called where no event loop runs (plain synchronous code),
        the repeat runs on ``otto.run``'s loop; await its other methods there,
        through ``otto.run``.

        Args:
            name: names the repeat; unique among this runner's running repeats.
            cmds: one command, or a list run in order (stopping at a failure).
            interval: seconds (float) or ``timedelta`` between tick deadlines.
            times: stop after this many ticks have run.
            duration: stop once this much time has passed since the start.
            until: stop at this wall-clock time (naive means local time).
            on_result: called as ``on_result(name, timestamp, statuses)`` after each tick.
            max_history: how many ticks' results to keep.

        Raises:
            ValueError: a bad argument (checked before anything starts), or a
                repeat of that name is running.
        """
        check_repeat(cmds, interval, times=times, duration=duration, max_history=max_history)
        repeat = _Repeat(
            name=name,
            cmds=cmds if isinstance(cmds, str) else list(cmds),
            interval=to_seconds(interval, "interval"),
            times=times,
            duration=None if duration is None else to_seconds(duration, "duration"),
            until=until,
            on_result=on_result,
            history=deque(maxlen=max_history),
        )
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            otto_loop.run(self._launch_on_loop(repeat))
        else:
            self._launch(repeat)

    async def _launch_on_loop(self, repeat: _Repeat) -> None:
        self._launch(repeat)

    def _launch(self, repeat: _Repeat) -> None:
        old = self._repeats.get(repeat.name)
        if old is not None and old.task is not None and not old.task.done():
            raise ValueError(f"a repeat named {repeat.name!r} is already running")
        loop = asyncio.get_running_loop()
        repeat.task = loop.create_task(self._drive(repeat), name=f"otto repeat {repeat.name}")
        repeat.task.add_done_callback(self._reap)
        self._repeats[repeat.name] = repeat

    async def stop(self, name: str) -> None:
        """Stop the repeat ``name`` and wait until it has closed its session.

        A running command is cancelled. Stopping a repeat that already ended is
        a no-op; its results stay available.

        Raises:
            KeyError: no repeat of that name was ever started.
        """
        task = self._get(name).task
        if task is not None:
            await cancel_and_wait(task)

    async def wait(self, name: str) -> None:
        """Wait until the repeat ``name`` ends by itself (``times``, ``duration``, ``until``).

        Raises:
            KeyError: no repeat of that name was ever started.
        """
        task = self._get(name).task
        if task is not None:
            # Waiting must not cancel the repeat when the waiter is cancelled.
            await asyncio.wait([task])

    async def stop_all(self) -> None:
        """Stop every repeat of this runner, concurrently."""
        tasks = [r.task for r in self._repeats.values() if r.task is not None]
        await asyncio.gather(*(cancel_and_wait(t) for t in tasks))

    def results(self, name: str) -> list[tuple[datetime, list[CommandStatus]]]:
        """The kept ``(timestamp, statuses)`` of each tick, oldest first.

        Raises:
            KeyError: no repeat of that name was ever started.
        """
        return list(self._get(name).history)

    def stats(self, name: str) -> RepeatStats:
        """Tick and error counters of the repeat ``name``.

        Raises:
            KeyError: no repeat of that name was ever started.
        """
        r = self._get(name)
        return RepeatStats(
            ticks_run=r.ticks_run,
            ticks_skipped=r.ticks_skipped,
            errors=r.errors,
            last_error=r.last_error,
            running=r.task is not None and not r.task.done(),
        )

    @property
    def names(self) -> list[str]:
        """Names of the repeats started, running or ended, in start order."""
        return list(self._repeats)

    def _get(self, name: str) -> _Repeat:
        try:
            return self._repeats[name]
        except KeyError:
            raise KeyError(f"no repeat named {name!r} on {self._host.name}") from None

    async def _drive(self, repeat: _Repeat) -> None:
        clock = self._clock
        # The schedule starts once the session is up, so the first tick is not
        # late by a shell's start-up (if opening fails, the first tick retries).
        try:
            repeat.session = await self._host.open_session(f"repeat:{repeat.name}")
        except Exception as exc:
            logger.info(
                "repeat %s: could not open its session yet (%s); the first tick retries",
                repeat.name,
                exc,
            )
        start = clock.monotonic()
        end: float | None = None
        if repeat.duration is not None:
            end = start + repeat.duration
        if repeat.until is not None:
            # until.timestamp() reads a naive datetime as local time, like datetime.now().
            end_until = start + (repeat.until.timestamp() - clock.time())
            end = end_until if end is None else min(end, end_until)
        k = 0
        try:
            while end is None or start + k * repeat.interval < end:
                await clock.sleep_until(start + k * repeat.interval)
                await self._tick(repeat)
                if repeat.times is not None and repeat.ticks_run >= repeat.times:
                    break
                following = next_tick(start, repeat.interval, k, clock.monotonic())
                skipped = following - k - 1
                if skipped:
                    repeat.ticks_skipped += skipped
                    logger.debug(
                        "repeat %r on %s: tick %d overran, skipped %d",
                        repeat.name,
                        self._host.name,
                        k,
                        skipped,
                    )
                k = following
        finally:
            await self._drop_session(repeat)

    async def _tick(self, repeat: _Repeat) -> None:
        started = self._clock.time()
        stamp = datetime.fromtimestamp(started).astimezone()
        try:
            if repeat.session is None:
                repeat.session = await self._host.open_session(f"repeat:{repeat.name}")
            statuses = (await repeat.session.run(repeat.cmds)).statuses
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The session may be unusable now; the next tick opens a fresh one.
            await self._drop_session(repeat)
            command = repeat.cmds if isinstance(repeat.cmds, str) else "; ".join(repeat.cmds)
            statuses = [
                CommandStatus(
                    command=command,
                    output=f"{type(exc).__name__}: {exc}",
                    status=Status.Error,
                    retcode=-1,
                    started=started,
                    host=self._host.name,
                    session=f"repeat:{repeat.name}",
                )
            ]
        repeat.ticks_run += 1
        repeat.history.append((stamp, statuses))
        failed = next((s for s in statuses if s.status is Status.Error), None)
        if failed is not None:
            repeat.errors += 1
            repeat.last_error = f"{failed.command}: {failed.output[-300:]}"
            logger.warning("repeat %r on %s: %s", repeat.name, self._host.name, repeat.last_error)
        if repeat.on_result is not None:
            try:
                outcome = repeat.on_result(repeat.name, stamp, statuses)
                if inspect.isawaitable(outcome):
                    await outcome
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                repeat.errors += 1
                repeat.last_error = f"on_result: {type(exc).__name__}: {exc}"
                logger.exception("repeat %r on %s: on_result failed", repeat.name, self._host.name)

    async def _drop_session(self, repeat: _Repeat) -> None:
        session, repeat.session = repeat.session, None
        if session is None:
            return
        closing = asyncio.ensure_future(session.close())
        try:
            # stop() may cancel the repeat while it is closing its session (it
            # ended by itself a moment before): finish closing first, then let
            # the cancellation through, so no half-closed session is left behind.
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await asyncio.wait([closing])
            if not closing.cancelled() and closing.exception() is not None:
                logger.warning(
                    "repeat %r: closing its session failed: %s", repeat.name, closing.exception()
                )
            raise
        except Exception:
            logger.warning(
                "repeat %r on %s: closing its session failed",
                repeat.name,
                self._host.name,
                exc_info=True,
            )

    def _reap(self, task: asyncio.Task[None]) -> None:
        # Collects the outcome of a repeat that ended on its own; a crash here
        # would otherwise be reported only as "exception was never retrieved".
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("repeat task %s crashed", task.get_name(), exc_info=exc)
