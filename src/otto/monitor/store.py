"""Metric history in SQLite: one transaction per round, readable while written.

The database runs in WAL mode, so a dashboard or a script in another process
can read it while the collector writes. Writes come in rounds: every sample,
host state and round duration of one round is one transaction.

``MetricStore`` is blocking and meant for one thread at a time; the collector
drives it from a writer thread of its own, never from the event loop.

The JSON export (``export``/``export_json``) and ``import_json`` round-trip
exactly: floats are written with ``repr`` precision and read back unchanged.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import IO, Any, cast

from otto.errors import StoreError

__all__ = [
    "APPLICATION_ID",
    "EXPORT_FORMAT",
    "SCHEMA_VERSION",
    "Event",
    "HostState",
    "MetricStore",
    "StoreError",
    "load_export",
]

EXPORT_FORMAT = "otto.monitor"
EXPORT_VERSION = 1

APPLICATION_ID = 0x6F74746F
"""``PRAGMA application_id`` of otto's metric databases ("otto" in ASCII)."""

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the schema below."""

_TABLES = frozenset({"meta", "hosts", "metrics", "rounds", "host_rounds", "samples", "events"})

# samples is keyed by time first: each round appends at the end of the b-tree
# (about ten times faster than keying by host and metric, whose inserts land
# all over it), and reads are by time range anyway.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hosts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS rounds (
    t REAL PRIMARY KEY,
    duration REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS host_rounds (
    t REAL NOT NULL,
    host_id INTEGER NOT NULL REFERENCES hosts(id),
    up INTEGER NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (host_id, t)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS samples (
    t REAL NOT NULL,
    host_id INTEGER NOT NULL REFERENCES hosts(id),
    metric_id INTEGER NOT NULL REFERENCES metrics(id),
    value REAL NOT NULL,
    PRIMARY KEY (t, host_id, metric_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    t_end REAL,
    label TEXT NOT NULL,
    color TEXT
);
"""


@dataclass(frozen=True, slots=True)
class Event:
    """An annotation on the timeline; ``t`` and ``end`` are unix seconds."""

    id: int
    t: float
    label: str
    color: str | None = None
    end: float | None = None
    host: str | None = None
    """The host the event happened on (a log watch's match), or None for the whole run."""
    line: str | None = None
    """The log line that made the event, if a log watch did."""

    def as_dict(self) -> dict[str, object]:
        """The event as the dashboard and the JSON export show it."""
        out: dict[str, object] = {
            "id": self.id,
            "t": self.t,
            "end": self.end,
            "label": self.label,
            "color": self.color,
        }
        if self.host is not None:
            out["host"] = self.host
        if self.line is not None:
            out["line"] = self.line
        return out


@dataclass(frozen=True, slots=True)
class HostState:
    """Whether a host answered in a round, and why not if it did not."""

    up: bool
    error: str = ""


def _check_ours(path: Path) -> None:
    """Raise ``StoreError`` unless ``path`` is missing, empty or an otto metric database.

    The file is only read here, never written: another program's database stays
    byte-identical.
    """
    folder = path.parent
    try:
        if path.is_dir():
            raise StoreError(f"cannot open metric database {path}: it is a folder, not a file")
        if not path.exists():
            if not folder.is_dir():
                raise StoreError(
                    f"cannot create metric database {path}: folder {folder} does not exist"
                )
            if not os.access(folder, os.W_OK):
                raise StoreError(
                    f"cannot create metric database {path}: no write permission in {folder}"
                )
            return
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"cannot open metric database {path}: permission denied")
        if path.stat().st_size == 0:
            return
    except OSError as exc:
        raise StoreError(f"cannot open metric database {path}: {exc.strerror or exc}") from None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open metric database {path}: {exc}") from None
    try:
        (app_id,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        tables = {
            name
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot use {path} as a metric database: {exc}; give --db a new file name"
        ) from None
    finally:
        db.close()
    # A database otto wrote before it stamped its application id has otto's tables.
    if app_id == 0 and (not tables or tables == _TABLES):
        return
    if app_id != APPLICATION_ID:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"{path} is another program's SQLite database (tables: {shown or 'none'}), "
            "not an otto metric database; left unchanged: give --db a new file name"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} is an otto metric database of a newer version ({version}) "
            f"than this otto reads ({SCHEMA_VERSION})"
        )


