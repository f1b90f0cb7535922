"""Metric history in SQLite: many runs in one file, one transaction per round.

A database holds runs: each ``otto monitor --db FILE`` (each ``Collector`` started
with ``db=``) appends a run of its own, with an optional label and note. Every
round, host state, sample and event belongs to one run. Two collectors may write
to one file at once, each to its own run: writes are short ``BEGIN IMMEDIATE``
transactions and a writer waits (``timeout``) for the other's to end.

The database runs in WAL mode, so a dashboard or a script in another process
reads it while collectors write. ``MetricStore`` is blocking and meant for one
thread at a time; the collector drives it from a writer thread of its own.

A database written by an older otto is migrated in place when it is opened, in
one transaction: version 1 (one run) becomes run 1; version 2 (runs, no outages)
gets its outages derived from its stored host states. A migration that fails
leaves the file as it was. A database of a newer version is refused.

Each run's outages (``otto.monitor.outages``) are kept in a table of their own,
written as the rounds are: a host going down inserts its outage, its first round
up again ends it.

The JSON export (``export``/``export_json``) and ``import_json`` round-trip
exactly: floats are written with ``repr`` precision and read back unchanged.
An import adds each exported run as a new run; runs are never merged.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import IO, Any, cast

from otto.errors import StoreError
from otto.monitor.export_check import checked_run
from otto.monitor.outages import Outage, OutageTracker, derive_outages
from otto.transfer import write_whole

__all__ = [
    "APPLICATION_ID",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "SCHEMA_VERSION",
    "Event",
    "HostState",
    "MetricStore",
    "Outage",
    "Run",
    "StoreError",
    "checked_export_runs",
    "export_run_list",
    "export_runs",
    "load_export",
    "outages_of_export",
    "pick_export_run",
    "run_from_export",
]

EXPORT_FORMAT = "otto.monitor"
EXPORT_VERSION = 2
"""Version 2 holds ``runs``; version 1 (one run, its fields at the top) is still read."""

APPLICATION_ID = 0x6F74746F
"""``PRAGMA application_id`` of otto's metric databases ("otto" in ASCII)."""

SCHEMA_VERSION = 3
"""``PRAGMA user_version`` of the schema below (2: runs without outages; 1: one run)."""

DEFAULT_TIMEOUT = 30.0
"""Seconds a write waits for another process's write transaction to end."""

_V1_TABLES = frozenset({"meta", "hosts", "metrics", "rounds", "host_rounds", "samples", "events"})

# hosts and metrics name the ids shared by every run. samples is keyed by run and
# time first: each round appends at the end of its run's part of the b-tree (about
# ten times faster than keying by host and metric, whose inserts land all over it),
# and a run is read in one range scan. series lists each run's (host, metric) pairs
# so that a run's hosts and metrics are known without scanning its samples.
_SCHEMA = """
CREATE TABLE hosts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE metrics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    label TEXT,
    note TEXT,
    started REAL NOT NULL,
    ended REAL,
    interval REAL,
    hosts TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX runs_label ON runs (label);
CREATE TABLE meta (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE TABLE series (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    host_id INTEGER NOT NULL REFERENCES hosts(id),
    metric_id INTEGER NOT NULL REFERENCES metrics(id),
    PRIMARY KEY (run_id, host_id, metric_id)
) WITHOUT ROWID;
CREATE TABLE rounds (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    t REAL NOT NULL,
    duration REAL NOT NULL,
    PRIMARY KEY (run_id, t)
) WITHOUT ROWID;
CREATE TABLE host_rounds (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    host_id INTEGER NOT NULL REFERENCES hosts(id),
    t REAL NOT NULL,
    up INTEGER NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, host_id, t)
) WITHOUT ROWID;
CREATE TABLE samples (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    t REAL NOT NULL,
    host_id INTEGER NOT NULL REFERENCES hosts(id),
    metric_id INTEGER NOT NULL REFERENCES metrics(id),
    value REAL NOT NULL,
    PRIMARY KEY (run_id, t, host_id, metric_id)
) WITHOUT ROWID;
CREATE TABLE events (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    id INTEGER NOT NULL,
    t REAL NOT NULL,
    t_end REAL,
    label TEXT NOT NULL,
    color TEXT,
    host TEXT,
    line TEXT,
    PRIMARY KEY (run_id, id)
) WITHOUT ROWID;
CREATE TABLE outages (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    host_id INTEGER NOT NULL REFERENCES hosts(id),
    t_start REAL NOT NULL,
    t_end REAL,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, host_id, t_start)
) WITHOUT ROWID;
"""

# From version 2 to 3: the outages table, filled from the host states already stored.
_OUTAGES_TABLE = _SCHEMA[_SCHEMA.index("CREATE TABLE outages") :].strip().rstrip(";")

