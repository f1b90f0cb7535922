"""The PostgreSQL reservation store (asyncpg): one lab shared by many machines.

Each reservation is one statement in one transaction: ``INSERT ... ON
CONFLICT (host) DO UPDATE ... WHERE`` the old lease has expired or is the
caller's own. The primary key makes PostgreSQL serialize two claims on one
host (the second waits for the first to commit, then sees its row and leaves
it alone), so under any race exactly one claim gets the host. A claim that
did not get every host raises, rolling the whole transaction back. Lease times
are the server's ``now()``, never the client's clock.

Every call is bounded by ``timeout``; a connection that failed or timed out is
dropped and the next call reconnects, so a store that comes back is used again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from operator import attrgetter
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from otto import redact
from otto.errors import ReservationStoreError, ReservedError
from otto.reservations.base import (
    Grant,
    Lease,
    QueuedFor,
    ReservationStore,
    Turn,
    Waiter,
    check_labels,
    mask_url,
    reserved_message,
)

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.prepared_stmt import PreparedStatement

    from otto.hosts.deploy.records import Deployment

__all__ = ["CHANNEL", "DEPLOY_TABLE", "POLL", "QUEUE_TABLE", "TABLE", "TIMEOUT", "PostgresStore"]

T = TypeVar("T")

#: The table holding the leases.
TABLE = "otto_leases"
#: Seconds a connection or a call may take before the store counts as unreachable.
TIMEOUT = 5.0

_COLUMNS = "host, holder, since, until, note, run, claim"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    host   text PRIMARY KEY,
    holder text NOT NULL,
    claim  text NOT NULL,
    run    text NOT NULL,
    note   text NOT NULL,
    since  timestamptz NOT NULL,
    until  timestamptz NOT NULL
)
"""
#: The table of the queue for hosts: one row per waiter.
QUEUE_TABLE = "otto_waiters"
#: The channel a release or a waiter leaving notifies (LISTEN/NOTIFY): the queue wakes up.
CHANNEL = "otto_queue"
#: Seconds between two looks at the queue when no notification came (a release by an
#: older otto, a listener that could not be set up).
POLL = 1.0
_QUEUE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {QUEUE_TABLE} (
    ticket bigserial PRIMARY KEY,
    hosts  text[] NOT NULL,
    holder text NOT NULL,
    claim  text NOT NULL,
    run    text NOT NULL,
    note   text NOT NULL,
    since  timestamptz NOT NULL,
    until  timestamptz NOT NULL
)
"""
_WAITER_COLUMNS = "ticket, hosts, holder, claim, since, until, note, run"
_ENQUEUE = f"""
INSERT INTO {QUEUE_TABLE} (hosts, holder, claim, run, note, since, until)
VALUES ($1::text[], $2, $3, $4, $5, now(), now() + make_interval(secs => $6))
RETURNING {_WAITER_COLUMNS},
    (SELECT count(*) FROM {QUEUE_TABLE} WHERE until > now()) + 1
"""
# Purge the expired waiters; keep this one's place (again with its ticket if it was
# purged meanwhile).
_KEEP_PLACE = f"""
WITH purged AS (DELETE FROM {QUEUE_TABLE} WHERE until <= now() AND ticket <> $1)
INSERT INTO {QUEUE_TABLE} ({_WAITER_COLUMNS})
VALUES ($1, $2::text[], $3, $4, $5, now() + make_interval(secs => $6), $7, $8)
ON CONFLICT (ticket) DO UPDATE SET until = EXCLUDED.until
"""
# What stands in a waiter's way: the leases of other claims on its hosts (kind 'l'),
# and the earlier waiters wanting one of them (kind 'w'), with their positions.
_IN_THE_WAY_OF_WAITER = f"""
SELECT 'l', NULL::bigint, ARRAY[host], holder, claim, since, until, note, run, 0::bigint
FROM {TABLE} WHERE host = ANY($2::text[]) AND until > now() AND claim <> $3
UNION ALL
SELECT 'w', {_WAITER_COLUMNS},
    (SELECT count(*) FROM {QUEUE_TABLE} AS q WHERE q.ticket <= w.ticket AND q.until > now())
FROM {QUEUE_TABLE} AS w WHERE ticket < $1 AND until > now() AND hosts && $2::text[]
"""
_QUEUED = f"""
SELECT {_WAITER_COLUMNS},
    (SELECT count(*) FROM {QUEUE_TABLE} AS q WHERE q.ticket <= w.ticket AND q.until > now())
