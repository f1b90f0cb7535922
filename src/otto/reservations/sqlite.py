"""The SQLite reservation store: one file, safe across the processes of one machine.

Every write is one ``BEGIN IMMEDIATE`` transaction: SQLite's write lock is
taken before anything is read, so two processes reserving at once are
serialized by SQLite itself, and the second sees what the first wrote. Waiting
for the lock is bounded by a busy timeout. The file is in WAL mode, so readers
(the check before every action) never wait for a writer. Lease times are
SQLite's ``julianday('now')``, computed in SQL, never the client's clock.

Writes run in a worker thread so that waiting for the lock never blocks the
event loop; reads are short and run inline.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

from otto.errors import ReservationStoreError, ReservedError
from otto.reservations.base import (
    Grant,
    Lease,
    QueuedFor,
    ReservationStore,
    Turn,
    Waiter,
    check_labels,
    reserved_message,
    utc,
)

if TYPE_CHECKING:
    from otto.hosts.deploy.records import Deployment

__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT", "SQLiteStore", "default_path", "path_of_url"]

T = TypeVar("T")

#: Marks a SQLite file as otto's reservation store (``PRAGMA application_id``).
APPLICATION_ID = 0x6F74_5472
#: Seconds a write waits for another process's write lock before giving up.
BUSY_TIMEOUT = 10.0

# Unix time on SQLite's clock, with its millisecond resolution.
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_COLUMNS = "host, holder, since, until, note, run, claim"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    host   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    claim  TEXT NOT NULL,
    run    TEXT NOT NULL,
    note   TEXT NOT NULL,
    since  REAL NOT NULL,
    until  REAL NOT NULL
) WITHOUT ROWID
"""
_IN_HOSTS = "host IN (SELECT value FROM json_each(?))"
# What host.deploy loaded where; made on the first record (stores made before it lack it).
_DEPLOY_SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    host   TEXT NOT NULL,
    target TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    image  TEXT NOT NULL,
    size   INTEGER NOT NULL,
    via    TEXT NOT NULL,
    by     TEXT NOT NULL,
    at     REAL NOT NULL,
    PRIMARY KEY (host, target)
) WITHOUT ROWID
"""
_DEPLOY_COLUMNS = "host, target, sha256, image, size, via, by, at"

# The queue for hosts (otto.reservations.queue): one row per waiter, ``hosts`` a JSON
# list; made on first use (stores made before it lack it).
_QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS waiters (
    ticket INTEGER PRIMARY KEY AUTOINCREMENT,
    hosts  TEXT NOT NULL,
    holder TEXT NOT NULL,
    claim  TEXT NOT NULL,
    run    TEXT NOT NULL,
    note   TEXT NOT NULL,
    since  REAL NOT NULL,
    until  REAL NOT NULL
)
"""
_WAITER_COLUMNS = "ticket, hosts, holder, claim, since, until, note, run"
# A waiter wanting one of the hosts of the JSON list given.
_WANTS = (
    "EXISTS (SELECT 1 FROM json_each(waiters.hosts) AS j "
    "WHERE j.value IN (SELECT value FROM json_each(?)))"
)
#: Seconds between two looks at the store's change counter while waiting, at first ...
POLL_FIRST = 0.05
#: ... growing by half each time up to this (a hand-over takes at most this long to be seen).
POLL_CAP = 0.1

Row = tuple[str, str, float, float, str, str, str]


def default_path() -> Path:
    """``${XDG_DATA_HOME:-~/.local/share}/otto/reservations.db``."""
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    root = Path(base) if base else Path.home() / ".local" / "share"
    return root / "otto" / "reservations.db"


def path_of_url(url: str) -> Path:
    """The file of a ``sqlite:///PATH`` URL: ``sqlite:////abs/file`` or ``sqlite:///rel``.

    Everything after ``sqlite:///`` is the path as written (no ``?`` or ``#``
    parts, no %-escapes), so any file name can be given.
    """
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix):
        raise ReservationStoreError(f"{url}: not a sqlite:///PATH URL")
    path = url[len(prefix) :]
    if not path:
        raise ReservationStoreError(f"{url}: no file named (write sqlite:///PATH)")
    return Path(path).expanduser()


