"""Runs in one history: a metric database holds many runs, old files are migrated,
exports keep runs apart, the dashboard and replays pick a run."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from otto.monitor import store as store_module
from otto.monitor.replay import Replay, list_runs
from otto.monitor.store import (
    APPLICATION_ID,
    EXPORT_VERSION,
    SCHEMA_VERSION,
    Event,
    HostState,
    MetricStore,
    StoreError,
    load_export,
)
from otto.monitor.web import create_app

T0 = 1_700_000_000.0

# The schema otto wrote before runs (user_version 1), verbatim: what an old file holds.
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE hosts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE metrics (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE rounds (t REAL PRIMARY KEY, duration REAL NOT NULL);
CREATE TABLE host_rounds (
    t REAL NOT NULL,
    host_id INTEGER NOT NULL REFERENCES hosts(id),
    up INTEGER NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (host_id, t)
) WITHOUT ROWID;
CREATE TABLE samples (
    t REAL NOT NULL,
    host_id INTEGER NOT NULL REFERENCES hosts(id),
    metric_id INTEGER NOT NULL REFERENCES metrics(id),
    value REAL NOT NULL,
    PRIMARY KEY (t, host_id, metric_id)
) WITHOUT ROWID;
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    t_end REAL,
    label TEXT NOT NULL,
    color TEXT
);
"""