_UPSERT_OUTAGE = (
    "INSERT INTO outages (run_id, host_id, t_start, t_end, error) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (run_id, host_id, t_start) DO UPDATE SET t_end = excluded.t_end"
)

# From version 1 (one run, no run columns) to 2: the v1 tables are renamed, the v2
# schema created, their rows copied into run 1, and the old tables dropped. hosts
# and metrics keep their ids (the v2 tables are filled from them as they are).
_V1_RENAMED = ("meta", "hosts", "metrics", "rounds", "host_rounds", "samples", "events")
_MIGRATE_V1_COPY = (
    "INSERT INTO hosts (id, name) SELECT id, name FROM v1_hosts",
    "INSERT INTO metrics (id, name) SELECT id, name FROM v1_metrics",
    """INSERT INTO runs (id, label, note, started, ended, interval, hosts)
       SELECT 1, NULL, 'migrated from a version-1 database',
              coalesce(min(t), 0), max(t),
              (SELECT CAST(value AS REAL) FROM v1_meta WHERE key = 'interval'),
              (SELECT json_group_array(name) FROM (SELECT name FROM v1_hosts ORDER BY name))
       FROM (SELECT t FROM v1_rounds UNION ALL SELECT t FROM v1_host_rounds
             UNION ALL SELECT t FROM v1_events
             UNION ALL SELECT min(t) FROM v1_samples UNION ALL SELECT max(t) FROM v1_samples)""",
    "INSERT INTO meta (run_id, key, value) SELECT 1, key, value FROM v1_meta",
    "INSERT INTO rounds (run_id, t, duration) SELECT 1, t, duration FROM v1_rounds",
    """INSERT INTO host_rounds (run_id, host_id, t, up, error)
       SELECT 1, host_id, t, up, error FROM v1_host_rounds""",
    """INSERT INTO samples (run_id, t, host_id, metric_id, value)
       SELECT 1, t, host_id, metric_id, value FROM v1_samples ORDER BY t, host_id, metric_id""",
    """INSERT INTO series (run_id, host_id, metric_id)
       SELECT DISTINCT 1, host_id, metric_id FROM v1_samples""",
    """INSERT INTO events (run_id, id, t, t_end, label, color)
       SELECT 1, id, t, t_end, label, color FROM v1_events""",
)


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """The event of ``as_dict`` (or of an export)."""
        return cls(
            id=int(data["id"]),
            t=float(data["t"]),
            label=str(data["label"]),
            color=data.get("color"),
            end=data.get("end"),
            host=data.get("host"),
            line=data.get("line"),
        )


@dataclass(frozen=True, slots=True)
class HostState:
    """Whether a host answered in a round, and why not if it did not."""

    up: bool
    error: str = ""


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a collector in a database: who, when, and how much.

    ``ended`` is None while the run is written, and for a run whose collector
    was killed before it could close it; ``last`` is its latest round.
    """

    id: int
    started: float
    label: str | None = None
    note: str | None = None
    ended: float | None = None
    interval: float | None = None
    hosts: tuple[str, ...] = ()
    rounds: int = 0
    last: float | None = None

    @property
    def name(self) -> str:
        """``#3`` or ``#3 nightly``: how lists and messages name the run."""
        return f"#{self.id}" if not self.label else f"#{self.id} {self.label}"

    def as_dict(self) -> dict[str, object]:
        """The run as the dashboard's run list shows it."""
        return {
            "id": self.id,
            "label": self.label,
            "note": self.note,
            "started": self.started,
            "ended": self.ended,
            "interval": self.interval,
            "hosts": list(self.hosts),
            "rounds": self.rounds,
            "last": self.last,
        }


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
        app_id, version, tables = _header(db)
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot use {path} as a metric database: {exc}; give --db a new file name"
        ) from None
    finally:
        db.close()
    # A database otto wrote before it stamped its application id has otto's v1 tables.
    if app_id == 0 and (not tables or tables == _V1_TABLES):
        return
    if app_id != APPLICATION_ID:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"{path} is another program's SQLite database (tables: {shown or 'none'}), "
            "not an otto metric database; left unchanged: give --db a new file name"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(_newer(path, version))


def _newer(path: Path, version: int) -> str:
    return (
        f"{path} is an otto metric database of a newer version ({version}) than this otto "
        f"reads ({SCHEMA_VERSION}); left unchanged: open it with a newer otto, "
        "or give --db a new file name"
    )