def _lease(row: Row) -> Lease:
    host, holder, since, until, note, run, claim = row
    return Lease.from_row((host, holder, utc(since), utc(until), note, run, claim))


def _waiter(row: tuple[object, ...], position: int = 0) -> Waiter:
    ticket, hosts, holder, claim, since, until, note, run = row
    assert isinstance(hosts, str)
    return Waiter(
        int(str(ticket)),
        tuple(json.loads(hosts)),
        str(holder),
        str(claim),
        utc(float(str(since))),
        utc(float(str(until))),
        str(note),
        str(run),
        position,
    )


def _grant_sql() -> str:
    """Lease every host of a JSON list to one claim (its own leases extended, never shortened)."""
    return (
        f"INSERT INTO leases ({_COLUMNS}) "
        "SELECT value, ?, ?, ?, ?, ?, ? FROM json_each(?) WHERE true "
        "ON CONFLICT(host) DO UPDATE SET holder = excluded.holder, "
        "claim = excluded.claim, run = excluded.run, note = excluded.note, "
        "since = CASE WHEN leases.claim = excluded.claim AND leases.until > ? "
        "THEN leases.since ELSE excluded.since END, "
        "until = CASE WHEN leases.claim = excluded.claim AND leases.until > ? "
        "THEN max(leases.until, excluded.until) ELSE excluded.until END"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.Error):
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


