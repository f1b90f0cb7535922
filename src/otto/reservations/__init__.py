"""Reservations: who holds which host of a shared lab, until when.

::

    async with otto.reserve(["board1", "board2"], duration=120, note="flash") as hosts:
        for host in hosts:
            await host.run("flash-firmware")

``otto.reserve`` takes every host or none, in one transaction of the store. The
lease in the store is a short heartbeat (``heartbeat``, 60 s by default, or
``duration`` when that is shorter), renewed every third of it while the block
runs; leaving the block releases it. A holder that dies stops renewing, and
its hosts are free within one heartbeat, whatever ``duration`` it asked for:
no stale locks. (``otto reserve --for 2h`` by hand has no process to renew
it: its lease is its fixed end.) If the store cannot be reached until
the lease's end, the lease is lost: from then on the hosts refuse every verb
(``LeaseLost``, naming the host and the store) rather than act on a host that
someone else may now hold.

The store is chosen by URL: the lab's ``settings.reservations``, else
``$OTTO_RESERVATIONS``, else a SQLite file in the user's data dir
(``${XDG_DATA_HOME:-~/.local/share}/otto/reservations.db``). ``sqlite:///PATH``
serves the processes of one machine; ``postgresql://USER:PASSWORD@HOST/DB``
serves a lab shared by many machines.

With ``wait``, a block whose hosts are held waits for them in the store's
queue, first come first served per host (see ``otto.reservations.queue``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from otto.errors import LabError, LeaseLost, ReservationStoreError
from otto.reservations.base import (
    HOLDER_ENV,
    RUN_ENV,
    Grant,
    Lease,
    QueuedFor,
    ReservationStore,
    Turn,
    Waiter,
    format_time,
    hand_claim,
    holder_identity,
    mask_url,
    reserved_message,
    run_identity,
)
from otto.reservations.queue import StillQueued, wait_turn

if TYPE_CHECKING:
    from otto.hosts import Host
    from otto.lab import Lab

__all__ = [
    "DEFAULT_HEARTBEAT",
    "ENV_VAR",
    "HEARTBEAT_ENV",
    "HOLDER_ENV",
    "RUN_ENV",
    "Grant",
    "Holding",
    "Lease",
    "QueuedFor",
    "ReservationStore",
    "StillQueued",
    "Turn",
    "Waiter",
    "format_time",
    "hand_claim",
    "heartbeat_seconds",
    "holder_identity",
    "mask_url",
    "open_store",
    "reserve",
    "reserved_message",
    "resolve_hosts",
    "run_identity",
    "store_url",
]

log = logging.getLogger("otto.reservations")

#: The environment variable naming the reservation store when the lab does not.
ENV_VAR = "OTTO_RESERVATIONS"

#: Lease length of ``otto.reserve`` when none is given (seconds).
DEFAULT_DURATION = 60.0
#: The longest a lease of ``otto.reserve`` lasts between renewals (seconds).
DEFAULT_HEARTBEAT = 60.0
#: The environment variable giving the heartbeat in seconds (default ``DEFAULT_HEARTBEAT``).
HEARTBEAT_ENV = "OTTO_HEARTBEAT"


def store_url(lab: Lab | None = None) -> str:
    """The store's URL: the lab's ``settings.reservations``, ``$OTTO_RESERVATIONS``, the default."""
    from otto.reservations.sqlite import default_path

    if lab is not None and lab.reservations:
        return lab.reservations
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return env
    return f"sqlite:///{default_path()}"


def open_store(url: str | None = None, *, lab: Lab | None = None) -> ReservationStore:
    """The store at ``url`` (see ``store_url`` when None); it connects on first use.

    Raises:
        ReservationStoreError: the URL names no backend otto has.
    """
    if url is None:
        url = store_url(lab)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from otto.reservations.sqlite import SQLiteStore, path_of_url

        return SQLiteStore(path_of_url(url), url=url)
    if scheme in ("postgresql", "postgres"):
        from otto.reservations.postgres import PostgresStore

        return PostgresStore(url)
    raise ReservationStoreError(
        f"reservation store {mask_url(url)}: unknown kind of URL "
        "(expected sqlite:///PATH or postgresql://...)"
    )


def heartbeat_seconds(given: float | timedelta | None = None) -> float:
    """The heartbeat: ``given``, else ``$OTTO_HEARTBEAT``, else ``DEFAULT_HEARTBEAT``.

    Raises:
        ValueError: it is not a positive number of seconds.
    """
    if given is None:
        text = os.environ.get(HEARTBEAT_ENV, "").strip()
        if not text:
            return DEFAULT_HEARTBEAT
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(f"${HEARTBEAT_ENV}: {text!r} is not a number of seconds") from None
        where = f"${HEARTBEAT_ENV}"
    else:
        seconds = given.total_seconds() if isinstance(given, timedelta) else float(given)
        where = "heartbeat"
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{where} must be a positive number of seconds, not {seconds:g}")
    return seconds


def resolve_hosts(lab: Lab, names_or_tags: str | Sequence[str]) -> list[str]:
    """Host names from names and tags: each item names a host, or every host with that tag.

    Raises:
        LabError: an item is neither a host of the lab nor a tag of one.
    """
    items = [names_or_tags] if isinstance(names_or_tags, str) else list(names_or_tags)
    names: list[str] = []
    for item in items:
        if item in lab:
            names.append(item)
            continue
        tagged = [spec.name for spec in lab.specs if item in spec.tags]
        if not tagged:
            raise LabError(
                f"no host or tag named {item!r} in the lab (hosts: {', '.join(lab.names)})"
            )
        names.extend(tagged)
    if not names:
        raise LabError("no host named to reserve")
    return list(dict.fromkeys(names))


class Holding:
    """The leases one ``otto.reserve`` block holds, and the check its hosts run.

    The hosts' guard is this object: before each verb it compares the
    monotonic clock with the moment the lease ends. That end is learnt from
    the store (``until - now`` on the store's clock) and counted from when the
    renewal was *sent*, so it is never later than the store's own.
    """

    def __init__(self, store: ReservationStore, hosts: Sequence[str], claim: str) -> None:
        self.store = store
        self.hosts = list(hosts)
        self.claim = claim
        self.leases: dict[str, Lease] = {}
        self._ends: dict[str, float] = {}
        self._lost: dict[str, str] = {}

    def granted(self, grant: Grant, sent: float) -> None:
        """Record the leases of a reserve or renew call sent at monotonic time ``sent``."""
        for lease in grant.leases:
            self.leases[lease.host] = lease
            self._ends[lease.host] = sent + (lease.until - grant.now).total_seconds()
        got = set(grant.hosts)
        for host in self.hosts:
            if host not in got and host not in self._lost:
                self.lose(
                    host, "the store no longer has its lease (released, or taken with --force)"
                )

    def lose(self, host: str, reason: str) -> None:
        """Mark ``host``'s lease lost; its verbs refuse from now on."""
        if host not in self._lost:
            self._lost[host] = reason
            log.error("%s: reservation lost in %s: %s", host, self.store.where, reason)

    def ends_in(self) -> float:
        """Seconds until the first lease held ends, by the monotonic clock."""
        now = time.monotonic()
        live = [end - now for host, end in self._ends.items() if host not in self._lost]
        return min(live, default=0.0)

    def lost(self, host: str) -> str | None:
        """Why ``host``'s lease is lost, or None while it is held."""
        reason = self._lost.get(host)
        if reason is None and time.monotonic() >= self._ends.get(host, 0.0):
            lease = self.leases.get(host)
            until = f" at {format_time(lease.until)}" if lease is not None else ""
            reason = f"its lease ended{until} before the store confirmed a renewal"
        return reason

    def __call__(self, host: Host) -> None:
        """The guard: raise ``LeaseLost`` if ``host``'s lease is no longer held."""
        if time.monotonic() < self._ends.get(host.name, 0.0) and host.name not in self._lost:
            return
        reason = self.lost(host.name)
        if reason is not None:
            raise LeaseLost(
                f"{host.name}: not acting on it: the reservation in {self.store.where} "
                f"was lost ({reason})"
            )


async def _renew(holding: Holding, duration: float) -> None:
    """Renew ``holding`` every third of ``duration``; retry sooner while the store fails."""
    every = duration / 3
    retry = min(1.0, every / 3)
    wait = every
    while True:
        await asyncio.sleep(wait)
        live = [h for h in holding.hosts if holding.lost(h) is None]
        if not live:
            log.error("every lease of this reservation is lost; renewal stops")
            return
        sent = time.monotonic()
        try:
            grant = await holding.store.renew(live, claim=holding.claim, duration=duration)
        except ReservationStoreError as exc:
            left = holding.ends_in()
            if left <= 0:
                for host in live:
                    holding.lose(host, f"could not renew it: {exc}")
                return
            log.warning("could not renew the reservation (%.1fs left): %s", left, exc)
            wait = min(retry, left)
            continue
        holding.granted(grant, sent)
        # Measured from the store's answer, not the requested duration.
        wait = max(min(every, holding.ends_in() / 3), 0.0)


@asynccontextmanager
async def reserve(
    names_or_tags: str | Sequence[str],
    *,
    duration: float | timedelta = DEFAULT_DURATION,
    note: str = "",
    lab: Lab | None = None,
    store: str | ReservationStore | None = None,
    heartbeat: float | timedelta | None = None,
    wait: bool | float | timedelta = False,
    claim: str | None = None,
    on_wait: Callable[[Turn], None] | None = None,
) -> AsyncIterator[list[Host]]:
    """Hold hosts for the block: every one of them or none, renewed while held.

    Args:
        names_or_tags: host names, or tags naming every host that has them.
        duration: the longest a lease lasts between renewals; the store's
            lease is the shorter of this and ``heartbeat``.
        note: shown beside the lease in ``otto reservations``.
        lab: the lab the names are in (default: the current lab).
        store: a store URL or an open store (default: see ``store_url``).
        heartbeat: the lease written to the store (default ``$OTTO_HEARTBEAT``,
            else 60 s), renewed every third of it: a holder that dies (even
            with SIGKILL) frees its hosts at most this long after its last
            renewal.

    Yields:
        The lab's host objects, in the order named.

    Raises:
        ReservedError: some hosts are held by someone else (naming them,
            their holder and until when); nothing was taken.
        StillQueued: ``wait`` seconds passed in the queue (a ``ReservedError``
            and a ``TimeoutError``, naming who holds what and the place in
            the queue); the waiter left the queue.
        ReservationStoreError: the store cannot be reached.
        LabError: a name is neither a host nor a tag of the lab.
    """
    from otto.lab import current_lab

    seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
    if not seconds > 0:
        raise ValueError(f"duration must be positive, not {seconds:g}s")
    # The lease a dead holder leaves behind: one heartbeat, never the whole duration.
    beat = heartbeat_seconds(heartbeat)
    lease = min(seconds, beat)
    if isinstance(wait, bool):
        patience: float | None = None if wait else -1.0
    else:
        patience = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
        if not patience >= 0:
            raise ValueError(f"wait must be 0 or more seconds, not {patience:g}")
    the_lab = lab if lab is not None else current_lab()
    names = resolve_hosts(the_lab, names_or_tags)
    owned = not isinstance(store, ReservationStore)
    the_store = store if isinstance(store, ReservationStore) else open_store(store, lab=the_lab)
    try:
        if claim is None:
            from uuid import uuid4  # here: a command that checks reservations does not need it

            claim = f"run:{run_identity()}:{uuid4().hex[:12]}"
        holding = Holding(the_store, names, claim)
        sent = time.monotonic()
        if patience is not None and patience < 0:
            grant = await the_store.reserve(
                names,
                holder=holder_identity(),
                claim=claim,
                duration=lease,
                note=note,
                run=run_identity(),
            )
        else:
            grant = await wait_turn(
                the_store,
                names,
                holder=holder_identity(),
                claim=claim,
                duration=lease,
                heartbeat=beat,
                timeout=patience,
                note=note,
                run=run_identity(),
                on_wait=on_wait,
            )
            sent = time.monotonic()  # the grant's "now" is the last look's
        holding.granted(grant, sent)
        hosts = [the_lab.host(name) for name in names]
        previous = [host.set_guard(holding) for host in hosts]
        renewing = asyncio.create_task(_renew(holding, lease), name=f"renew {','.join(names)}")
        try:
            yield hosts
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            for host, guard in zip(hosts, previous, strict=True):
                host.set_guard(guard)
            try:
                await the_store.release(names, claim=claim)
            except ReservationStoreError as exc:
                log.warning("could not release %s (it expires on its own): %s", names, exc)
    finally:
        if owned:
            await the_store.close()