FROM {QUEUE_TABLE} AS w WHERE until > now() AND ($1::text[] IS NULL OR hosts && $1::text[])
    AND ($2::text IS NULL OR claim <> $2)
ORDER BY ticket
"""
_LEAVE = f"""
WITH gone AS (DELETE FROM {QUEUE_TABLE} WHERE ticket = $1)
SELECT pg_notify('{CHANNEL}', '')
"""
_RESERVE = f"""
INSERT INTO {TABLE} AS l ({_COLUMNS})
SELECT h, $2, now(), now() + make_interval(secs => $6), $4, $5, $3 FROM unnest($1::text[]) AS h
ON CONFLICT (host) DO UPDATE SET
    holder = EXCLUDED.holder, claim = EXCLUDED.claim, run = EXCLUDED.run, note = EXCLUDED.note,
    since = CASE WHEN l.claim = EXCLUDED.claim AND l.until > now() THEN l.since
                 ELSE EXCLUDED.since END,
    until = CASE WHEN l.claim = EXCLUDED.claim AND l.until > now()
                 THEN GREATEST(l.until, EXCLUDED.until) ELSE EXCLUDED.until END
WHERE $7 OR l.until <= now() OR l.claim = EXCLUDED.claim
RETURNING {_COLUMNS}, now()
"""
_IN_THE_WAY = f"""
SELECT {_COLUMNS} FROM {TABLE}
WHERE host = ANY($1::text[]) AND until > now() AND claim <> $2 ORDER BY host
"""
_RENEW = f"""
UPDATE {TABLE} SET until = now() + make_interval(secs => $3)
WHERE host = ANY($1::text[]) AND claim = $2 AND until > now()
RETURNING {_COLUMNS}, now()
"""
# Sorted by the client: the check before every action is this query, kept lean.
_LEASES_OF = f"SELECT {_COLUMNS} FROM {TABLE} WHERE host = ANY($1::text[]) AND until > now()"
_ALL_LEASES = f"SELECT {_COLUMNS} FROM {TABLE} WHERE until > now() ORDER BY host"

#: The table holding what ``host.deploy`` loaded where (made on first use).
DEPLOY_TABLE = "otto_deployments"
_DEPLOY_COLUMNS = "host, target, sha256, image, size, via, by_whom, at"
_DEPLOY_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {DEPLOY_TABLE} (
    host    text NOT NULL,
    target  text NOT NULL,
    sha256  text NOT NULL,
    image   text NOT NULL,
    size    bigint NOT NULL,
    via     text NOT NULL,
    by_whom text NOT NULL,
    at      timestamptz NOT NULL,
    PRIMARY KEY (host, target)
)
"""
_RECORD_DEPLOYMENT = f"""
INSERT INTO {DEPLOY_TABLE} ({_DEPLOY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, now())
ON CONFLICT (host, target) DO UPDATE SET sha256 = EXCLUDED.sha256, image = EXCLUDED.image,
    size = EXCLUDED.size, via = EXCLUDED.via, by_whom = EXCLUDED.by_whom, at = EXCLUDED.at
"""


def _passwords(url: str) -> list[str]:
    """The passwords a libpq URL holds: in its user info and as ``?password=``."""
    try:
        parts = urlsplit(url)
        given = [parts.password or ""]
    except ValueError:
        given = []
    query = url.partition("?")[2]
    given += [v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() == "password"]
    # As written (percent-escaped) and as sent.
    return [x for v in given if v for x in dict.fromkeys([v, unquote(v)])]


def _lease(row: Any) -> Lease:
    return Lease.from_row(row)


def _waiter(row: Any) -> Waiter:
    return Waiter(
        int(row[0]), tuple(row[1]), row[2], row[3], row[4], row[5], row[6], row[7], int(row[8])
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc).strip() or type(exc).__name__


class _Raced(Exception):
    """A waiter's grant found a host taken since it looked: the transaction is undone."""


_by_host = attrgetter("host")
#: How many hosts' leases the check keeps built.
_SEEN = 512
_from_row = Lease.from_row