class MetricStore:
    """A SQLite file of metric history (blocking; use it from one thread at a time).

    Args:
        path: the database file; created with its schema when missing or empty.

    Raises:
        StoreError: the file cannot be opened, or it is not an otto metric
            database (another program's file is refused, not modified).
    """

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        _check_ours(self.path)
        try:
            # check_same_thread=False: a store may be opened on one thread and used
            # on another (never two at once); the collector keeps it on its writer thread.
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open metric database {self.path}: {exc}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode; only a power
            # cut can lose the last rounds, which is fine for monitoring data.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot use {self.path} as a metric database: {exc}") from None
        self._hosts: dict[str, int] = dict(self._db.execute("SELECT name, id FROM hosts"))
        self._metrics: dict[str, int] = dict(self._db.execute("SELECT name, id FROM metrics"))

    # --- writing ---------------------------------------------------------------------

    def write_round(
        self,
        t: float,
        samples: Mapping[str, Mapping[str, float]],
        states: Mapping[str, HostState] | None = None,
        duration: float | None = None,
    ) -> int:
        """Write one round in one transaction.

        Args:
            t: the round's time, unix seconds.
            samples: ``{host: {metric: value}}``; values that are not finite are left out.
            states: ``{host: HostState}`` for every host polled.
            duration: how long the round took, seconds.

        Returns:
            How many samples were written.
        """
        with self._transaction():
            rows = [
                (t, self._id(self._hosts, "hosts", host), self._id(self._metrics, "metrics", m), v)
                for host, metrics in samples.items()
                for m, v in metrics.items()
                if math.isfinite(v)
            ]
            self._db.executemany(
                "INSERT OR REPLACE INTO samples (t, host_id, metric_id, value) VALUES (?, ?, ?, ?)",
                rows,
            )
            if states:
                self._db.executemany(
                    "INSERT OR REPLACE INTO host_rounds (t, host_id, up, error)"
                    " VALUES (?, ?, ?, ?)",
                    [
                        (t, self._id(self._hosts, "hosts", host), int(s.up), s.error)
                        for host, s in states.items()
                    ],
                )
            if duration is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO rounds (t, duration) VALUES (?, ?)", (t, duration)
                )
        return len(rows)

    def add_event(self, event: Event) -> None:
        """Store ``event`` (replacing one with the same id)."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO events (id, t, t_end, label, color) VALUES (?, ?, ?, ?, ?)",
                (event.id, event.t, event.end, event.label, event.color),
            )

    def set_meta(self, key: str, value: str) -> None:
        """Record a setting of the run, such as the interval."""
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- reading ---------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """The recorded settings."""
        return dict(self._db.execute("SELECT key, value FROM meta"))

    def host_names(self) -> list[str]:
        """Every host that has a sample or a state, sorted."""
        return sorted(self._hosts)

    def metric_names(self) -> list[str]:
        """Every metric that has a sample, sorted."""
        return sorted(self._metrics)

    def series(
        self, host: str, metric: str, since: float | None = None
    ) -> list[tuple[float, float]]:
        """``(t, value)`` of one host's metric, oldest first."""
        host_id = self._hosts.get(host)
        metric_id = self._metrics.get(metric)
        if host_id is None or metric_id is None:
            return []
        return list(
            self._db.execute(
                "SELECT t, value FROM samples WHERE host_id = ? AND metric_id = ? AND t >= ?"
                " ORDER BY t",
                (host_id, metric_id, -math.inf if since is None else since),
            )
        )

    def sample_count(self) -> int:
        """How many samples the store holds."""
        (count,) = self._db.execute("SELECT count(*) FROM samples").fetchone()
        return int(count)

    def states(self, host: str) -> list[tuple[float, HostState]]:
        """``(t, HostState)`` of each round the host was polled in, oldest first."""
        return [
            (t, HostState(bool(up), error))
            for t, up, error in self._db.execute(
                "SELECT r.t, r.up, r.error FROM host_rounds r JOIN hosts h ON h.id = r.host_id"
                " WHERE h.name = ? ORDER BY r.t",
                (host,),
            )
        ]

    def events(self) -> list[Event]:
        """Every event, by id."""
        return [
            Event(id=i, t=t, end=end, label=label, color=color)
            for i, t, end, label, color in self._db.execute(
                "SELECT id, t, t_end, label, color FROM events ORDER BY id"
            )
        ]

    def next_event_id(self) -> int:
        """One more than the highest event id stored."""
        (top,) = self._db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        return int(top) + 1

    # --- JSON --------------------------------------------------------------------------

    def export(self) -> dict[str, object]:
        """Everything in the store as a JSON-ready dict (see ``import_json``)."""
        samples: dict[str, dict[str, list[list[float]]]] = {}
        query = (
            "SELECT h.name, m.name, s.t, s.value FROM samples s"
            " JOIN hosts h ON h.id = s.host_id JOIN metrics m ON m.id = s.metric_id"
            " ORDER BY h.name, m.name, s.t"
        )
        for host, metric, t, value in self._db.execute(query):
            samples.setdefault(host, {}).setdefault(metric, []).append([t, value])
        status: dict[str, list[list[object]]] = {}
        query = (
            "SELECT h.name, r.t, r.up, r.error FROM host_rounds r"
            " JOIN hosts h ON h.id = r.host_id ORDER BY h.name, r.t"
        )
        for host, t, up, error in self._db.execute(query):
            status.setdefault(host, []).append([t, bool(up), error])
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "meta": self.meta(),
            "hosts": self.host_names(),
            "metrics": self.metric_names(),
            "rounds": [
                list(r) for r in self._db.execute("SELECT t, duration FROM rounds ORDER BY t")
            ],
            "status": status,
            "samples": samples,
            "events": [e.as_dict() for e in self.events()],
        }

    def export_json(self, file: str | PathLike[str] | IO[str]) -> None:
        """Write ``export()`` as JSON to a path or an open text file."""
        if isinstance(file, (str, PathLike)):
            with open(file, "w", encoding="utf-8") as out:
                json.dump(self.export(), out)
        else:
            json.dump(self.export(), file)

    def import_json(self, data: str | PathLike[str] | Mapping[str, object]) -> None:
        """Add the content of an export (a file path or the dict) to this store.

        Raises:
            ValueError: it is not an otto monitor export.
        """
        doc = load_export(data)
        with self._transaction():
            for key, value in cast(Mapping[str, str], doc.get("meta", {})).items():
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
                )
            for name in doc.get("hosts", []):
                self._id(self._hosts, "hosts", name)
            for name in doc.get("metrics", []):
                self._id(self._metrics, "metrics", name)
            self._db.executemany(
                "INSERT OR REPLACE INTO rounds (t, duration) VALUES (?, ?)",
                [(t, d) for t, d in doc.get("rounds", [])],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO host_rounds (t, host_id, up, error) VALUES (?, ?, ?, ?)",
                [
                    (t, self._id(self._hosts, "hosts", host), int(up), error)
                    for host, rows in doc.get("status", {}).items()
                    for t, up, error in rows
                ],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO samples (t, host_id, metric_id, value) VALUES (?, ?, ?, ?)",
                _sample_rows(self, doc.get("samples", {})),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO events (id, t, t_end, label, color) VALUES (?, ?, ?, ?, ?)",
                [
                    (e["id"], e["t"], e.get("end"), e["label"], e.get("color"))
                    for e in doc.get("events", [])
                ],
            )

    def close(self) -> None:
        """Close the database (idempotent)."""
        self._db.close()

    def __enter__(self) -> MetricStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _id(self, cache: dict[str, int], table: str, name: str) -> int:
        found = cache.get(name)
        if found is None:
            # table is one of two constants, never user input.
            cursor = self._db.execute(f"INSERT INTO {table} (name) VALUES (?)", (name,))
            assert cursor.lastrowid is not None
            found = cache[name] = cursor.lastrowid
        return found


def _sample_rows(
    store: MetricStore, samples: Mapping[str, Mapping[str, Iterable[list[float]]]]
) -> Iterable[tuple[float, int, int, float]]:
    for host, metrics in samples.items():
        host_id = store._id(store._hosts, "hosts", host)
        for metric, points in metrics.items():
            metric_id = store._id(store._metrics, "metrics", metric)
            for t, value in points:
                yield (t, host_id, metric_id, value)


class _Transaction:
    """BEGIN ... COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def load_export(data: str | PathLike[str] | Mapping[str, object]) -> dict[str, Any]:
    """Read an export from a path (or take the dict) and check that it is one.

    Raises:
        ValueError: it is not an otto monitor export of a version this code reads.
    """
    if isinstance(data, Mapping):
        doc = dict(data)
        where = "the data"
    else:
        where = str(data)
        with open(data, encoding="utf-8") as f:
            doc = json.load(f)
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{where} is not an otto monitor export (no format {EXPORT_FORMAT!r})")
    if doc.get("version") != EXPORT_VERSION:
        raise ValueError(f"{where}: export version {doc.get('version')!r} is not supported")
    return doc
