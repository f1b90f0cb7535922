"""MetricStore: WAL, one transaction per round, readers in other processes, JSON round trip."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from otto.monitor.store import (
    APPLICATION_ID,
    Event,
    HostState,
    MetricStore,
    StoreError,
    load_export,
)


def fill(store: MetricStore, rounds: int = 3) -> None:
    for k in range(rounds):
        t = 1_700_000_000.123456789 + k * 5.0
        store.write_round(
            t,
            {
                "web1": {"cpu.percent": 12.5 + k / 3, "disk.used_percent[/mnt/My Share]": 0.1 * k},
                "db1": {"cpu.percent": 1e-300, "mem.used_bytes": 2.0**53 + k},
            },
            {"web1": HostState(True), "db1": HostState(True), "down1": HostState(False, "refused")},
            duration=0.0123 + k,
        )
    store.add_event(Event(1, 1_700_000_001.5, "deploy v2", "#f00", None))
    store.add_event(Event(2, 1_700_000_002.25, "load", None, 1_700_000_009.0))
    store.set_meta("interval", "5.0")


def test_schema_is_in_wal_mode_and_values_come_back(tmp_path: Path) -> None:
    with MetricStore(tmp_path / "m.db") as store:
        fill(store)
        (mode,) = store._db.execute("PRAGMA journal_mode").fetchone()
        assert mode == "wal"
        assert store.host_names() == ["db1", "down1", "web1"]
        assert store.metric_names() == [
            "cpu.percent",
            "disk.used_percent[/mnt/My Share]",
            "mem.used_bytes",
        ]
        assert store.series("db1", "mem.used_bytes") == [
            (1_700_000_000.123456789 + k * 5.0, 2.0**53 + k) for k in range(3)
        ]
        assert store.series("web1", "nope") == []
        assert store.sample_count() == 12
        assert [s for _, s in store.states("down1")] == [HostState(False, "refused")] * 3
        assert store.next_event_id() == 3


def test_one_transaction_per_round(tmp_path: Path) -> None:
    with MetricStore(tmp_path / "m.db") as store:
        store.start_run(label="one")
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        samples = {f"h{i}": {f"m{j}": float(i * j) for j in range(20)} for i in range(10)}
        assert store.write_round(1.0, samples, {h: HostState(True) for h in samples}, 0.5) == 200
        assert statements.count("BEGIN IMMEDIATE") == 1
        assert statements.count("COMMIT") == 1


def test_non_finite_values_are_left_out(tmp_path: Path) -> None:
    with MetricStore(tmp_path / "m.db") as store:
        written = store.write_round(1.0, {"h": {"a": math.nan, "b": math.inf, "c": 1.0}})
        assert written == 1
        assert store.metric_names() == ["c"]


def test_another_process_reads_while_the_writer_is_open(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with MetricStore(path) as store:
        fill(store, rounds=2)
        # The writer holds its connection (and a write transaction) open meanwhile.
        store._db.execute("BEGIN IMMEDIATE")
        store._db.execute("INSERT INTO hosts (name) VALUES ('uncommitted')")
        reader = (
            "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], timeout=0.1);"
            "print(db.execute('select count(*) from samples').fetchone()[0],"
            " db.execute('select count(*) from hosts').fetchone()[0])"
        )
        out = subprocess.run(
            [sys.executable, "-c", reader, str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        store._db.execute("ROLLBACK")
    assert out.stdout.split() == ["8", "3"]


def test_export_import_round_trip_is_exact(tmp_path: Path) -> None:
    with MetricStore(tmp_path / "a.db") as first:
        fill(first)
        exported = first.export()
        first.export_json(tmp_path / "a.json")
    with MetricStore(tmp_path / "b.db") as second:
        second.import_json(tmp_path / "a.json")
        again = second.export()
        assert second.series("web1", "cpu.percent") == [
            (1_700_000_000.123456789 + k * 5.0, 12.5 + k / 3) for k in range(3)
        ]
    assert again == exported
    assert json.loads((tmp_path / "a.json").read_text()) == exported
    (run,) = exported["runs"]  # type: ignore[misc]
    assert run["events"] == [
        {"id": 1, "t": 1_700_000_001.5, "end": None, "label": "deploy v2", "color": "#f00"},
        {"id": 2, "t": 1_700_000_002.25, "end": 1_700_000_009.0, "label": "load", "color": None},
    ]
    assert run["meta"] == {"interval": "5.0"}


def test_import_from_a_dict_and_into_a_store_with_data(tmp_path: Path) -> None:
    with MetricStore(tmp_path / "a.db") as first:
        fill(first)
        exported = first.export()
    with MetricStore(tmp_path / "b.db") as second:
        second.write_round(1.0, {"other": {"x": 1.0}})
        (added,) = second.import_json(exported)
        assert added == 2
        assert "other" in second.host_names()
        assert second.series("db1", "cpu.percent", run=added)[0][1] == 1e-300
        # The import is a run of its own: the store's run has none of its hosts.
        assert second.host_names() == ["other"]


def test_load_export_refuses_what_is_not_an_export(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an otto monitor export"):
        load_export({"format": "something else"})
    with pytest.raises(ValueError, match="version"):
        load_export({"format": "otto.monitor", "version": 99})


def other_programs_database(path: Path) -> bytes:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    db.execute("INSERT INTO contacts VALUES ('ada', '123')")
    db.commit()
    db.close()
    return path.read_bytes()


def test_another_programs_database_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "contacts.db"
    before = other_programs_database(path)
    with pytest.raises(StoreError, match=r"contacts\.db is another program's SQLite database"):
        MetricStore(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["contacts.db"]


def test_a_file_that_is_not_a_database_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\n" * 100)
    with pytest.raises(
        StoreError, match=r"notes\.txt as a metric database: file is not a database"
    ):
        MetricStore(path)
    assert path.read_text() == "shopping list\n" * 100


@pytest.mark.parametrize(
    ("name", "reason"),
    [("missing/m.db", "folder .*missing does not exist"), (".", "it is a folder, not a file")],
)
def test_a_database_that_cannot_be_opened_is_one_store_error(
    tmp_path: Path, name: str, reason: str
) -> None:
    with pytest.raises(StoreError, match=reason):
        MetricStore(tmp_path / name)


def test_an_otto_database_is_stamped_and_opens_again(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with MetricStore(path) as store:
        fill(store)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
    db.close()
    with MetricStore(path) as store:
        assert store.sample_count() == 12