class _Turns:
    """One call at a time on the store's connection, in the order they came: a lock.

    A free turn is taken by setting ``busy`` (the check before every action
    does that inline, with no coroutine of its own, where an ``asyncio.Lock``
    costs an ``acquire`` coroutine and a ``release`` per call). A turn given
    back while others wait passes straight to the first of them, so a caller
    arriving meanwhile cannot take it out of order.
    """

    __slots__ = ("busy", "waiting")

    def __init__(self) -> None:
        self.busy = False
        self.waiting: deque[asyncio.Future[None]] = deque()

    async def take(self) -> None:
        """Wait for the turn (first come, first served) and hold it."""
        if not self.busy:
            self.busy = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give()  # handed the turn as it was cancelled: pass it on
            elif turn in self.waiting:
                self.waiting.remove(turn)
            raise

    def give(self) -> None:
        """Give the turn back: to the first caller still waiting, else free it."""
        waiting = self.waiting
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.busy = False


class _LeasesOf:
    """``leases``' work on a connection being opened or in use (the slow path)."""

    def __init__(self, store: PostgresStore, hosts: Sequence[str] | None) -> None:
        self.store = store
        self.hosts = None if hosts is None else list(hosts)

    async def __call__(self, conn: asyncpg.Connection) -> list[Lease]:
        if self.hosts is None:
            rows = await conn.fetch(_ALL_LEASES)
            return [_from_row(r) for r in rows]
        store = self.store
        check = store._check
        if check is None:
            check = store._check = await conn.prepare(_LEASES_OF)
        try:
            rows = await check.fetch(self.hosts)
        except store._stale:
            # Prepared before the table changed: asyncpg's own path prepares it again.
            store._check = None
            rows = await conn.fetch(_LEASES_OF, self.hosts)
        return [_from_row(r) for r in rows]


