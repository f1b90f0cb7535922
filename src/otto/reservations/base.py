"""What every reservation store offers, and who is asking.

A lease says that ``holder`` holds ``host`` from ``since`` until ``until``.
Every time in a lease comes from the store's own clock (SQLite's, or the
PostgreSQL server's), never from the client's, so a client whose clock is
wrong or jumps can neither shorten nor stretch anyone's lease. A lease belongs
to one *claim*: the ``otto.reserve`` block that took it, or, for reservations
made by hand with ``otto reserve``, the holder's hand claim; only that claim
renews or releases it, and a host whose lease has not expired can be taken by
no other claim.
"""

from __future__ import annotations

import abc
import getpass
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

from otto.errors import ReservedError

if TYPE_CHECKING:
    from otto.hosts.deploy.records import Deployment

__all__ = [
    "HOLDER_ENV",
    "RUN_ENV",
    "Grant",
    "Lease",
    "QueuedFor",
    "ReservationStore",
    "Turn",
    "Waiter",
    "check_labels",
    "check_text",
    "format_time",
    "hand_claim",
    "holder_identity",
    "mask_url",
    "printable",
    "reserved_message",
    "run_identity",
]

#: The environment variable naming the holder (default ``login@machine``).
HOLDER_ENV = "OTTO_USER"
#: The environment variable naming the run that holds a lease (default ``machine:pid``).
RUN_ENV = "OTTO_RUN"

# Control characters (C0, DEL, C1), line and paragraph separators, and the
# bidirectional overrides: what can move a terminal's cursor, retitle its
# window, clear its screen, forge a line or reorder what a person reads.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def holder_identity() -> str:
    """Who is reserving: ``$OTTO_USER``, else ``login@machine``."""
    given = os.environ.get(HOLDER_ENV, "").strip()
    if given:
        return given
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = str(os.getuid())
    return f"{login}@{socket.gethostname()}"


def run_identity() -> str:
    """The run holding a lease: ``$OTTO_RUN``, else ``machine:pid``."""
    given = os.environ.get(RUN_ENV, "").strip()
    return given or f"{socket.gethostname()}:{os.getpid()}"


def hand_claim(holder: str) -> str:
    """The claim of the reservations ``holder`` makes by hand (``otto reserve``)."""
    return f"hand:{holder}"


def mask_url(url: str) -> str:
    """``url`` with its password masked (``user:pw@`` and ``?password=``), for messages."""
    from otto import redact

    return redact.redact(url)


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\n``), safe to print.

    A holder or note written by another program (or an older otto) could
    otherwise clear the reader's screen or forge a row of a listing.
    """
    return _CONTROL_RE.sub(_escape, text)


def _escape(m: re.Match[str]) -> str:
    char = m.group()
    code = ord(char)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named is not None:
        return named
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def check_text(what: str, text: str) -> None:
    """Refuse a holder, note or run name that holds a control character.

    Raises:
        ValueError: naming ``what``, with the text escaped.
    """
    if _CONTROL_RE.search(text):
        raise ValueError(
            f"{what} '{printable(text)}' holds a control character "
            "(escapes, newlines and tabs are not allowed)"
        )


def format_time(when: datetime) -> str:
    """``2026-12-01 17:00:00Z``: a lease time as people read it (UTC)."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def check_labels(*, holder: str, note: str, run: str) -> None:
    """``check_text`` on what a reservation writes beside the host.

    Raises:
        ValueError: one of them holds a control character.
    """
    check_text("holder ($OTTO_USER)", holder)
    check_text("note", note)
    check_text("run ($OTTO_RUN)", run)


@dataclass(frozen=True)
class Lease:
    """One host held by one holder, with times from the store's clock (UTC)."""

    host: str
    holder: str
    since: datetime
    until: datetime
    note: str = ""
    run: str = ""
    """The run that took it (``$OTTO_RUN``, or ``machine:pid``)."""
    claim: str = ""
    """The claim that owns it: only that claim renews or releases it."""

    @classmethod
    def from_row(cls, row: Sequence[object]) -> Lease:
        """The lease of a store's row: (host, holder, since, until, note, run, claim).

        The check before every action builds one per held host: this skips the
        frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field,
        most of the check's own cost) and fills the same fields.
        """
        lease = object.__new__(cls)
        fields = lease.__dict__
        (
            fields["host"],
            fields["holder"],
            fields["since"],
            fields["until"],
            fields["note"],
            fields["run"],
            fields["claim"],
        ) = row[:7]
        return lease

    def describe(self) -> str:
        """``bob@ci until 2026-12-01 17:00:00Z (note)``, for messages."""
        text = f"{printable(self.holder)} until {format_time(self.until)}"
        return f"{text} ({printable(self.note)})" if self.note else text