class SQLiteStore(ReservationStore):
    """Leases in a SQLite file (created, with its folder, on the first reservation).

    Reading a store whose file does not exist yet finds no leases and creates
    nothing, so checking before an action never writes to the user's data dir.
    """

    def __init__(self, path: str | os.PathLike[str], *, url: str | None = None) -> None:
        self.path = Path(path)
        self.url = url if url is not None else f"sqlite:///{self.path}"
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()
        self._closed = False

    # --- opening --------------------------------------------------------------------

    def _fail(self, what: str, exc: BaseException) -> ReservationStoreError:
        return ReservationStoreError(
            f"reservation store {self.path}: {what}: {_reason(exc)}{self._cause(exc)}"
        )

    def _cause(self, exc: BaseException) -> str:
        """What lies behind a SQLite error about the disk, and that nothing is lost."""
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:
            return ""
        code &= 0xFF  # the primary code of an extended one
        kept = "the reservations in it are kept"
        folder = self.path.parent
        if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _full(folder)):
            return f" (the disk holding {folder} is full: free some space; {kept})"
        if code == sqlite3.SQLITE_READONLY or _read_only_fs(folder):
            return f" (the file or its file system is read-only; {kept})"
        if code == sqlite3.SQLITE_IOERR:
            return f" (the disk holding {folder} failed a read or write; {kept})"
        return ""

    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        """The open connection; None when the file does not exist and ``create`` is false."""
        if self._closed:
            raise ReservationStoreError(f"reservation store {self.path}: used after close()")
        if self._conn is not None:
            return self._conn
        if not create and not self.path.exists():
            return None
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ReservationStoreError(
                    f"reservation store {self.path}: cannot create its folder "
                    f"{self.path.parent}: {_reason(exc)}"
                ) from None
        mode = "rwc" if create else "rw"
        uri = f"file:{quote(str(self.path.absolute()))}?mode={mode}"
        try:
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._cannot_open(exc) from None
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _cannot_open(self, exc: BaseException) -> ReservationStoreError:
        folder = self.path.parent
        if not os.access(folder, os.W_OK) or _read_only_fs(folder):
            return ReservationStoreError(
                f"reservation store {self.path}: cannot open it: its folder {folder} "
                f"is read-only ({_reason(exc)}); set $OTTO_RESERVATIONS or the lab's "
                "settings.reservations to a writable place"
            )
        return self._fail("cannot open it", exc)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Check that the file is otto's store, and create the table in a new file.

        Nothing is written to a file that holds anything else.
        """
        try:
            state = self._state(conn)
        except sqlite3.DatabaseError as exc:
            if _corrupt(exc):
                raise ReservationStoreError(
                    f"reservation store {self.path}: not a readable SQLite database "
                    f"({_reason(exc)}); the file is left as it is: move it away to start afresh"
                ) from None
            # A full or failing disk is no reason to throw the reservations away.
            raise self._fail("cannot read it", exc) from None
        if state == "otto":
            return
        # Processes creating the file at once: switching to WAL answers "locked"
        # without waiting (SQLite does not wait there), so this waits instead.
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                self._create(conn)
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() > deadline:
                    raise self._cannot_open(exc) from None
            except sqlite3.Error as exc:
                raise self._cannot_open(exc) from None
            time.sleep(0.01)

    def _create(self, conn: sqlite3.Connection) -> None:
        """Make a new file otto's store: WAL, the table, the mark."""
        # WAL lets the check before an action read while another process writes.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Again under the write lock: another process may have just made it.
            if self._state(conn) == "empty":
                conn.execute(_SCHEMA)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _state(self, conn: sqlite3.Connection) -> str:
        """``otto`` (the store), ``empty`` (a new file); raises for anything else."""
        # One read transaction: the store's table and mark are made in one, too.
        outer = conn.in_transaction
        if not outer:
            conn.execute("BEGIN")
        try:
            (app_id,) = conn.execute("PRAGMA application_id").fetchone()
            (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except BaseException:
            # SQLite may have ended the transaction itself (an I/O error): the
            # error to report is this one, not a failed COMMIT after it.
            if not outer and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if not outer:
            conn.execute("COMMIT")
        if app_id == APPLICATION_ID:
            return "otto"
        if app_id == 0 and not tables:
            return "empty"
        raise ReservationStoreError(
            f"reservation store {self.path}: a SQLite database, but not otto's "
            "reservation store; the file is left as it is"
        )

    # --- running statements ------------------------------------------------------------

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction, in a worker thread."""

        def run() -> T:
            with self._thread_lock:
                conn = self._connect(create=True)
                assert conn is not None
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = work(conn)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                    return result
                except sqlite3.Error as exc:
                    raise self._fail("cannot write to it", exc) from None

        async with self._lock:
            return await asyncio.to_thread(run)

    @staticmethod
    def _now(conn: sqlite3.Connection) -> float:
        (now,) = conn.execute(f"SELECT {_NOW}").fetchone()
        return float(now)

    @staticmethod
    def _rows(conn: sqlite3.Connection, hosts_json: str, now: float) -> list[Lease]:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM leases WHERE {_IN_HOSTS} AND until > ? ORDER BY host",
            (hosts_json, now),
        ).fetchall()
        return [_lease(r) for r in rows]

    # --- the store's verbs --------------------------------------------------------------------

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
        wanted = json.dumps(list(dict.fromkeys(hosts)))

        def work(conn: sqlite3.Connection) -> Grant:
            now = self._now(conn)
            if not force:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM leases WHERE {_IN_HOSTS} "
                    "AND until > ? AND claim != ? ORDER BY host",
                    (wanted, now, claim),
                ).fetchall()
                taken = [_lease(r) for r in rows]
                # Free hosts someone waits for in the queue are theirs first.
                queued = self._queued(conn, wanted, now, claim=claim)
                message = reserved_message(taken, queued, json.loads(wanted))
                if queued:
                    raise QueuedFor(message, taken, queued)
                if taken:
                    raise ReservedError(message, taken)
            conn.execute(
                _grant_sql(), (holder, now, now + duration, note, run, claim, wanted, now, now)
            )
            return Grant(tuple(self._rows(conn, wanted, now)), utc(now))

        return await self._write(work)

    async def renew(self, hosts: Sequence[str], *, claim: str, duration: float) -> Grant:
        wanted = json.dumps(list(dict.fromkeys(hosts)))

        def work(conn: sqlite3.Connection) -> Grant:
            now = self._now(conn)
            conn.execute(
                f"UPDATE leases SET until = ? WHERE {_IN_HOSTS} AND claim = ? AND until > ?",
                (now + duration, wanted, claim, now),
            )
            mine = [lease for lease in self._rows(conn, wanted, now) if lease.claim == claim]
            return Grant(tuple(mine), utc(now))

        return await self._write(work)

    async def release(
        self,
        hosts: Sequence[str] | None = None,
        *,
        claim: str | None = None,
        holder: str | None = None,
    ) -> list[Lease]:
        if self._conn is None and not self.path.exists():
            return []  # nothing was ever reserved here
        where = ["1 = 1"]
        params: list[object] = []
        if hosts is not None:
            where.append(_IN_HOSTS)
            params.append(json.dumps(list(dict.fromkeys(hosts))))
        if claim is not None:
            where.append("claim = ?")
            params.append(claim)
        if holder is not None:
            where.append("holder = ?")
            params.append(holder)
        condition = " AND ".join(where)

        def work(conn: sqlite3.Connection) -> list[Lease]:
            now = self._now(conn)
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM leases WHERE {condition} AND until > ? ORDER BY host",
                (*params, now),
            ).fetchall()
            conn.execute(f"DELETE FROM leases WHERE {condition}", params)
            # Expired leases are of no use to anyone: drop them while the lock is held.
            conn.execute("DELETE FROM leases WHERE until <= ?", (now,))
            return [_lease(r) for r in rows]

        return await self._write(work)

    # --- the queue ------------------------------------------------------------------

    @staticmethod
    def _queued(
        conn: sqlite3.Connection,
        wanted: str,
        now: float,
        *,
        claim: str | None = None,
        before: int | None = None,
    ) -> list[Waiter]:
        """Unexpired waiters wanting one of ``wanted`` (other claims', or before ``before``)."""
        where = ["until > ?", _WANTS]
        params: list[object] = [now, wanted]
        if claim is not None:
            where.append("claim != ?")
            params.append(claim)
        if before is not None:
            where.append("ticket < ?")
            params.append(before)
        try:
            rows = conn.execute(
                f"SELECT {_WAITER_COLUMNS}, (SELECT count(*) FROM waiters AS w "
                "WHERE w.ticket <= waiters.ticket AND w.until > ?) "
                f"FROM waiters WHERE {' AND '.join(where)} ORDER BY ticket",
                (now, *params),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # no one ever waited in this store
            raise
        return [_waiter(r[:8], int(r[8])) for r in rows]

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
        wanted = json.dumps(list(dict.fromkeys(hosts)))

        def work(conn: sqlite3.Connection) -> Waiter:
            conn.execute(_QUEUE_SCHEMA)
            now = self._now(conn)
            conn.execute("DELETE FROM waiters WHERE until <= ?", (now,))
            (ticket,) = conn.execute(
                "INSERT INTO waiters (hosts, holder, claim, run, note, since, until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING ticket",
                (wanted, holder, claim, run, note, now, now + heartbeat),
            ).fetchone()
            (position,) = conn.execute("SELECT count(*) FROM waiters").fetchone()
            row = (ticket, wanted, holder, claim, now, now + heartbeat, note, run)
            return _waiter(row, int(position))

        return await self._write(work)

    def _blockers(
        self, conn: sqlite3.Connection, waiter: Waiter, wanted: str, now: float
    ) -> tuple[list[Lease], list[Waiter]]:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM leases WHERE {_IN_HOSTS} "
            "AND until > ? AND claim != ? ORDER BY host",
            (wanted, now, waiter.claim),
        ).fetchall()
        ahead = self._queued(conn, wanted, now, before=waiter.ticket)
        return [_lease(r) for r in rows], ahead

    @staticmethod
    def _blocked(leases: list[Lease], ahead: list[Waiter], now: float) -> Turn:
        ends = [x.until.timestamp() for x in leases] + [w.until.timestamp() for w in ahead]
        changes_in = max(min(ends) - now, 0.0) if ends else None
        return Turn(None, tuple(leases), tuple(ahead), len(ahead) + 1, changes_in)

    def _glance(self, waiter: Waiter, wanted: str) -> Turn | None:
        """A read-only look: the turn blocked, or None when the write should be tried.

        Reading takes no lock and changes nothing, so the waiters woken by a
        change do not wake one another up again.
        """
        with self._thread_lock:
            conn = self._connect(create=False)
            if conn is None:
                return None
            try:
                now = self._now(conn)
                present = conn.execute(
                    "SELECT count(*) FROM waiters WHERE ticket = ? AND until > ?",
                    (waiter.ticket, now),
                ).fetchone()[0]
                if not present:
                    return None
                leases, ahead = self._blockers(conn, waiter, wanted, now)
                if not leases and not ahead:
                    return None
            except sqlite3.Error as exc:
                raise self._fail("cannot read it", exc) from None
        return self._blocked(leases, ahead, now)

    async def take_turn(
        self, waiter: Waiter, *, duration: float, heartbeat: float, renew: bool = True
    ) -> Turn:
        wanted = json.dumps(list(waiter.hosts))
        if not renew:
            async with self._lock:
                seen = self._glance(waiter, wanted)
            if seen is not None:
                return seen

        def work(conn: sqlite3.Connection) -> Turn:
            conn.execute(_QUEUE_SCHEMA)
            now = self._now(conn)
            conn.execute("DELETE FROM waiters WHERE until <= ?", (now,))
            leases, ahead = self._blockers(conn, waiter, wanted, now)
            if not leases and not ahead:
                w = waiter
                conn.execute(
                    _grant_sql(),
                    (w.holder, now, now + duration, w.note, w.run, w.claim, wanted, now, now),
                )
                conn.execute("DELETE FROM waiters WHERE ticket = ?", (w.ticket,))
                mine = [x for x in self._rows(conn, wanted, now) if x.claim == w.claim]
                return Turn(Grant(tuple(mine), utc(now)))
            # Kept in its place (taken again with its ticket if it was purged meanwhile).
            w = waiter
            conn.execute(
                "INSERT INTO waiters (ticket, hosts, holder, claim, run, note, since, until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(ticket) DO UPDATE SET "
                "until = excluded.until",
                (
                    w.ticket,
                    wanted,
                    w.holder,
                    w.claim,
                    w.run,
                    w.note,
                    w.since.timestamp(),
                    now + heartbeat,
                ),
            )
            return self._blocked(leases, ahead, now)

        return await self._write(work)

    async def leave(self, waiter: Waiter) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute(_QUEUE_SCHEMA)
            conn.execute("DELETE FROM waiters WHERE ticket = ?", (waiter.ticket,))

        await self._write(work)

    async def waiters(self, hosts: Sequence[str] | None = None) -> list[Waiter]:
        async with self._lock:
            return self.waiters_now(hosts)

    def waiters_now(self, hosts: Sequence[str] | None = None) -> list[Waiter]:
        """``waiters``, without an event loop (``otto reservations``)."""
        with self._thread_lock:
            conn = self._connect(create=False)
            if conn is None:
                return []
            try:
                now = self._now(conn)
                if hosts is not None:
                    return self._queued(conn, json.dumps(list(hosts)), now)
                try:
                    rows = conn.execute(
                        f"SELECT {_WAITER_COLUMNS} FROM waiters WHERE until > ? ORDER BY ticket",
                        (now,),
                    ).fetchall()
                except sqlite3.OperationalError as exc:
                    if "no such table" in str(exc):
                        return []
                    raise
            except sqlite3.Error as exc:
                raise self._fail("cannot read it", exc) from None
        return [_waiter(r, i) for i, r in enumerate(rows, 1)]

    async def queue_mark(self) -> int:
        async with self._lock:
            return self._data_version()

    def _data_version(self) -> int:
        """SQLite's count of commits made by other connections to the file."""
        with self._thread_lock:
            conn = self._connect(create=False)
            if conn is None:
                return 0
            try:
                (version,) = conn.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error as exc:
                raise self._fail("cannot read it", exc) from None
        return int(version)

    async def queue_changed(self, mark: int, timeout: float) -> None:
        # A commit by any other process (a release, a waiter leaving) moves SQLite's
        # data_version: reading it is a few microseconds, so polling it is cheap.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        nap = POLL_FIRST
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(nap, left))
            async with self._lock:
                if self._data_version() != mark:
                    return
            nap = min(nap * 1.5, POLL_CAP)

    async def leases(self, hosts: Sequence[str] | None = None) -> list[Lease]:
        # Under the loop's lock no write thread holds the connection: this never waits.
        async with self._lock:
            return self.leases_now(hosts)

    def leases_now(self, hosts: Sequence[str] | None = None) -> list[Lease]:
        """``leases``, without an event loop (the check before a CLI action)."""
        with self._thread_lock:
            conn = self._connect(create=False)
            if conn is None:
                return []
            try:
                if hosts is None:
                    rows = conn.execute(
                        f"SELECT {_COLUMNS} FROM leases WHERE until > {_NOW} ORDER BY host"
                    ).fetchall()
                else:
                    rows = conn.execute(
                        f"SELECT {_COLUMNS} FROM leases WHERE {_IN_HOSTS} "
                        f"AND until > {_NOW} ORDER BY host",
                        (json.dumps(list(hosts)),),
                    ).fetchall()
            except sqlite3.Error as exc:
                raise self._fail("cannot read it", exc) from None
        return [_lease(r) for r in rows]

    # --- deployments ---------------------------------------------------------------------

    async def deployment(self, host: str, target: str) -> Deployment | None:
        from otto.hosts.deploy.records import Deployment

        async with self._lock:
            with self._thread_lock:
                conn = self._connect(create=False)
                if conn is None:
                    return None
                try:
                    row = conn.execute(
                        f"SELECT {_DEPLOY_COLUMNS} FROM deployments WHERE host = ? AND target = ?",
                        (host, target),
                    ).fetchone()
                except sqlite3.OperationalError as exc:
                    if "no such table" in str(exc):
                        return None  # nothing was ever deployed through this store
                    raise self._fail("cannot read it", exc) from None
                except sqlite3.Error as exc:
                    raise self._fail("cannot read it", exc) from None
        if row is None:
            return None
        name, where, sha256, image, size, via, by, at = row
        return Deployment(name, where, sha256, image, int(size), via, by, utc(at))

    async def record_deployment(self, deployment: Deployment) -> None:
        d = deployment

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(_DEPLOY_SCHEMA)
            conn.execute(
                f"INSERT OR REPLACE INTO deployments ({_DEPLOY_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (d.host, d.target, d.sha256, d.image, d.size, d.via, d.by, self._now(conn)),
            )

        await self._write(work)

    async def forget_deployment(self, host: str, target: str) -> None:
        if self._conn is None and not self.path.exists():
            return

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(_DEPLOY_SCHEMA)
            conn.execute("DELETE FROM deployments WHERE host = ? AND target = ?", (host, target))

        await self._write(work)

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """``close``, without an event loop."""
        self._closed = True
        with self._thread_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _corrupt(exc: BaseException) -> bool:
    """Whether SQLite says the file itself is damaged or not a database."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        # Without a code (older Pythons), only SQLite's own words tell.
        text = str(exc)
        return "not a database" in text or "malformed" in text
    return code & 0xFF in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)


def _full(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