def v1_database(path: Path, *, stamped: bool = True) -> None:
    """A database as otto's schema-1 store left it: WAL, stamped, three rounds of two hosts."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V1_SCHEMA)
    if stamped:
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute("PRAGMA user_version=1")
    db.execute("BEGIN")
    db.executemany("INSERT INTO hosts (id, name) VALUES (?, ?)", [(1, "web1"), (2, "db1")])
    db.executemany(
        "INSERT INTO metrics (id, name) VALUES (?, ?)", [(1, "cpu.percent"), (2, "mem.percent")]
    )
    for k in range(3):
        t = T0 + k * 5.0
        db.execute("INSERT INTO rounds VALUES (?, ?)", (t, 0.01 * (k + 1)))
        db.executemany(
            "INSERT INTO host_rounds VALUES (?, ?, ?, ?)",
            [(t, 1, 1, ""), (t, 2, int(k != 1), "" if k != 1 else "timed out")],
        )
        db.executemany(
            "INSERT INTO samples VALUES (?, ?, ?, ?)",
            [(t, 1, 1, 10.0 + k), (t, 1, 2, 40.0 + k / 3)]
            + ([(t, 2, 1, 1e-300), (t, 2, 2, 2.0**53 + k)] if k != 1 else []),
        )
    db.execute("INSERT INTO meta VALUES ('interval', '5.0')")
    db.execute("INSERT INTO events VALUES (1, ?, NULL, 'deploy v2', '#f00')", (T0 + 1.5,))
    db.execute("INSERT INTO events VALUES (2, ?, ?, 'load', NULL)", (T0 + 2.0, T0 + 9.0))
    db.execute("COMMIT")
    db.close()


def dump(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        header = [
            f"user_version={db.execute('PRAGMA user_version').fetchone()[0]}",
            f"application_id={db.execute('PRAGMA application_id').fetchone()[0]}",
        ]
        return header + list(db.iterdump())
    finally:
        db.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_runs(path: Path) -> None:
    """Three runs: 'nightly' twice (2 hosts, then 1) and an unlabelled one."""
    with MetricStore(path) as store:
        for i, (label, hosts) in enumerate(
            [("nightly", ["a", "b"]), ("smoke", ["a"]), ("nightly", ["c"])]
        ):
            start = T0 + 100 * i
            store.start_run(label=label, note=f"note {i}", interval=1.0, hosts=hosts, started=start)
            for k in range(3):
                store.write_round(
                    start + k,
                    {h: {"cpu.percent": 10.0 * i + k} for h in hosts},
                    {h: HostState(True) for h in hosts},
                    duration=0.01,
                )
            store.add_event(Event(1, start + 1.5, f"event of run {i + 1}"))
            store.end_run(start + 3)


# --- runs in one file ---------------------------------------------------------------------


def test_each_store_opened_for_writing_appends_a_run(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    write_runs(path)
    with MetricStore(path) as store:
        runs = store.runs()
        assert [(r.id, r.label, r.hosts, r.rounds) for r in runs] == [
            (1, "nightly", ("a", "b"), 3),
            (2, "smoke", ("a",), 3),
            (3, "nightly", ("c",), 3),
        ]
        assert runs[0].note == "note 0" and runs[0].ended == T0 + 3 and runs[0].last == T0 + 2
        assert store.run is None  # opened to read: no run started
        # Reading without a run reads the latest run; each run keeps its own data.
        assert store.host_names() == ["c"]
        assert store.host_names(run=1) == ["a", "b"]
        assert store.series("a", "cpu.percent", run=2) == [
            (T0 + 100 + k, 10.0 + k) for k in range(3)
        ]
        assert store.series("a", "cpu.percent", run=1) == [(T0 + k, float(k)) for k in range(3)]
        assert [e.label for e in store.events(run=2)] == ["event of run 2"]
        assert store.sample_count(run=1) == 6
        assert store.meta(run=3) == {"interval": "1.0"}
        # Writing starts a run of its own: nothing is added to the earlier ones.
        store.write_round(T0 + 500, {"a": {"cpu.percent": 1.0}})
        assert store.run == 4
        assert store.sample_count(run=1) == 6
        assert [r.id for r in store.runs()] == [1, 2, 3, 4]


def test_find_run_by_number_label_or_latest(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    write_runs(path)
    with MetricStore(path) as store:
        assert store.find_run().id == 3
        assert store.find_run(2).id == 2
        assert store.find_run("2").id == 2
        assert store.find_run("smoke").id == 2
        assert store.find_run("nightly").id == 3  # the latest with that label
        with pytest.raises(
            StoreError, match=r"has no run 'weekly'; its runs: #1 nightly, #2 smoke"
        ):
            store.find_run("weekly")
        with pytest.raises(StoreError, match="has no run 9"):
            store.find_run(9)
    with MetricStore(tmp_path / "empty.db") as empty, pytest.raises(StoreError, match="no run yet"):
        empty.find_run()


def test_two_stores_on_one_file_write_their_own_runs(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with MetricStore(path) as first, MetricStore(path) as second:
        first.start_run(label="one")
        second.start_run(label="two")
        for k in range(5):
            # Both name the same new hosts and metrics: the shared ids agree.
            first.write_round(T0 + k, {"h": {"m": 1.0, f"only1.{k}": 1.0}})
            second.write_round(T0 + k, {"h": {"m": 2.0, f"only2.{k}": 2.0}})
        assert first.series("h", "m") == [(T0 + k, 1.0) for k in range(5)]
        assert second.series("h", "m") == [(T0 + k, 2.0) for k in range(5)]
        assert len(first.metric_names()) == 6 and len(second.metric_names()) == 6


def test_a_failed_round_is_rolled_back_and_the_next_one_is_whole(tmp_path: Path) -> None:
    with MetricStore(tmp_path / "m.db") as store:
        store.start_run()
        with pytest.raises(TypeError):
            # A new host and metric are named, then a value that is not a number fails.
            store.write_round(T0, {"new": {"ok": 1.0, "bad": "x"}})  # type: ignore[dict-item]
        assert store.sample_count() == 0
        # The ids the rolled-back round took are not reused from a stale cache.
        assert store.write_round(T0 + 1, {"new": {"ok": 2.0}}) == 1
        assert store.series("new", "ok") == [(T0 + 1, 2.0)]
        assert store.host_names() == ["new"]


# --- version 1 files -----------------------------------------------------------------------


@pytest.mark.parametrize("stamped", [True, False], ids=["v1", "v1-before-the-stamp"])
def test_a_version_1_database_is_migrated_its_data_run_1(tmp_path: Path, stamped: bool) -> None:
    path = tmp_path / "old.db"
    v1_database(path, stamped=stamped)
    with MetricStore(path) as store:
        (run,) = store.runs()
        assert (run.id, run.label, run.interval, run.rounds) == (1, None, 5.0, 3)
        assert run.note == "migrated from a version-1 database"
        assert (run.started, run.ended) == (T0, T0 + 10.0)
        assert run.hosts == ("db1", "web1")
        assert store.host_names() == ["db1", "web1"]
        assert store.metric_names() == ["cpu.percent", "mem.percent"]
        assert store.series("db1", "mem.percent") == [(T0, 2.0**53), (T0 + 10.0, 2.0**53 + 2)]
        assert store.series("web1", "mem.percent")[1] == (T0 + 5.0, 40.0 + 1 / 3)
        assert [s for _, s in store.states("db1")][1] == HostState(False, "timed out")
        assert store.events() == [
            Event(1, T0 + 1.5, "deploy v2", "#f00"),
            Event(2, T0 + 2.0, "load", None, T0 + 9.0),
        ]
        assert store.meta() == {"interval": "5.0"}
        store.start_run(label="after")
        store.write_round(T0 + 60, {"web1": {"cpu.percent": 1.0}})
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
    tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not {t for t in tables if t.startswith("v1_")}
    db.close()
    assert [(r.id, r.label) for r in list_runs(path)] == [(1, None), (2, "after")]


def test_a_migration_that_fails_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    v1_database(path)
    before, before_dump = digest(path), dump(path)
    steps = store_module._migration_steps()
    # Fail at the very end, once every table has been rebuilt and copied.
    failing = [*steps[:-1], "INSERT INTO no_such_table VALUES (1)", steps[-1]]
    monkeypatch.setattr(store_module, "_migration_steps", lambda: failing)
    with pytest.raises(StoreError, match=r"old\.db as a metric database: no such table"):
        MetricStore(path)
    assert digest(path) == before
    assert dump(path) == before_dump
    monkeypatch.undo()
    with MetricStore(path) as store:  # and it migrates once the fault is gone
        assert store.sample_count() == 10


def test_a_migration_waits_for_another_process_and_gives_up_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    v1_database(path)
    before_dump = dump(path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "db.execute('ROLLBACK')\n",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(StoreError, match=r"another process holds it locked .*left unchanged"):
            MetricStore(path, timeout=0.2)
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(30)
        assert holder.stdout is not None
        holder.stdout.close()
    assert dump(path) == before_dump
    with MetricStore(path) as store:
        assert [r.id for r in store.runs()] == [1]


def test_a_database_of_a_newer_version_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    write_runs(path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    before = digest(path)
    with pytest.raises(
        StoreError,
        match=rf"new\.db is an otto metric database of a newer version \({SCHEMA_VERSION + 1}\)"
        rf" than this otto reads \({SCHEMA_VERSION}\); left unchanged",
    ):
        MetricStore(path)
    with pytest.raises(StoreError, match="newer version"):
        Replay.from_file(path)
    assert digest(path) == before


# --- export and import -------------------------------------------------------------------------


def test_export_one_run_or_all_and_import_adds_new_runs(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    write_runs(path)
    with MetricStore(path) as store:
        everything = store.export()
        smoke = store.export(["smoke"])
    assert everything["version"] == EXPORT_VERSION == 2
    runs = everything["runs"]
    assert isinstance(runs, list) and [r["label"] for r in runs] == ["nightly", "smoke", "nightly"]
    assert smoke["runs"] == [runs[1]]
    assert runs[1]["samples"] == {
        "a": {"cpu.percent": [[T0 + 100 + k, 10.0 + k] for k in range(3)]}
    }
    assert runs[1]["note"] == "note 1" and runs[1]["started"] == T0 + 100
    with MetricStore(tmp_path / "other.db") as other:
        other.start_run(label="mine")
        other.write_round(T0, {"a": {"cpu.percent": 99.0}})
        assert other.import_json(smoke) == [2]
        assert other.import_json(smoke) == [3]  # again: another run, never merged
        assert other.import_json(everything) == [4, 5, 6]
        assert [(r.id, r.label) for r in other.runs()] == [
            (1, "mine"),
            (2, "smoke"),
            (3, "smoke"),
            (4, "nightly"),
            (5, "smoke"),
            (6, "nightly"),
        ]
        assert other.series("a", "cpu.percent") == [(T0, 99.0)]  # its own run untouched
        for run in (2, 3, 5):
            assert other.series("a", "cpu.percent", run=run) == [
                (T0 + 100 + k, 10.0 + k) for k in range(3)
            ]
        again = other.export([5])["runs"]
    assert isinstance(again, list)
    assert {**again[0], "id": 2} == runs[1]  # the run comes back as it was exported


def test_a_version_1_export_imports_and_replays_as_one_run(tmp_path: Path) -> None:
    v1 = {
        "format": "otto.monitor",
        "version": 1,
        "meta": {"interval": "2.0"},
        "hosts": ["h"],
        "metrics": ["cpu.percent"],
        "rounds": [[T0, 0.1], [T0 + 2, 0.1]],
        "status": {"h": [[T0, True, ""], [T0 + 2, True, ""]]},
        "samples": {"h": {"cpu.percent": [[T0, 1.0], [T0 + 2, 2.0]]}},
        "events": [{"id": 1, "t": T0 + 1, "end": None, "label": "old", "color": None}],
    }
    assert load_export(v1) is not None
    with MetricStore(tmp_path / "m.db") as store:
        (run,) = store.import_json(v1)
        (stored,) = store.runs()
        assert (stored.started, stored.ended, stored.interval) == (T0, T0 + 2, 2.0)
        assert store.series("h", "cpu.percent", run=run) == [(T0, 1.0), (T0 + 2, 2.0)]
    replay = Replay(v1)
    assert replay.interval == 2.0
    assert replay.snapshot()["series"] == {"cpu.percent": {"h": [(T0, 1.0), (T0 + 2, 2.0)]}}
    assert [r["id"] for r in replay.runs()] == [1]


def test_events_keep_their_host_and_line_through_store_export_and_import(tmp_path: Path) -> None:
    line = "kernel: <script>alert(1)</script> oops\tat 0x1f"
    with MetricStore(tmp_path / "m.db") as store:
        store.add_event(Event(1, T0, "oops", "#c00", None, "web-1", line))
        store.add_event(Event(2, T0 + 1, "manual"))
        assert store.events() == [
            Event(1, T0, "oops", "#c00", None, "web-1", line),
            Event(2, T0 + 1, "manual"),
        ]
        exported = store.export()
    events = exported["runs"][0]["events"]  # type: ignore[index]
    assert events[0] == {
        "id": 1,
        "t": T0,
        "end": None,
        "label": "oops",
        "color": "#c00",
        "host": "web-1",
        "line": line,
    }
    assert "host" not in events[1]
    with MetricStore(tmp_path / "b.db") as other:
        (run,) = other.import_json(json.loads(json.dumps(exported)))
        assert other.events(run=run)[0].line == line
    assert Replay(exported).snapshot()["events"] == events


# --- replay and the dashboard pick a run -------------------------------------------------------


def test_replay_picks_a_run_of_a_database_or_an_export(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    write_runs(path)
    latest = Replay.from_file(path)
    assert latest.run.id == 3 and latest.run.label == "nightly"
    assert list(latest.snapshot()["hosts"]) == ["c"]  # type: ignore[call-overload]
    smoke = Replay.from_file(path, run="smoke")
    assert smoke.run.id == 2
    assert smoke.snapshot()["run"] == smoke.run.as_dict()
    assert [r["label"] for r in smoke.runs()] == ["nightly", "smoke", "nightly"]
    first = smoke.run_source(1)
    assert isinstance(first, Replay) and first.run.id == 1
    assert smoke.run_source("2") is smoke
    exported = tmp_path / "m.json"
    with MetricStore(path) as store:
        store.export_json(exported, runs=[1, 2])
    from_json = Replay.from_file(exported, run=1)
    assert from_json.snapshot()["series"] == first.snapshot()["series"]
    assert Replay.from_file(exported).run.id == 2
    assert [r.id for r in list_runs(exported)] == [1, 2]
    with pytest.raises(StoreError, match="has no run 3"):
        Replay.from_file(exported, run=3)


async def test_the_dashboard_lists_runs_and_serves_the_one_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    write_runs(path)
    app = create_app(Replay.from_file(path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        runs = (await client.get("/api/runs")).json()
        assert runs["current"] == 3
        assert [(r["id"], r["label"], r["hosts"]) for r in runs["runs"]] == [
            (1, "nightly", ["a", "b"]),
            (2, "smoke", ["a"]),
            (3, "nightly", ["c"]),
        ]
        default = (await client.get("/api/snapshot")).json()
        assert default["run"]["id"] == 3
        picked = (await client.get("/api/snapshot", params={"run": "1"})).json()
        assert picked["run"]["id"] == 1 and sorted(picked["hosts"]) == ["a", "b"]
        assert picked["series"]["cpu.percent"]["b"] == [[T0 + k, float(k)] for k in range(3)]
        by_label = (await client.get("/api/snapshot", params={"run": "smoke"})).json()
        assert by_label["run"]["id"] == 2
        missing = await client.get("/api/snapshot", params={"run": "nope"})
        assert missing.status_code == 404
        assert "has no run 'nope'" in missing.json()["error"]
        async with client.stream("GET", "/api/stream", params={"run": "2"}) as stream:
            messages = [
                json.loads(line[5:])
                async for line in stream.aiter_lines()
                if line.startswith("data:")
            ]
        assert [m["type"] for m in messages] == ["snapshot", "end"]
        assert messages[0]["snapshot"]["run"]["label"] == "smoke"
        assert (await client.get("/api/stream", params={"run": "9"})).status_code == 404


WRITER = """
import sys
from otto.monitor.store import MetricStore
with MetricStore(sys.argv[1]) as store:
    store.start_run(label=sys.argv[2])
    for k in range(30):
        store.write_round(float(k), {"h": {"m": 1.0, "only." + sys.argv[2]: 2.0}}, duration=0.0)
"""


def test_processes_creating_one_new_file_at_once_each_get_a_run(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in "abcd"
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
    runs = list_runs(path)
    assert sorted(r.label or "" for r in runs) == ["a", "b", "c", "d"]
    assert [r.rounds for r in runs] == [30] * 4
    with MetricStore(path) as store:
        for run in runs:
            assert store.metric_names(run=run.id) == ["m", f"only.{run.label}"]


@pytest.mark.parametrize(
    "run",
    [{"rounds": [5]}, {"samples": {"h": {"m": [["a"]]}}}, {"events": [{"t": 1}]}, "not a run"],
    ids=["rounds", "samples", "events", "string"],
)
def test_a_malformed_export_is_a_value_error_naming_the_run(tmp_path: Path, run: object) -> None:
    doc = {"format": "otto.monitor", "version": 2, "runs": [run]}
    with pytest.raises(ValueError, match=r"run 1 .*(malformed|not an object)"):
        Replay(doc).snapshot()
    with MetricStore(tmp_path / "m.db") as store:
        with pytest.raises(ValueError, match=r"run 1 .*(malformed|not an object)"):
            store.import_json(doc)
        assert store.runs() == []