@dataclass(frozen=True)
class Grant:
    """What a reserve or renew call got: the leases, and the store's time when it ran.

    ``now`` lets the holder know how long its leases last without trusting its
    own clock: ``until - now`` is measured on the store's clock.
    """

    leases: tuple[Lease, ...]
    now: datetime

    @property
    def hosts(self) -> list[str]:
        """The hosts granted."""
        return [lease.host for lease in self.leases]


@dataclass(frozen=True)
class Waiter:
    """One place in the queue for hosts: who waits for which hosts, since when.

    ``ticket`` orders the queue (the store hands them out in the order the
    waiters arrived); ``until`` is the waiter's heartbeat: a waiter whose
    process died is ignored once it has passed, and purged.
    """

    ticket: int
    hosts: tuple[str, ...]
    holder: str
    claim: str
    """The claim the hosts are granted to when the waiter's turn comes."""
    since: datetime
    until: datetime
    note: str = ""
    run: str = ""
    position: int = 0
    """The place in the whole queue, in order of arrival (1 = first; 0 when not known)."""

    def describe(self) -> str:
        """``#2 bob@ci waiting since 2026-12-01 17:00:00Z for web1, web2``, for messages."""
        hosts = ", ".join(printable(h) for h in self.hosts)
        place = f"#{self.position} " if self.position else ""
        since = format_time(self.since)
        return f"{place}{printable(self.holder)} waiting since {since} for {hosts}"


class QueuedFor(ReservedError):
    """Some hosts are free, but waiters in the queue asked for them first.

    ``waiters`` are those waiters; ``leases`` the leases in the way, if any.
    """

    def __init__(
        self, message: str, leases: Sequence[Lease] = (), waiters: Sequence[Waiter] = ()
    ) -> None:
        super().__init__(message, leases)
        self.waiters = tuple(waiters)


@dataclass(frozen=True)
class Turn:
    """What one look at the queue found for a waiter.

    ``grant`` is set when the waiter's turn came: its hosts are now leased to
    its claim and it has left the queue. Otherwise ``leases`` are the leases in
    its way and ``ahead`` the earlier waiters that want some of its hosts.
    """

    grant: Grant | None
    leases: tuple[Lease, ...] = ()
    ahead: tuple[Waiter, ...] = ()
    position: int = 0
    """The waiter's place among those who want some of its hosts (1 = next)."""
    changes_in: float | None = None
    """Seconds (store clock) until the first lease or waiter in the way expires."""