class PostgresStore(ReservationStore):
    """Leases in a PostgreSQL table, ``otto_leases`` (created on first use).

    Args:
        url: ``postgresql://USER:PASSWORD@HOST:PORT/DB`` (as libpq takes it:
            an ``@`` in the password is written ``%40``).
        timeout: seconds a connection or a call may take before the store
            counts as unreachable (``ReservationStoreError``).

    Raises:
        ReservationStoreError: the URL has an ``@`` left unescaped in its user
            or password (the driver would cut the URL there).
    """

    def __init__(self, url: str, *, timeout: float = TIMEOUT) -> None:
        self.url = url
        # Registered, so that a message of the library below that quotes the
        # password (in any form) is masked wherever otto writes it.
        redact.register(*_passwords(url))
        netloc = url.partition("://")[2].partition("/")[0].partition("?")[0]
        if netloc.count("@") > 1:
            # asyncpg would split it at the first '@' and quote the rest back.
            raise ReservationStoreError(
                f"reservation store {self.where}: an '@' in the user or password must "
                "be written %40"
            )
        self.timeout = timeout
        self._conn: asyncpg.Connection | None = None
        # The check's query, prepared on ``_conn``: ``conn.fetch`` would look it up
        # in asyncpg's statement cache on every call, through three more coroutines.
        self._check: PreparedStatement | None = None
        self._turns = _Turns()
        # host -> (its last row, its Lease), for the check (see ``leases``).
        self._seen: dict[str, tuple[asyncpg.Record, Lease]] = {}
        self._closed = False
        self._due: float | None = None
        self._expired = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._deploy_table = False
        # What a failing call raises (the driver's, set when it is imported).
        self._failures: tuple[type[BaseException], ...] = (OSError, TimeoutError, ValueError)
        # What a prepared statement raises once the table it reads has changed.
        self._stale: tuple[type[BaseException], ...] = ()
        self._listener: asyncpg.Connection | None = None
        self._listening = False
        self._changes = 0
        self._wakers: set[asyncio.Future[None]] = set()

    def _unreachable(self, exc: BaseException) -> ReservationStoreError:
        # The library's message may quote the URL: only ever show it masked.
        reason = _reason(exc).replace(self.url, self.where)
        return ReservationStoreError(
            f"reservation store {self.where} is unreachable: {mask_url(reason)}"
        )

    async def _connect(self) -> asyncpg.Connection:
        import asyncpg

        if self._closed:
            raise ReservationStoreError(f"reservation store {self.where}: used after close()")
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._failures = (
            OSError,
            TimeoutError,
            ValueError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.InternalClientError,
        )
        self._stale = (
            asyncpg.exceptions.InvalidCachedStatementError,
            asyncpg.exceptions.OutdatedSchemaCacheError,
        )
        conn = await asyncpg.connect(self.url, timeout=self.timeout)
        try:
            exists = await conn.fetchval(
                f"SELECT to_regclass('{TABLE}') IS NOT NULL "
                f"AND to_regclass('{QUEUE_TABLE}') IS NOT NULL"
            )
            if not exists:
                async with conn.transaction():
                    # CREATE TABLE IF NOT EXISTS races with itself: take turns.
                    await conn.execute(f"SELECT pg_advisory_xact_lock(hashtext('{TABLE}'))")
                    await conn.execute(_SCHEMA)
                    await conn.execute(_QUEUE_SCHEMA)
        except BaseException:
            conn.terminate()
            raise
        if self._watchdog is not None:
            self._watchdog.cancel()  # perhaps of a loop that is gone: it would never fire
            self._watchdog = None
        self._conn = conn
        self._check = None
        return conn

    async def _call(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` on the connection, bounded by ``timeout``; translate failures.

        A call on an open connection is bounded by a watchdog that drops the
        connection when the call overstays (it then fails at once): one timer
        serves a whole burst of calls, where a timeout scope per call would
        cost more than the work of the check before an action.
        """
        import asyncpg

        turns = self._turns
        await turns.take()
        try:
            self._expired = False
            conn = self._conn
            if conn is None or conn.is_closed():
                async with asyncio.timeout(self.timeout):
                    conn = await self._connect()
            self._due = monotonic() + self.timeout
            if self._watchdog is None:
                self._arm()
            return await work(conn)
        except ReservedError:
            raise
        except (
            OSError,
            TimeoutError,
            ValueError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.InternalClientError,
        ) as exc:
            self._drop()
            raise self._unreachable(TimeoutError() if self._expired else exc) from None
        except BaseException:
            self._drop()  # cancelled mid-call: the connection's state is unknown
            raise
        finally:
            self._due = None
            turns.give()

    def _arm(self) -> None:
        """Start the watchdog: it fires ``timeout`` from now (see ``_watch``)."""
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self.timeout, self._watch, loop)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drop the connection of a call past its time; follow the call running now.

        A call sets ``_due`` (on ``time.monotonic``) and clears it when done; the
        one timer stays scheduled across calls and, when it fires before the
        running call's due time, is set again for it. Idle, it stops.
        """
        self._watchdog = None
        due = self._due
        if due is None:
            return  # idle: the next call arms it again
        left = due - monotonic()
        if left <= 0:
            self._expired = True
            self._drop()
        else:
            self._watchdog = loop.call_later(left, self._watch, loop)

    def _drop(self) -> None:
        self._check = None
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

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
        check_labels(holder=holder, note=note, run=run)
        wanted = list(dict.fromkeys(hosts))

        async def work(conn: asyncpg.Connection) -> Grant:
            async with conn.transaction():
                # Free hosts someone waits for in the queue are theirs first.
                queued = [] if force else await conn.fetch(_QUEUED, wanted, claim)
                rows = (
                    []
                    if queued
                    else await conn.fetch(
                        _RESERVE, wanted, holder, claim, note, run, float(duration), force
                    )
                )
                if len(rows) < len(wanted):
                    in_way = [_lease(r) for r in await conn.fetch(_IN_THE_WAY, wanted, claim)]
                    waiting = [_waiter(r) for r in queued]
                    message = reserved_message(in_way, waiting, wanted)
                    if waiting:
                        raise QueuedFor(message, in_way, waiting)
                    raise ReservedError(message, in_way)
            leases = sorted((_lease(r) for r in rows), key=lambda lease: lease.host)
            now: datetime = rows[0][7] if rows else await conn.fetchval("SELECT now()")
            return Grant(tuple(leases), now)

        return await self._call(work)

    async def renew(self, hosts: Sequence[str], *, claim: str, duration: float) -> Grant:
        wanted = list(dict.fromkeys(hosts))

        async def work(conn: asyncpg.Connection) -> Grant:
            rows = await conn.fetch(_RENEW, wanted, claim, float(duration))
            now: datetime = rows[0][7] if rows else await conn.fetchval("SELECT now()")
            leases = sorted((_lease(r) for r in rows), key=lambda lease: lease.host)
            return Grant(tuple(leases), now)

        return await self._call(work)

    async def release(
        self,
        hosts: Sequence[str] | None = None,
        *,
        claim: str | None = None,
        holder: str | None = None,
    ) -> list[Lease]:
        where: list[str] = []
        params: list[object] = []
        if hosts is not None:
            params.append(list(dict.fromkeys(hosts)))
            where.append(f"host = ANY(${len(params)}::text[])")
        if claim is not None:
            params.append(claim)
            where.append(f"claim = ${len(params)}")
        if holder is not None:
            params.append(holder)
            where.append(f"holder = ${len(params)}")
        condition = " AND ".join(where) or "true"

        async def work(conn: asyncpg.Connection) -> list[Lease]:
            async with conn.transaction():
                rows = await conn.fetch(
                    f"DELETE FROM {TABLE} WHERE {condition} "
                    f"RETURNING {_COLUMNS}, until > now() AS live",
                    *params,
                )
                # One round trip: purge, and wake the queue (delivered at commit).
                await conn.execute(f"DELETE FROM {TABLE} WHERE until <= now(); NOTIFY {CHANNEL}")
            return sorted((_lease(r) for r in rows if r[7]), key=lambda lease: lease.host)

        return await self._call(work)

    async def leases(self, hosts: Sequence[str] | None = None) -> list[Lease]:
        conn = self._conn
        check = self._check
        turns = self._turns
        if hosts is None or check is None or conn is None or turns.busy or conn.is_closed():
            found = await self._call(_LeasesOf(self, hosts))
        else:
            # The check before every action, on an open, idle connection: the same
            # turn, watchdog and failures as ``_call``, inline, so that the query
            # goes out with nothing in between (no closure, no nested coroutine).
            # (``_expired`` is cleared by ``_call``: a watchdog that fired dropped the
            # connection, so the next call goes there.)
            turns.busy = True
            self._due = monotonic() + self.timeout
            if self._watchdog is None:
                self._arm()
            try:
                rows = await check.fetch(list(hosts))
            except self._stale:
                self._check = None  # the table changed: prepared again below
                rows = None
            except self._failures as exc:
                self._drop()
                raise self._unreachable(TimeoutError() if self._expired else exc) from None
            except BaseException:
                self._drop()  # cancelled mid-call: the connection's state is unknown
                raise
            finally:
                self._due = None
                if turns.waiting:
                    turns.give()
                else:
                    turns.busy = False
            if not rows:
                if rows is None:
                    return await self.leases(hosts)
                return []  # the common case: nobody holds them
            # A held host answers the same row check after check (until a renewal):
            # its Lease, immutable, is built once.
            seen = self._seen
            found = []
            for row in rows:
                known = seen.get(row[0])
                if known is None or known[0] != row:
                    if len(seen) >= _SEEN:
                        seen.clear()
                    known = seen[row[0]] = (row, _from_row(row))
                found.append(known[1])
        if len(found) > 1:
            found.sort(key=_by_host)
        return found

    # --- the queue ------------------------------------------------------------------

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
        check_labels(holder=holder, note=note, run=run)
        wanted = list(dict.fromkeys(hosts))

        async def work(conn: asyncpg.Connection) -> Waiter:
            async with conn.transaction():
                # Tickets in the order the waiters' rows become visible: one at a time.
                await conn.execute(f"SELECT pg_advisory_xact_lock(hashtext('{QUEUE_TABLE}'))")
                row = await conn.fetchrow(
                    _ENQUEUE, wanted, holder, claim, run, note, float(heartbeat)
                )
            return _waiter(row)

        return await self._call(work)

    async def take_turn(
        self, waiter: Waiter, *, duration: float, heartbeat: float, renew: bool = True
    ) -> Turn:
        w = waiter
        wanted = list(w.hosts)

        async def work(conn: asyncpg.Connection) -> Turn:
            try:
                async with conn.transaction():
                    await conn.execute(
                        _KEEP_PLACE,
                        w.ticket,
                        wanted,
                        w.holder,
                        w.claim,
                        w.since,
                        float(heartbeat),
                        w.note,
                        w.run,
                    )
                    rows = await conn.fetch(_IN_THE_WAY_OF_WAITER, w.ticket, wanted, w.claim)
                    if not rows:
                        granted = await conn.fetch(
                            _RESERVE,
                            wanted,
                            w.holder,
                            w.claim,
                            w.note,
                            w.run,
                            float(duration),
                            False,
                        )
                        if len(granted) < len(wanted):
                            # A reservation that did not queue took a host since the
                            # look above: undo the part granted, look again.
                            raise _Raced
                        await conn.execute(f"DELETE FROM {QUEUE_TABLE} WHERE ticket = $1", w.ticket)
                        now: datetime = granted[0][7]
                        leases = sorted((_lease(r) for r in granted), key=lambda x: x.host)
                        return Turn(Grant(tuple(leases), now))
                    now = await conn.fetchval("SELECT now()")
            except _Raced:
                rows = await conn.fetch(_IN_THE_WAY_OF_WAITER, w.ticket, wanted, w.claim)
                now = await conn.fetchval("SELECT now()")
            leases = [
                Lease(r[2][0], r[3], r[5], r[6], r[7], r[8], r[4]) for r in rows if r[0] == "l"
            ]
            ahead = [_waiter(r[1:]) for r in rows if r[0] == "w"]
            ahead.sort(key=lambda x: x.ticket)
            ends = [r[6] for r in rows]
            changes_in = max((min(ends) - now).total_seconds(), 0.0) if ends else None
            return Turn(None, tuple(leases), tuple(ahead), len(ahead) + 1, changes_in)

        return await self._call(work)

    async def leave(self, waiter: Waiter) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            await conn.execute(_LEAVE, waiter.ticket)

        await self._call(work)

    async def waiters(self, hosts: Sequence[str] | None = None) -> list[Waiter]:
        async def work(conn: asyncpg.Connection) -> list[Waiter]:
            wanted = None if hosts is None else list(hosts)
            return [_waiter(r) for r in await conn.fetch(_QUEUED, wanted, None)]

        return await self._call(work)

    async def queue_mark(self) -> int:
        if not self._listening:
            await self._listen()
        return self._changes

    async def _listen(self) -> None:
        """Open the connection that LISTENs on ``CHANNEL``; without it the queue polls."""
        import asyncpg

        self._listening = True
        try:
            async with asyncio.timeout(self.timeout):
                conn = await asyncpg.connect(self.url, timeout=self.timeout)
                try:
                    await conn.add_listener(CHANNEL, self._notified)
                except BaseException:
                    conn.terminate()
                    raise
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # A pooler in transaction mode, say: polling every POLL seconds still works.
            return
        conn.add_termination_listener(self._listener_lost)
        self._listener = conn

    def _notified(self, *_: object) -> None:
        self._changes += 1
        for waker in self._wakers:
            if not waker.done():
                waker.set_result(None)

    def _listener_lost(self, *_: object) -> None:
        self._listener = None
        self._listening = False  # the next mark connects again
        self._notified()  # what happened meanwhile is unknown: look now

    async def queue_changed(self, mark: int, timeout: float) -> None:
        if self._changes != mark:
            return
        if self._listener is None:
            timeout = min(timeout, POLL)
        waker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakers.add(waker)
        try:
            async with asyncio.timeout(timeout):
                await waker
        except TimeoutError:
            pass
        finally:
            self._wakers.discard(waker)

    # --- deployments ---------------------------------------------------------------------

    async def _deploy_table_ready(self, conn: asyncpg.Connection) -> None:
        if self._deploy_table:
            return
        exists = await conn.fetchval(f"SELECT to_regclass('{DEPLOY_TABLE}') IS NOT NULL")
        if not exists:
            async with conn.transaction():
                # CREATE TABLE IF NOT EXISTS races with itself: take turns.
                await conn.execute(f"SELECT pg_advisory_xact_lock(hashtext('{DEPLOY_TABLE}'))")
                await conn.execute(_DEPLOY_SCHEMA)
        self._deploy_table = True

    async def deployment(self, host: str, target: str) -> Deployment | None:
        from otto.hosts.deploy.records import Deployment

        async def work(conn: asyncpg.Connection) -> Deployment | None:
            await self._deploy_table_ready(conn)
            row = await conn.fetchrow(
                f"SELECT {_DEPLOY_COLUMNS} FROM {DEPLOY_TABLE} WHERE host = $1 AND target = $2",
                host,
                target,
            )
            if row is None:
                return None
            return Deployment(row[0], row[1], row[2], row[3], int(row[4]), row[5], row[6], row[7])

        return await self._call(work)

    async def record_deployment(self, deployment: Deployment) -> None:
        d = deployment

        async def work(conn: asyncpg.Connection) -> None:
            await self._deploy_table_ready(conn)
            await conn.execute(
                _RECORD_DEPLOYMENT, d.host, d.target, d.sha256, d.image, d.size, d.via, d.by
            )

        await self._call(work)

    async def forget_deployment(self, host: str, target: str) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            await self._deploy_table_ready(conn)
            await conn.execute(
                f"DELETE FROM {DEPLOY_TABLE} WHERE host = $1 AND target = $2", host, target
            )

        await self._call(work)

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.remove_termination_listener(self._listener_lost)
            listener.terminate()
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            async with asyncio.timeout(self.timeout):
                await conn.close()
        except (OSError, TimeoutError, Exception):
            conn.terminate()