def _header(db: sqlite3.Connection) -> tuple[int, int, set[str]]:
    (app_id,) = db.execute("PRAGMA application_id").fetchone()
    (version,) = db.execute("PRAGMA user_version").fetchone()
    tables = {
        name
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    return int(app_id), int(version), tables


class MetricStore:
    """A SQLite file of metric history in runs (blocking; one thread at a time).

    Writing (``write_round``, ``add_event``, ``set_meta``) goes to this store's
    own run: the one ``start_run`` began, or a run started by the first write.
    Reading methods take ``run`` (an id); None means this store's own run if it
    has one, else the latest run in the file.

    Args:
        path: the database file; created with its schema when missing or empty,
            migrated when an older otto wrote it.
        timeout: seconds to wait for another process's write transaction.

    Raises:
        StoreError: the file cannot be opened, it is not an otto metric
            database (another program's file is refused, not modified), it is of
            a newer version, or migrating it failed (it is left as it was).
    """

    def __init__(self, path: str | PathLike[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = Path(path)
        _check_ours(self.path)
        try:
            # check_same_thread=False: a store may be opened on one thread and used
            # on another (never two at once); the collector keeps it on its writer thread.
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=timeout
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open metric database {self.path}: {exc}") from None
        self._run: int | None = None
        # Only the open outages matter for writing: the ended ones are in the table.
        self._outages = OutageTracker(max_kept=0)
        self._unsaved: list[Outage] = []
        self._hosts: dict[str, int] = {}
        self._metrics: dict[str, int] = {}
        # {host: (host id, {metric: metric id})} of the series this store's run has.
        self._series: dict[str, tuple[int, dict[str, int]]] = {}
        try:
            self._prepare()
            self._load_names()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot use {self.path} as a metric database: {exc}") from None
        except BaseException:
            self._db.close()
            raise

    def _prepare(self) -> None:
        """Set the connection up; create or migrate the schema if needed."""
        try:
            (mode,) = self._db.execute("PRAGMA journal_mode").fetchone()
            if mode != "wal":
                self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across process crashes in WAL mode; only a power
            # cut can lose the last rounds, which is fine for monitoring data.
            self._db.execute("PRAGMA synchronous=NORMAL")
            _, version, _ = _header(self._db)
            if version == SCHEMA_VERSION:
                return
            with self._transaction():
                # Read again under the write lock: another process may have just done it.
                _, version, tables = _header(self._db)
                if version > SCHEMA_VERSION:
                    raise StoreError(_newer(self.path, version))
                if version == 1 or (version == 0 and tables == _V1_TABLES):
                    self._migrate_v1()
                    self._fill_outages()
                elif version == 2:
                    self._db.execute(_OUTAGES_TABLE)
                    self._fill_outages()
                elif version == 0 and not tables:
                    for statement in _schema_statements():
                        self._db.execute(statement)
                elif version != SCHEMA_VERSION:
                    raise StoreError(
                        f"cannot use {self.path} as a metric database: unknown schema "
                        f"version {version} with tables {', '.join(sorted(tables))}"
                    )
                self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreError(
                    f"cannot prepare metric database {self.path}: another process holds it "
                    f"locked ({exc}); left unchanged"
                ) from None
            raise StoreError(f"cannot use {self.path} as a metric database: {exc}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"cannot use {self.path} as a metric database: {exc}") from None

    def _migrate_v1(self) -> None:
        """Turn a version-1 database (one run) into version 2, its data run 1.

        Runs inside the caller's transaction: any failure rolls all of it back.
        """
        for step in _migration_steps():
            self._db.execute(step)

    def _fill_outages(self) -> None:
        """Derive every run's outages from its stored host states (in one scan, in
        key order) into the outages table; inside the caller's transaction."""
        rows: list[tuple[int, int, float, float | None, str]] = []
        tracker: OutageTracker | None = None
        current: tuple[int, int] | None = None
        for run_id, host_id, t, up, error in self._db.execute(
            # The primary key's order: no sort, one pass.
            "SELECT run_id, host_id, t, up, error FROM host_rounds ORDER BY run_id, host_id, t"
        ):
            if (run_id, host_id) != current:
                current, tracker = (run_id, host_id), OutageTracker(max_kept=0)
            assert tracker is not None
            change = tracker.record(t, "", bool(up), error)
            if change is not None:
                rows.append((run_id, host_id, change.start, change.end, change.error))
        self._db.executemany(_UPSERT_OUTAGE, rows)

    def _load_names(self) -> None:
        self._hosts = dict(self._db.execute("SELECT name, id FROM hosts"))
        self._metrics = dict(self._db.execute("SELECT name, id FROM metrics"))

    def _forget_names(self) -> None:
        # Names missing from the caches are looked up (or added) again when used.
        self._hosts.clear()
        self._metrics.clear()
        self._series.clear()

    # --- runs --------------------------------------------------------------------------

    @property
    def run(self) -> int | None:
        """The id of the run this store writes to, or None before the first write."""
        return self._run

    def start_run(
        self,
        *,
        label: str | None = None,
        note: str | None = None,
        interval: float | None = None,
        hosts: Sequence[str] = (),
        started: float | None = None,
    ) -> Run:
        """Begin a new run in the file; later writes go to it.

        Args:
            label: a short name to pick the run by (``--run LABEL``).
            note: free text about the run.
            interval: seconds between rounds.
            hosts: the hosts the run watches.
            started: unix seconds; now by default.
        """
        started = time.time() if started is None else started
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO runs (label, note, started, interval, hosts) VALUES (?, ?, ?, ?, ?)",
                (label or None, note or None, started, interval, json.dumps(list(hosts))),
            )
            assert cursor.lastrowid is not None
            run = cursor.lastrowid
            if interval is not None:
                self._db.execute(
                    "INSERT INTO meta (run_id, key, value) VALUES (?, 'interval', ?)",
                    (run, repr(interval)),
                )
        self._run = run
        self._series = {}
        self._outages = OutageTracker(max_kept=0)
        self._unsaved = []
        return Run(run, started, label or None, note or None, None, interval, tuple(hosts), 0, None)

    def end_run(self, ended: float | None = None) -> None:
        """Record that this store's run has ended (now by default); idempotent."""
        if self._run is None:
            return
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET ended = ? WHERE id = ?",
                (time.time() if ended is None else ended, self._run),
            )

    def runs(self) -> list[Run]:
        """Every run in the file, oldest first."""
        query = (
            "SELECT r.id, r.started, r.label, r.note, r.ended, r.interval, r.hosts,"
            " (SELECT count(*) FROM rounds WHERE run_id = r.id),"
            " (SELECT max(t) FROM rounds WHERE run_id = r.id)"
            " FROM runs r ORDER BY r.id"
        )
        return [
            Run(i, started, label, note, ended, interval, tuple(json.loads(hosts)), count, last)
            for i, started, label, note, ended, interval, hosts, count, last in self._db.execute(
                query
            )
        ]

    def find_run(self, which: int | str | None = None) -> Run:
        """The run named by ``which``: an id (``3``, ``"3"``), a label (the latest run
        with it), or None for the latest run.

        Raises:
            StoreError: no such run, or the file holds no run at all.
        """
        return _pick_run(self.runs(), which, str(self.path))

    # --- writing ---------------------------------------------------------------------

    def write_round(
        self,
        t: float,
        samples: Mapping[str, Mapping[str, float]],
        states: Mapping[str, HostState] | None = None,
        duration: float | None = None,
    ) -> int:
        """Write one round of this store's run in one transaction.

        Args:
            t: the round's time, unix seconds.
            samples: ``{host: {metric: value}}``; values that are not finite are left out.
            states: ``{host: HostState}`` for every host polled; a host going
                down (or answering again) opens (or ends) an outage of the run.
                A host's states are taken in time order: one no later than its
                previous state is stored but starts or ends no outage.
            duration: how long the round took, seconds.

        Returns:
            How many samples were written.
        """
        run = self._own_run(t)
        # Outage changes of a round whose write failed are written with the next one.
        changes = self._unsaved + (self._outages.record_round(t, states) if states else [])
        self._unsaved = changes
        with self._transaction():
            rows: list[tuple[int, float, int, int, float]] = []
            new_pairs: list[tuple[int, int, int]] = []
            series, isfinite, append = self._series, math.isfinite, rows.append
            # The loop every sample goes through: one dict lookup per sample once a
            # series is known (its ids and its row in the series table).
            for host, values in samples.items():
                entry = series.get(host)
                if entry is None:
                    entry = series[host] = (self._id(self._hosts, "hosts", host), {})
                host_id, known = entry
                for metric, value in values.items():
                    if not isfinite(value):
                        continue
                    metric_id = known.get(metric)
                    if metric_id is None:
                        metric_id = known[metric] = self._id(self._metrics, "metrics", metric)
                        new_pairs.append((run, host_id, metric_id))
                    append((run, t, host_id, metric_id, value))
            self._db.executemany(
                "INSERT OR REPLACE INTO samples (run_id, t, host_id, metric_id, value)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            if new_pairs:
                self._db.executemany(
                    "INSERT OR IGNORE INTO series (run_id, host_id, metric_id) VALUES (?, ?, ?)",
                    new_pairs,
                )
            if states:
                self._db.executemany(
                    "INSERT OR REPLACE INTO host_rounds (run_id, host_id, t, up, error)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [
                        (run, self._id(self._hosts, "hosts", host), t, int(s.up), s.error)
                        for host, s in states.items()
                    ],
                )
            if changes:
                self._db.executemany(
                    _UPSERT_OUTAGE,
                    [
                        (run, self._id(self._hosts, "hosts", o.host), o.start, o.end, o.error)
                        for o in changes
                    ],
                )
            if duration is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO rounds (run_id, t, duration) VALUES (?, ?, ?)",
                    (run, t, duration),
                )
        self._unsaved = []
        return len(rows)

    def add_event(self, event: Event) -> None:
        """Store ``event`` in this store's run (replacing one with the same id)."""
        run = self._own_run(event.t)
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO events (run_id, id, t, t_end, label, color, host, line)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run,
                    event.id,
                    event.t,
                    event.end,
                    event.label,
                    event.color,
                    event.host,
                    event.line,
                ),
            )

    def set_meta(self, key: str, value: str) -> None:
        """Record a setting of this store's run, such as the interval."""
        run = self._own_run(None)
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO meta (run_id, key, value) VALUES (?, ?, ?)",
                (run, key, value),
            )
            if key == "interval":
                with contextlib.suppress(ValueError):
                    self._db.execute(
                        "UPDATE runs SET interval = ? WHERE id = ?", (float(value), run)
                    )

    # --- reading ---------------------------------------------------------------------

    def meta(self, run: int | None = None) -> dict[str, str]:
        """The recorded settings of a run."""
        return dict(
            self._db.execute("SELECT key, value FROM meta WHERE run_id = ?", (self._read_run(run),))
        )

    def host_names(self, run: int | None = None) -> list[str]:
        """Every host of a run that has a sample or a state, sorted."""
        run_id = self._read_run(run)
        return [
            name
            for (name,) in self._db.execute(
                "SELECT name FROM hosts WHERE id IN"
                " (SELECT host_id FROM series WHERE run_id = ?"
                "  UNION SELECT DISTINCT host_id FROM host_rounds WHERE run_id = ?)"
                " ORDER BY name",
                (run_id, run_id),
            )
        ]

    def metric_names(self, run: int | None = None) -> list[str]:
        """Every metric of a run that has a sample, sorted."""
        return [
            name
            for (name,) in self._db.execute(
                "SELECT name FROM metrics WHERE id IN"
                " (SELECT metric_id FROM series WHERE run_id = ?) ORDER BY name",
                (self._read_run(run),),
            )
        ]

    def series(
        self, host: str, metric: str, since: float | None = None, run: int | None = None
    ) -> list[tuple[float, float]]:
        """``(t, value)`` of one host's metric in a run, oldest first."""
        return list(
            self._db.execute(
                "SELECT s.t, s.value FROM samples s"
                " WHERE s.run_id = ? AND s.t >= ?"
                " AND s.host_id = (SELECT id FROM hosts WHERE name = ?)"
                " AND s.metric_id = (SELECT id FROM metrics WHERE name = ?)"
                " ORDER BY s.t",
                (self._read_run(run), -math.inf if since is None else since, host, metric),
            )
        )

    def sample_count(self, run: int | None = None) -> int:
        """How many samples a run holds."""
        (count,) = self._db.execute(
            "SELECT count(*) FROM samples WHERE run_id = ?", (self._read_run(run),)
        ).fetchone()
        return int(count)

    def states(self, host: str, run: int | None = None) -> list[tuple[float, HostState]]:
        """``(t, HostState)`` of each round of a run the host was polled in, oldest first."""
        return [
            (t, HostState(bool(up), error))
            for t, up, error in self._db.execute(
                "SELECT r.t, r.up, r.error FROM host_rounds r JOIN hosts h ON h.id = r.host_id"
                " WHERE r.run_id = ? AND h.name = ? ORDER BY r.t",
                (self._read_run(run), host),
            )
        ]

    def outages(self, run: int | None = None, host: str | None = None) -> list[Outage]:
        """The outages of a run (of one host, or of all), by start time; an outage
        still open when the run was last written has ``end`` None."""
        query = (
            "SELECT h.name, o.t_start, o.t_end, o.error FROM outages o"
            " JOIN hosts h ON h.id = o.host_id WHERE o.run_id = ?"
        )
        args: tuple[object, ...] = (self._read_run(run),)
        if host is not None:
            query += " AND h.name = ?"
            args += (host,)
        return [
            Outage(name, start, end, error)
            for name, start, end, error in self._db.execute(
                query + " ORDER BY o.t_start, h.name", args
            )
        ]

    def events(self, run: int | None = None) -> list[Event]:
        """Every event of a run, by id."""
        return [
            Event(id=i, t=t, end=end, label=label, color=color, host=host, line=line)
            for i, t, end, label, color, host, line in self._db.execute(
                "SELECT id, t, t_end, label, color, host, line FROM events"
                " WHERE run_id = ? ORDER BY id",
                (self._read_run(run),),
            )
        ]

    def next_event_id(self, run: int | None = None) -> int:
        """One more than the highest event id of a run."""
        (top,) = self._db.execute(
            "SELECT coalesce(max(id), 0) FROM events WHERE run_id = ?", (self._read_run(run),)
        ).fetchone()
        return int(top) + 1

    # --- JSON --------------------------------------------------------------------------

    def run_export(self, run: int | None = None) -> dict[str, object]:
        """One run's whole content, as an entry of ``export()["runs"]``.

        Read in one transaction, so a run being written comes out consistent.
        """
        run_id = self._read_run(run)
        with self._reading():
            row = self._db.execute(
                "SELECT id, label, note, started, ended, interval, hosts FROM runs WHERE id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise StoreError(f"{self.path} has no run {run_id}")
            _, label, note, started, ended, interval, hosts_json = row
            host_names = dict(self._db.execute("SELECT id, name FROM hosts"))
            metric_names = dict(self._db.execute("SELECT id, name FROM metrics"))
            by_id: dict[tuple[int, int], list[list[float]]] = {}
            for h, m in self._db.execute(
                "SELECT host_id, metric_id FROM series WHERE run_id = ?", (run_id,)
            ):
                by_id[(h, m)] = []
            # One range scan in key order (time first): points come out oldest first.
            for t, h, m, value in self._db.execute(
                "SELECT t, host_id, metric_id, value FROM samples WHERE run_id = ?", (run_id,)
            ):
                points = by_id.get((h, m))
                if points is None:
                    points = by_id[(h, m)] = []
                points.append([t, value])
            status: dict[str, list[list[object]]] = {}
            for host_id, t, up, error in self._db.execute(
                "SELECT host_id, t, up, error FROM host_rounds WHERE run_id = ?"
                " ORDER BY host_id, t",
                (run_id,),
            ):
                status.setdefault(host_names[host_id], []).append([t, bool(up), error])
            rounds = [
                list(r)
                for r in self._db.execute(
                    "SELECT t, duration FROM rounds WHERE run_id = ? ORDER BY t", (run_id,)
                )
            ]
            meta = dict(self._db.execute("SELECT key, value FROM meta WHERE run_id = ?", (run_id,)))
            events = [e.as_dict() for e in self.events(run_id)]
            outages = [o.as_dict() for o in self.outages(run_id)]
        samples: dict[str, dict[str, list[list[float]]]] = {}
        for (h, m), points in sorted(
            by_id.items(), key=lambda item: (host_names[item[0][0]], metric_names[item[0][1]])
        ):
            samples.setdefault(host_names[h], {})[metric_names[m]] = points
        hosts = set(samples) | set(status) | set(json.loads(hosts_json))
        return {
            "id": run_id,
            "label": label,
            "note": note,
            "started": started,
            "ended": ended,
            "interval": interval,
            "meta": meta,
            "hosts": sorted(hosts),
            "metrics": sorted({metric_names[m] for _, m in by_id}),
            "rounds": rounds,
            "status": {host: status[host] for host in sorted(status)},
            "samples": samples,
            "events": events,
            "outages": outages,
        }

    def export(self, runs: Iterable[int | str] | None = None) -> dict[str, object]:
        """Runs of the store (every run by default) as a JSON-ready dict.

        Args:
            runs: ids or labels (see ``find_run``) of the runs to export.
        """
        known = self.runs()
        if runs is None:
            chosen = [r.id for r in known]
        else:
            chosen = [_pick_run(known, which, str(self.path)).id for which in runs]
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "runs": [self.run_export(run) for run in chosen],
        }

    def export_json(
        self, file: str | PathLike[str] | IO[str], runs: Iterable[int | str] | None = None
    ) -> None:
        """Write ``export(runs)`` as JSON to a path or an open text file."""
        doc = self.export(runs)
        if isinstance(file, (str, PathLike)):
            write_whole(file, json.dumps(doc, allow_nan=False))
        else:
            json.dump(doc, file, allow_nan=False)

    def import_json(self, data: str | PathLike[str] | Mapping[str, object]) -> list[int]:
        """Add the runs of an export (a file path or the dict) as new runs of this store.

        Each exported run becomes a run of its own with a new id, keeping its
        label, note, times and events; nothing is merged into an existing run.
        This store's own run (the one it writes to) is unchanged.

        Returns:
            The ids of the new runs, in the export's order.

        Raises:
            ValueError: it is not an otto monitor export.
        """
        entries = checked_export_runs(load_export(data))
        added: list[int] = []
        with self._transaction():
            for entry in entries:
                added.append(self._import_run(entry))
        return added

    def _import_run(self, entry: Mapping[str, Any]) -> int:
        samples = cast(Mapping[str, Mapping[str, Sequence[Sequence[float]]]], entry["samples"])
        status = cast(Mapping[str, Sequence[Sequence[Any]]], entry["status"])
        rounds = cast(Sequence[Sequence[float]], entry["rounds"])
        events = cast(Sequence[Mapping[str, Any]], entry["events"])
        outages = outages_of_export(entry)
        times = [t for t, _ in rounds] + [
            p[0][0] for m in samples.values() for p in m.values() if p
        ]
        started = entry.get("started")
        if started is None:
            started = min(times, default=0.0)
        ended = entry.get("ended")
        if ended is None and "started" not in entry:
            ended = max(times, default=None)  # a version-1 export: a finished run
        interval = entry.get("interval")
        meta = cast(Mapping[str, str], entry.get("meta") or {})
        if interval is None and "interval" in meta:
            with contextlib.suppress(ValueError):
                interval = float(meta["interval"])
        hosts = list(entry.get("hosts") or [])
        cursor = self._db.execute(
            "INSERT INTO runs (label, note, started, ended, interval, hosts)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (entry.get("label"), entry.get("note"), started, ended, interval, json.dumps(hosts)),
        )
        assert cursor.lastrowid is not None
        run = cursor.lastrowid
        self._db.executemany(
            "INSERT OR REPLACE INTO meta (run_id, key, value) VALUES (?, ?, ?)",
            [(run, key, str(value)) for key, value in meta.items()],
        )
        for name in hosts:
            self._id(self._hosts, "hosts", name)
        self._db.executemany(
            "INSERT OR REPLACE INTO rounds (run_id, t, duration) VALUES (?, ?, ?)",
            [(run, t, d) for t, d in rounds],
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO host_rounds (run_id, host_id, t, up, error)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (run, self._id(self._hosts, "hosts", host), t, int(up), error)
                for host, rows in status.items()
                for t, up, error in rows
            ],
        )
        pairs: list[tuple[int, int, int]] = []
        rows: list[tuple[int, float, int, int, float]] = []
        for host, metrics in samples.items():
            host_id = self._id(self._hosts, "hosts", host)
            for metric, points in metrics.items():
                metric_id = self._id(self._metrics, "metrics", metric)
                pairs.append((run, host_id, metric_id))
                rows.extend((run, t, host_id, metric_id, v) for t, v in points)
        rows.sort(key=lambda row: (row[1], row[2], row[3]))
        self._db.executemany(
            "INSERT OR IGNORE INTO series (run_id, host_id, metric_id) VALUES (?, ?, ?)", pairs
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO samples (run_id, t, host_id, metric_id, value)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO events (run_id, id, t, t_end, label, color, host, line)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run,
                    e["id"],
                    e["t"],
                    e.get("end"),
                    e["label"],
                    e.get("color"),
                    e.get("host"),
                    e.get("line"),
                )
                for e in events
            ],
        )
        self._db.executemany(
            _UPSERT_OUTAGE,
            [
                (run, self._id(self._hosts, "hosts", o.host), o.start, o.end, o.error)
                for o in outages
            ],
        )
        return run

    def close(self) -> None:
        """Close the database (idempotent)."""
        self._db.close()

    def __enter__(self) -> MetricStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _reading(self) -> _Transaction:
        return _Transaction(self, "BEGIN")

    def _own_run(self, t: float | None) -> int:
        if self._run is None:
            self.start_run(started=t)
        assert self._run is not None
        return self._run

    def _read_run(self, run: int | None) -> int:
        if run is not None:
            return run
        if self._run is not None:
            return self._run
        (latest,) = self._db.execute("SELECT coalesce(max(id), 0) FROM runs").fetchone()
        return int(latest)

    def _id(self, cache: dict[str, int], table: str, name: str) -> int:
        found = cache.get(name)
        if found is None:
            # table is one of two constants, never user input. Another process may
            # have added the name already: its id is then the one to use.
            self._db.execute(f"INSERT OR IGNORE INTO {table} (name) VALUES (?)", (name,))
            (found,) = self._db.execute(
                f"SELECT id FROM {table} WHERE name = ?", (name,)
            ).fetchone()
            cache[name] = found
        return found