class ReservationStore(abc.ABC):
    """Where leases live. One instance is used from one event loop at a time.

    Every method raises ``ReservationStoreError`` (naming the store) when the
    store cannot be reached or used.
    """

    url: str
    """The URL the store was opened with (``where`` for messages)."""

    @property
    def where(self) -> str:
        """The store's URL with any password masked."""
        return mask_url(self.url)

    @abc.abstractmethod
    async def reserve(
        self,
        hosts: Sequence[str],
        *,
        holder: str,
        claim: str,
        duration: float,
        note: str = "",
        run: str = "",
        force: bool = False,
    ) -> Grant:
        """Take every one of ``hosts`` for ``duration`` seconds, or none, in one transaction.

        A host already held by ``claim`` is extended (its ``since`` kept, its
        end never moved earlier). With ``force``, hosts held by other claims
        are taken from them.

        Raises:
            ReservedError: some hosts are held by other claims (``leases`` lists
                them); nothing was taken.
            ValueError: ``holder``, ``note`` or ``run`` holds a control character
                (see ``check_text``).
        """

    @abc.abstractmethod
    async def renew(self, hosts: Sequence[str], *, claim: str, duration: float) -> Grant:
        """Extend ``claim``'s unexpired leases on ``hosts`` to ``duration`` seconds from now.

        A host missing from the result was lost: its lease expired, was
        released, or was taken with ``--force``.
        """

    @abc.abstractmethod
    async def release(
        self,
        hosts: Sequence[str] | None = None,
        *,
        claim: str | None = None,
        holder: str | None = None,
    ) -> list[Lease]:
        """End leases: those of ``claim``, or of ``holder``, on ``hosts`` (all if None).

        With neither ``claim`` nor ``holder``, the leases on ``hosts`` whoever
        holds them. Returns the unexpired leases ended.
        """

    @abc.abstractmethod
    async def leases(self, hosts: Sequence[str] | None = None) -> list[Lease]:
        """The unexpired leases on ``hosts`` (every host if None), in one query, by host."""

    async def lookup(self, host: str) -> Lease | None:
        """The unexpired lease on ``host``, if any."""
        found = await self.leases([host])
        return found[0] if found else None

    async def conflicts(self, hosts: Sequence[str], holder: str) -> list[Lease]:
        """The unexpired leases on ``hosts`` that someone other than ``holder`` holds."""
        return [lease for lease in await self.leases(hosts) if lease.holder != holder]

    # --- the queue for hosts (see otto.reservations.queue) ------------------------------

    @abc.abstractmethod
    async def enqueue(
        self,
        hosts: Sequence[str],
        *,
        holder: str,
        claim: str,
        heartbeat: float,
        note: str = "",
        run: str = "",
    ) -> Waiter:
        """Join the end of the queue for ``hosts``; the place lasts ``heartbeat`` seconds.

        Raises:
            ValueError: ``holder``, ``note`` or ``run`` holds a control character.
        """

    @abc.abstractmethod
    async def take_turn(
        self, waiter: Waiter, *, duration: float, heartbeat: float, renew: bool = True
    ) -> Turn:
        """Take ``waiter``'s hosts for ``duration`` seconds if its turn has come.

        Its turn has come when no other claim holds an unexpired lease on any
        of its hosts and no unexpired waiter that arrived earlier wants any of
        them (strict first come, first served per host). Then, in one
        transaction, the hosts are leased to ``waiter.claim`` and the waiter
        leaves the queue. Otherwise its place is kept, and with ``renew`` its
        heartbeat is renewed (a place purged meanwhile is taken again with its
        old ticket). Expired waiters are purged.
        """

    @abc.abstractmethod
    async def leave(self, waiter: Waiter) -> None:
        """Leave the queue (Ctrl-C, a timeout): the waiters behind move up at once."""

    @abc.abstractmethod
    async def waiters(self, hosts: Sequence[str] | None = None) -> list[Waiter]:
        """The unexpired waiters (those wanting one of ``hosts``, if given), first first."""

    async def queue_mark(self) -> int:
        """A mark of the queue's state now, for ``queue_changed``."""
        return 0

    async def queue_changed(self, mark: int, timeout: float) -> None:
        """Return when the leases or the queue may have changed since ``mark``, or after
        ``timeout`` seconds. This default only waits ``timeout`` (polling)."""
        import asyncio

        await asyncio.sleep(timeout)

    # --- deployments (what ``host.deploy`` loaded where; see otto.hosts.deploy) -------

    @abc.abstractmethod
    async def deployment(self, host: str, target: str) -> Deployment | None:
        """The last image recorded on ``host`` at ``target`` (an address or a path), if any."""

    @abc.abstractmethod
    async def record_deployment(self, deployment: Deployment) -> None:
        """Record ``deployment`` (its time from the store's clock), replacing the old one."""

    @abc.abstractmethod
    async def forget_deployment(self, host: str, target: str) -> None:
        """Drop the record of ``host`` at ``target``: what is there is no longer known."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""

    async def __aenter__(self) -> ReservationStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r})"


def utc(seconds: float) -> datetime:
    """A store's Unix time as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def reserved_message(
    leases: Sequence[Lease], queued: Sequence[Waiter] = (), wanted: Sequence[str] = ()
) -> str:
    """``web1: reserved by bob@ci until ...; web2: ...``: who holds what, for an error.

    ``queued`` are waiters who asked first for hosts that are free now: the
    hosts are theirs before anyone's who does not wait in the queue. Only
    their hosts among ``wanted`` (all of them when empty) are named.
    """
    parts = [f"{printable(lease.host)}: reserved by {lease.describe()}" for lease in leases]
    held = {lease.host for lease in leases}
    for waiter in queued:
        free = [h for h in waiter.hosts if h not in held and (not wanted or h in wanted)]
        if free:
            names = ", ".join(printable(h) for h in free)
            parts.append(f"{names}: promised to the queue: {waiter.describe()}")
            held.update(free)
    return "; ".join(parts)
