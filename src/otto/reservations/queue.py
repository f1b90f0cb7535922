"""The queue for hosts: waiting, first come first served, for hosts someone holds.

A waiter is a row of the store with a ticket (the order of arrival) and a
heartbeat, like a lease: a waiter whose process dies (even with SIGKILL) stops
renewing it and is ignored, then purged, within one heartbeat. A waiter that
gives up (Ctrl-C, its timeout) leaves at once.

The rule: **first come, first served, per host.** A waiter's turn comes when
no one else holds any of its hosts and no waiter that arrived before it wants
any of them. A later waiter never overtakes an earlier one on a host they both
want (even when the earlier one still waits for another host), and may take
hosts that no earlier waiter wants. Every waiter is served: the waiters ahead
of it only leave (served, gone, or dead), and none can join ahead of it. A
reservation that does not queue (``otto reserve`` without ``--wait``) is
refused a free host someone waits for.

Hand-over: a release wakes the waiters at once (PostgreSQL: ``NOTIFY``; SQLite:
the file's change counter, read every 50-100 ms), and a lease or waiter that
expires wakes those behind it when it does.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence

from otto.errors import ReservationStoreError, ReservedError
from otto.reservations.base import (
    Grant,
    Lease,
    ReservationStore,
    Turn,
    Waiter,
    printable,
    reserved_message,
)

__all__ = ["StillQueued", "describe_turn", "parse_duration", "span", "wait_turn"]

log = logging.getLogger("otto.reservations")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``30m``, ``2h``, ``1d`` or a sum such as ``1h30m``.

    Raises:
        ValueError: the text is not such a duration, or is zero.
    """
    given = text.strip().lower().replace(" ", "")
    if not given or _DURATION_RE.sub("", given):
        raise ValueError(f"{text!r} is not a duration (write 90s, 30m, 2h, 1d or 1h30m)")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION_RE.findall(given))
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be more than 0s")
    return seconds


class StillQueued(ReservedError, TimeoutError):
    """The hosts did not come free before the wait's end; the waiter left the queue.

    ``leases`` are the leases in the way, ``ahead`` the earlier waiters, and
    ``position`` the waiter's place when it gave up.
    """

    def __init__(
        self,
        message: str,
        leases: Sequence[Lease] = (),
        ahead: Sequence[Waiter] = (),
        position: int = 0,
    ) -> None:
        super().__init__(message, leases)
        self.ahead = tuple(ahead)
        self.position = position


def span(seconds: float) -> str:
    """``1h30m``, ``10m``, ``90s`` -> ``1m30s``, ``0.2s``: a wait as people write it."""
    if seconds < 60:
        return f"{seconds:g}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)


def describe_turn(hosts: Sequence[str], turn: Turn) -> str:
    """Who holds which of ``hosts``, who waits before, and the place in the queue."""
    parts = [reserved_message(turn.leases)] if turn.leases else []
    parts += [f"before you in the queue: {w.describe()}" for w in turn.ahead]
    place = f"you are #{turn.position} in the queue" if turn.position else "you are in the queue"
    what = ", ".join(printable(h) for h in hosts)
    return f"waiting for {what}: " + "; ".join([*parts, place])


async def wait_turn(
    store: ReservationStore,
    hosts: Sequence[str],
    *,
    holder: str,
    claim: str,
    duration: float,
    heartbeat: float,
    timeout: float | None = None,
    note: str = "",
    run: str = "",
    on_wait: Callable[[Turn], None] | None = None,
) -> Grant:
    """Wait in the queue until ``hosts`` are leased to ``claim`` for ``duration`` seconds.

    Args:
        heartbeat: the waiter's place lasts this long between renewals (every
            third of it); a waiter that dies leaves the queue within it.
        timeout: seconds to wait; None waits as long as it takes.
        on_wait: called with the first look that found the hosts busy (to say
            that the caller waits, and behind whom).

    Raises:
        StillQueued: ``timeout`` passed (naming who holds what, and the place
            in the queue); the waiter has left the queue.
        ReservationStoreError: the store cannot be reached.

    A cancelled wait (Ctrl-C) leaves the queue before the cancellation goes on.
    """
    wanted = list(dict.fromkeys(hosts))
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    every = heartbeat / 3
    mark = await store.queue_mark()
    waiter = await store.enqueue(
        wanted, holder=holder, claim=claim, heartbeat=heartbeat, note=note, run=run
    )
    renewed = time.monotonic()
    told = False
    served = False
    try:
        renew = False
        while True:
            sent = time.monotonic()
            turn = await store.take_turn(
                waiter, duration=duration, heartbeat=heartbeat, renew=renew
            )
            if renew:
                renewed = sent
            if turn.grant is not None:
                served = True
                return turn.grant
            if not told and on_wait is not None:
                on_wait(turn)
            told = True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise StillQueued(
                    f"not free within {timeout:g}s: {describe_turn(wanted, turn)} (left the queue)",
                    turn.leases,
                    turn.ahead,
                    turn.position,
                )
            nap = max(renewed + every - now, 0.0)
            if turn.changes_in is not None:
                # A lease or waiter in the way expires then: look just after.
                nap = min(nap, turn.changes_in + 0.05)
            if deadline is not None:
                nap = min(nap, deadline - now)
            await store.queue_changed(mark, nap)
            mark = await store.queue_mark()
            renew = time.monotonic() >= renewed + every
    finally:
        if not served:
            # Also when cancelled: the waiters behind move up now, not a heartbeat later.
            try:
                await asyncio.shield(store.leave(waiter))
            except ReservationStoreError as exc:
                log.warning("could not leave the queue (the place expires on its own): %s", exc)
