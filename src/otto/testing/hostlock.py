"""Hosts held by one test at a time: across pytest-xdist workers, and across people.

A file lock per host (``fcntl.flock`` on ``<folder>/<host>.lock``) keeps the
workers of one run apart: the lock is the kernel's, so a worker that dies lets
go of its hosts at once. When the lab names a reservation store
(``settings.reservations``, or ``$OTTO_RESERVATIONS``), the hosts are also
reserved there with ``otto.reserve`` for as long as the test holds them
(renewed on otto's loop, so a worker that dies frees them when the lease
ends), and hosts someone else holds are passed over. Hosts the user reserved
by hand (``otto reserve``) count as theirs to test on. Callers only see
``hold_hosts``, and ``wait_for_hosts`` (``otto test --wait-hosts``): the run
waits in the store's queue for the hosts others hold, then holds them as the
user's own (renewed every third of a heartbeat) until the run ends.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from otto import loop as otto_loop
from otto.errors import ReservedError

if TYPE_CHECKING:
    from otto.lab import Lab
    from otto.reservations import ReservationStore, Turn

__all__ = ["HostsBusy", "RunHold", "hold_hosts", "wait_for_hosts", "wait_hosts_option"]

_RETRY = 0.05


class HostsBusy(TimeoutError):
    """Not enough of the hosts asked for became free in time."""


def _try_lock(folder: Path, name: str) -> int | None:
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class _Shared:
    """The lab's reservation store, used from otto's loop while hosts are held."""

    def __init__(self, lab: Lab, note: str) -> None:
        from otto.reservations import hand_claim, holder_identity, open_store

        self.lab = lab
        self.note = note
        self.store: ReservationStore = open_store(lab=lab)
        self.hand = hand_claim(holder_identity())
        self.mine: set[str] = set()

    def taken(self, names: Sequence[str]) -> set[str]:
        """Hosts held by anyone but the user's own hand reservations (one query)."""
        leases = otto_loop.run(self.store.leases(names))
        self.mine = {x.host for x in leases if x.claim == self.hand}
        return {x.host for x in leases if x.claim != self.hand}

    def reserve(self, names: Sequence[str]) -> AsyncExitStack:
        """Reserve ``names`` (but those already the user's) until the stack is closed."""
        from otto.reservations import reserve

        wanted = [n for n in names if n not in self.mine]

        async def enter() -> AsyncExitStack:
            stack = AsyncExitStack()
            if wanted:
                await stack.enter_async_context(
                    reserve(wanted, lab=self.lab, store=self.store, note=self.note)
                )
            return stack

        return otto_loop.run(enter())

    def close(self) -> None:
        otto_loop.run(self.store.close())


def _shared(lab: Lab | None, note: str) -> _Shared | None:
    from otto.reservations import ENV_VAR

    if lab is None or not (lab.reservations or os.environ.get(ENV_VAR, "").strip()):
        return None
    return _Shared(lab, note)


@contextmanager
def hold_hosts(
    names: Sequence[str],
    *,
    folder: Path,
    count: int | None = None,
    timeout: float | None = None,
    lab: Lab | None = None,
    note: str = "",
) -> Iterator[list[str]]:
    """Hold ``count`` of ``names`` (all of them by default) until the block ends.

    Hosts are taken in the order given; when too few are free, those taken are
    let go and the call waits for others to free theirs, so two callers never
    hold part of what each needs.

    Args:
        folder: where the lock files live (shared by every worker of a run).
        count: how many of ``names`` are needed.
        timeout: seconds to wait for them; None waits as long as it takes.
        lab: the lab of ``names``; when it names a reservation store (or
            ``$OTTO_RESERVATIONS`` does), the hosts are reserved there too.
        note: the reservation's note (the test's id).

    Yields:
        The names held.

    Raises:
        ValueError: ``count`` is more than the names given.
        HostsBusy: ``timeout`` passed before enough hosts were free.
        ReservationStoreError: the reservation store cannot be reached.
    """
    need = len(names) if count is None else count
    if need > len(names):
        raise ValueError(f"{need} hosts needed but only {len(names)} given: {', '.join(names)}")
    folder.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    shared = _shared(lab, note)
    held: dict[str, int] = {}
    reservation: AsyncExitStack | None = None
    try:
        while True:
            taken = shared.taken(names) if shared is not None else set()
            for name in names:
                if len(held) == need:
                    break
                if name in taken:
                    continue
                fd = _try_lock(folder, name)
                if fd is not None:
                    held[name] = fd
            if len(held) == need:
                if shared is None:
                    break
                try:
                    reservation = shared.reserve(list(held))
                    break
                except ReservedError:
                    pass  # taken since the query: start over
            for fd in held.values():
                os.close(fd)
            held.clear()
            if deadline is not None and time.monotonic() >= deadline:
                raise HostsBusy(
                    f"{need} of {', '.join(names)} not free within {timeout:g}s "
                    "(held by other workers, or reserved by others)"
                )
            time.sleep(_RETRY)
        yield list(held)
    finally:
        try:
            if reservation is not None:
                otto_loop.run(reservation.aclose())
        finally:
            for fd in held.values():
                os.close(fd)
            if shared is not None:
                shared.close()


def wait_hosts_option(text: str) -> float:
    """``--wait-hosts``'s value: ``90s``, ``10m``, ``1h30m``, or a number of seconds."""
    from otto.reservations.queue import parse_duration

    try:
        seconds = float(text)
    except ValueError:
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return seconds


class RunHold:
    """The hosts a run waited for, held as the user's own until ``close``."""

    def __init__(self, stack: AsyncExitStack, hosts: Sequence[str]) -> None:
        self._stack: AsyncExitStack | None = stack
        self.hosts = list(hosts)

    def close(self) -> None:
        """Release the hosts (once)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            otto_loop.run(stack.aclose())


def wait_for_hosts(
    lab: Lab,
    names: Sequence[str],
    *,
    timeout: float,
    say: Callable[[str], None] | None = None,
) -> RunHold:
    """Wait in the reservation queue, at most ``timeout`` seconds, for the ``names``
    that someone else holds or waits for; then hold them until ``RunHold.close``.

    They are held with the user's hand claim (``otto reserve``'s), so the
    tests take them as the user's own; the lease is a heartbeat, renewed on
    otto's loop, so a run that dies frees them within one.

    Args:
        say: told once, when the run has to wait, what it waits for and behind whom.

    Raises:
        StillQueued: ``timeout`` passed (the message names who holds what and
            the place in the queue); the run left the queue.
        ReservationStoreError: the store cannot be reached.
    """
    from otto.reservations import hand_claim, holder_identity, open_store, reserve
    from otto.reservations.queue import describe_turn

    store = open_store(lab=lab)
    mine = hand_claim(holder_identity())

    def waiting(turn: Turn) -> None:
        if say is not None:
            say(describe_turn(busy, turn))

    busy: list[str] = []

    async def enter() -> RunHold:
        stack = AsyncExitStack()
        stack.push_async_callback(store.close)
        try:
            leases = await store.leases(names)
            waiters = await store.waiters(names)
            others = {x.host for x in leases if x.claim != mine}
            others |= {h for w in waiters if w.claim != mine for h in w.hosts}
            busy.extend(n for n in names if n in others)
            if busy:
                await stack.enter_async_context(
                    reserve(
                        busy,
                        lab=lab,
                        store=store,
                        wait=timeout,
                        claim=mine,
                        note="otto test --wait-hosts",
                        on_wait=waiting,
                    )
                )
        except BaseException:
            await stack.aclose()
            raise
        return RunHold(stack, busy)

    return otto_loop.run(enter())