def _schema_statements() -> list[str]:
    # One by one: executescript would commit the transaction they are part of.
    return [statement.strip() for statement in _SCHEMA.split(";") if statement.strip()]


def _migration_steps() -> list[str]:
    """The SQL that turns a version-1 database into version 2 (one transaction)."""
    steps = [f"ALTER TABLE {name} RENAME TO v1_{name}" for name in _V1_RENAMED]
    steps += _schema_statements()
    steps += list(_MIGRATE_V1_COPY)
    steps += [f"DROP TABLE v1_{name}" for name in _V1_RENAMED]
    return steps


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK (and forget the names cached) when the
    block raises."""

    def __init__(self, store: MetricStore, begin: str = "BEGIN IMMEDIATE") -> None:
        self._store = store
        self._begin = begin

    def __enter__(self) -> None:
        self._store._db.execute(self._begin)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        db = self._store._db
        if exc_type is None:
            db.execute("COMMIT")
            return
        if db.in_transaction:
            db.execute("ROLLBACK")
        # Ids taken in the rolled-back transaction are gone with it: look them up again.
        self._store._forget_names()


def _pick_run(runs: Sequence[Run], which: int | str | None, where: str) -> Run:
    if not runs:
        raise StoreError(f"{where} holds no run yet")
    if which is None:
        return runs[-1]
    if isinstance(which, int) or (isinstance(which, str) and which.isdigit()):
        wanted = int(which)
        for run in runs:
            if run.id == wanted:
                return run
    else:
        labelled = [run for run in runs if run.label == which]
        if labelled:
            return labelled[-1]
    listed = ", ".join(run.name for run in runs[-10:])
    more = f" (the last 10 of {len(runs)})" if len(runs) > 10 else ""
    raise StoreError(f"{where} has no run {which!r}; its runs{more}: {listed}")


def _no_constant(name: str) -> float:
    # Python's json reads NaN and Infinity, which JSON has not: no other reader takes them.
    raise ValueError(f"{name} is not a JSON number")


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
            try:
                doc = json.load(f, parse_constant=_no_constant)
            except ValueError as exc:  # not JSON, NaN or Infinity, not UTF-8
                raise ValueError(f"{where} is not JSON: {exc}") from None
            except RecursionError:
                raise ValueError(f"{where}: JSON nested too deep") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{where} is not an otto monitor export (no format {EXPORT_FORMAT!r})")
    version = doc.get("version")
    if version not in (1, EXPORT_VERSION):
        raise ValueError(
            f"{where}: export version {version!r} is not supported "
            f"(this otto reads 1 to {EXPORT_VERSION})"
        )
    if version == EXPORT_VERSION and not isinstance(doc.get("runs"), list):
        raise ValueError(f"{where}: a version-{EXPORT_VERSION} export without a 'runs' list")
    return doc


def checked_export_runs(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``export_runs(doc)``, each run checked by ``export_check.checked_run``.

    Raises:
        ValueError: a value of a run is not what its place needs; the message
            names the run and the place, and says that nothing was imported.
    """
    checked = []
    for i, entry in enumerate(export_runs(doc), 1):
        try:
            checked.append(checked_run(entry))
        except ValueError as exc:
            raise ValueError(
                f"run {i} of the export is malformed: {exc}; nothing was imported"
            ) from None
    return checked


def outages_of_export(entry: Mapping[str, Any]) -> list[Outage]:
    """The outages of an export's run: its ``outages`` list, or, in an export written
    without one (an older otto, ``Collector.export``), derived from its ``status``."""
    listed = entry.get("outages")
    if listed is not None:
        return sorted((Outage.from_dict(o) for o in listed), key=lambda o: (o.start, o.host))
    status = cast(Mapping[str, Sequence[Sequence[Any]]], entry.get("status") or {})
    found = [
        outage
        for host, rows in status.items()
        for outage in derive_outages(host, ((float(t), bool(up), str(e)) for t, up, e in rows))
    ]
    return sorted(found, key=lambda o: (o.start, o.host))


def export_runs(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runs of a checked export (``load_export``), each with every field set.

    A version-1 export is one run without id, label or times.
    """
    entries = [doc] if doc.get("version") == 1 else list(doc.get("runs", []))
    runs: list[dict[str, Any]] = []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, Mapping):
            raise ValueError(f"run {i} of the export is not an object")
        out: dict[str, Any] = {
            "samples": {},
            "status": {},
            "rounds": [],
            "events": [],
            "meta": {},
            "hosts": [],
            "metrics": [],
        }
        out.update({k: v for k, v in entry.items() if k not in ("format", "version")})
        out.setdefault("id", i)
        runs.append(out)
    return runs


def run_from_export(entry: Mapping[str, Any]) -> Run:
    """The ``Run`` an export entry describes (times guessed from its data if missing)."""
    rounds = entry.get("rounds") or []
    times = [float(t) for t, _ in rounds]
    samples = entry.get("samples") or {}
    if not times:
        times = [p[0][0] for m in samples.values() for p in m.values() if p]
    interval = entry.get("interval")
    meta = entry.get("meta") or {}
    if interval is None and "interval" in meta:
        with contextlib.suppress(ValueError):
            interval = float(meta["interval"])
    started = entry.get("started")
    return Run(
        id=int(entry.get("id", 1)),
        started=float(started) if started is not None else min(times, default=0.0),
        label=entry.get("label"),
        note=entry.get("note"),
        ended=entry.get("ended") if "started" in entry else max(times, default=None),
        interval=interval,
        hosts=tuple(entry.get("hosts") or ()),
        rounds=len(rounds),
        last=max(times, default=None),
    )


def export_run_list(doc: Mapping[str, Any]) -> list[Run]:
    """The runs an export holds.

    Raises:
        ValueError: a run of it is malformed.
    """
    runs: list[Run] = []
    for i, entry in enumerate(export_runs(doc), 1):
        try:
            runs.append(run_from_export(entry))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ValueError(
                f"run {i} of the export is malformed ({type(exc).__name__}: {exc})"
            ) from None
    return runs


def pick_export_run(doc: Mapping[str, Any], which: int | str | None, where: str) -> dict[str, Any]:
    """The entry of an export's run named by ``which`` (see ``MetricStore.find_run``).

    Raises:
        StoreError: no such run.
        ValueError: a run of the export is malformed.
    """
    entries = export_runs(doc)
    run = _pick_run(export_run_list(doc), which, where)
    return next(e for e in entries if int(e["id"]) == run.id)
