"""Outages from per-round host states: the rule, the incremental tracker, the store
(its table, the v2 -> v3 migration, export and import), replays, /metrics and the
dashboard's snapshot."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from otto.monitor.outages import LiveOutages, Outage, OutageTracker, derive_outages
from otto.monitor.prometheus import render_metrics
from otto.monitor.replay import Replay
from otto.monitor.store import (
    SCHEMA_VERSION,
    HostState,
    MetricStore,
    checked_export_runs,
    load_export,
)
from otto.monitor.web import MemorySource, create_app

T0 = 1_700_000_000.0
UP = (True, "")


def down(error: str = "timed out") -> tuple[bool, str]:
    return (False, error)


def states(*rows: tuple[float, tuple[bool, str]]) -> list[tuple[float, bool, str]]:
    return [(t, up, error) for t, (up, error) in rows]


# ------------------------------------------------------------------------ the rule


def test_one_outage_from_first_down_round_to_first_up_round() -> None:
    rows = states((0, UP), (1, down("refused")), (2, down("timed out")), (3, UP), (4, UP))
    assert derive_outages("db", rows) == [Outage("db", 1, 3, "refused")]


def test_down_at_the_start_begins_at_the_first_round() -> None:
    rows = states((10, down()), (11, down()), (12, UP))
    assert derive_outages("db", rows) == [Outage("db", 10, 12, "timed out")]


def test_down_at_the_end_is_open() -> None:
    rows = states((0, UP), (1, UP), (2, down()), (3, down()))
    (outage,) = derive_outages("db", rows)
    assert outage == Outage("db", 2, None, "timed out")
    assert outage.open
    assert outage.seconds(now=10) == 8


def test_a_single_down_round() -> None:
    rows = states((0, UP), (5, down()), (10, UP))
    assert derive_outages("db", rows) == [Outage("db", 5, 10, "timed out")]
    assert derive_outages("db", states((5, down()))) == [Outage("db", 5, None, "timed out")]


def test_flapping_gives_one_outage_per_down_run() -> None:
    pattern = [True, False, True, False, False, True, False, True]
    rows = [(float(k), up, "" if up else f"e{k}") for k, up in enumerate(pattern)]
    assert derive_outages("db", rows) == [
        Outage("db", 1, 2, "e1"),
        Outage("db", 3, 5, "e3"),
        Outage("db", 6, 7, "e6"),
    ]


def test_a_gap_without_rounds_neither_starts_nor_ends_an_outage() -> None:
    # Down before a gap of 100 s and down after it: one outage across the gap.
    across = states((0, UP), (1, down()), (101, down()), (102, UP))
    assert derive_outages("db", across) == [Outage("db", 1, 102, "timed out")]
    # Up, a gap, up: nothing; down after a gap starts at the first down round.
    after = states((0, UP), (100, down()), (101, UP))
    assert derive_outages("db", after) == [Outage("db", 100, 101, "timed out")]


def test_always_up_or_no_rounds_has_no_outage() -> None:
    assert derive_outages("db", states((0, UP), (1, UP))) == []
    assert derive_outages("db", []) == []


def test_states_in_any_order_and_repeated_times() -> None:
    rows = states((3, UP), (1, down()), (0, UP), (2, down()))
    assert derive_outages("db", rows) == [Outage("db", 1, 3, "timed out")]


def test_overlap_with_a_window() -> None:
    outage = Outage("db", 10, 20)
    assert outage.overlap(0, 100) == 10
    assert outage.overlap(15, 100) == 5
    assert outage.overlap(0, 12) == 2
    assert outage.overlap(30, 40) == 0
    assert Outage("db", 10).overlap(0, 25) == 15


def test_dict_round_trip() -> None:
    for outage in (Outage("db", 1.5, 2.25, "refused"), Outage("web", 3.0)):
        assert Outage.from_dict(json.loads(json.dumps(outage.as_dict()))) == outage


# ------------------------------------------------------------------------ the tracker


def test_tracker_reports_each_change_once_and_keeps_totals() -> None:
    tracker = OutageTracker()
    assert tracker.record_round(0, {"a": HostState(True), "b": HostState(False, "x")}) == [
        Outage("b", 0, None, "x")
    ]
    assert tracker.record_round(1, {"a": HostState(False, "y"), "b": HostState(False, "z")}) == [
        Outage("a", 1, None, "y")
    ]
    assert tracker.down_now() == {"a": Outage("a", 1, None, "y"), "b": Outage("b", 0, None, "x")}
    # A published round's dicts are taken too.
    changes = tracker.record_round(3, {"a": {"up": True}, "b": {"up": True, "last_error": ""}})
    assert changes == [Outage("a", 1, 3, "y"), Outage("b", 0, 3, "x")]
    assert tracker.down_now() == {}
    assert tracker.down_seconds() == {"a": 2, "b": 3}
    tracker.record(4, "a", False, "again")
    assert tracker.down_seconds(now=10) == {"a": 8, "b": 3}
    assert tracker.count("a") == 2 and tracker.count("b") == 1 and tracker.count("c") == 0
    assert [o.host for o in tracker.outages()] == ["b", "a", "a"]
    assert tracker.outages("a") == [Outage("a", 1, 3, "y"), Outage("a", 4, None, "again")]
    assert tracker.outages("nobody") == []


def test_tracker_ignores_a_state_no_later_than_the_hosts_last() -> None:
    tracker = OutageTracker()
    tracker.record(5, "a", False)
    assert tracker.record(5, "a", True) is None
    assert tracker.record(4, "a", True) is None
    assert tracker.down_now() == {"a": Outage("a", 5, None, "")}


def test_tracker_keeps_a_bounded_list_but_exact_totals() -> None:
    tracker = OutageTracker(max_kept=3)
    for k in range(10):
        tracker.record(2 * k, "a", False)
        tracker.record(2 * k + 1, "a", True)
    assert len(tracker.outages("a")) == 3
    assert tracker.count("a") == 10
    assert tracker.down_seconds() == {"a": 10}


def test_tracker_from_stored_outages_matches_the_derived_one() -> None:
    rows = {"a": states((0, UP), (1, down()), (3, UP), (4, down())), "b": states((0, UP))}
    derived = OutageTracker.from_states(rows)
    stored = OutageTracker.from_outages(derived.outages())
    assert stored.outages() == derived.outages()
    assert stored.down_seconds(now=9) == {"a": 7}
    assert derived.down_seconds(now=9) == {"a": 7, "b": 0}


# ------------------------------------------------------------------------ the store


def write_rounds(store: MetricStore, pattern: dict[str, list[bool]]) -> None:
    rounds = len(next(iter(pattern.values())))
    for k in range(rounds):
        store.write_round(
            T0 + k,
            {h: {"cpu.percent": 1.0} for h, ups in pattern.items() if ups[k]},
            {h: HostState(ups[k], "" if ups[k] else f"down {k}") for h, ups in pattern.items()},
            0.01,
        )


PATTERN = {
    "web": [True, False, False, True, True, False],
    "db": [False, True, True, True, True, True],
}
EXPECTED = [
    Outage("db", T0, T0 + 1, "down 0"),
    Outage("web", T0 + 1, T0 + 3, "down 1"),
    Outage("web", T0 + 5, None, "down 5"),
]


def test_the_store_keeps_a_runs_outages_as_it_writes(tmp_path: Path) -> None:
    with MetricStore(tmp_path / "m.db") as store:
        store.start_run(label="first")
        write_rounds(store, PATTERN)
        assert store.outages() == EXPECTED
        assert store.outages(host="web") == EXPECTED[1:]
        # A second run starts with no outage of its own, however the first one ended.
        store.start_run(label="second")
        write_rounds(store, {"web": [True, True], "db": [True, False]})
        assert store.outages() == [Outage("db", T0 + 1, None, "down 1")]
    with MetricStore(tmp_path / "m.db") as store:
        assert store.outages(run=1) == EXPECTED
        exported = store.export()
    runs = exported["runs"]
    assert isinstance(runs, list)
    assert runs[0]["outages"] == [o.as_dict() for o in EXPECTED]


def test_an_outage_change_of_a_failed_write_is_written_with_the_next_round(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.db"
    with MetricStore(path) as store:
        store.write_round(T0, {}, {"db": HostState(True)}, 0.01)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON rounds BEGIN SELECT RAISE(ABORT, 'full'); END"
        )
        with pytest.raises(sqlite3.IntegrityError):
            store.write_round(T0 + 1, {}, {"db": HostState(False, "gone")}, 0.01)
        assert store.outages() == []
        other.execute("DROP TRIGGER refuse")
        other.close()
        store.write_round(T0 + 2, {}, {"db": HostState(False, "still")}, 0.01)
        assert store.outages() == [Outage("db", T0 + 1, None, "gone")]
        store.write_round(T0 + 3, {}, {"db": HostState(True)}, 0.01)
        assert store.outages() == [Outage("db", T0 + 1, T0 + 3, "gone")]


def v2_database(path: Path) -> None:
    """A database as a version-2 otto left it: no outages table, user_version 2."""
    with MetricStore(path) as store:
        store.start_run(label="old")
        write_rounds(store, PATTERN)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TABLE outages")
    db.execute("PRAGMA user_version=2")
    db.close()


def test_a_version_2_database_gets_its_outages_derived(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    v2_database(path)
    with MetricStore(path) as store:
        assert store.outages(run=1) == EXPECTED
        # Writing goes on in a new run, with outages of its own.
        write_rounds(store, {"web": [False, True]})
        assert store.outages() == [Outage("web", T0, T0 + 1, "down 0")]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) == (3,)
    db.close()


def test_a_failed_migration_leaves_a_version_2_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v2.db"
    v2_database(path)

    def broken(self: MetricStore) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(MetricStore, "_fill_outages", broken)
    with pytest.raises(Exception, match="disk I/O error"):
        MetricStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (2,)
    tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "outages" not in tables
    db.close()


def test_export_and_import_keep_the_outages(tmp_path: Path) -> None:
    with MetricStore(tmp_path / "a.db") as store:
        write_rounds(store, PATTERN)
        store.export_json(tmp_path / "a.json")
    with MetricStore(tmp_path / "b.db") as other:
        (run,) = other.import_json(tmp_path / "a.json")
        assert other.outages(run=run) == EXPECTED


def test_an_export_without_outages_has_them_derived_from_its_status(tmp_path: Path) -> None:
    with MetricStore(tmp_path / "a.db") as store:
        write_rounds(store, PATTERN)
        doc = store.export()
    runs = doc["runs"]
    assert isinstance(runs, list)
    del runs[0]["outages"]  # as an older otto, or Collector.export, wrote it
    replay = Replay(doc)
    assert replay.outage_tracker().outages() == EXPECTED
    with MetricStore(tmp_path / "b.db") as other:
        (run,) = other.import_json(doc)
        assert other.outages(run=run) == EXPECTED


@pytest.mark.parametrize(
    ("outages", "message"),
    [
        ("many", r"outages: a list is needed, not a string"),
        ([{"host": "db", "start": "now"}], r"outages\[0\]\.start: a number is needed"),
        ([{"host": 3, "start": T0}], r"outages\[0\]\.host: a string is needed"),
        ([{"host": "db", "start": T0, "end": T0 - 1}], r"outages\[0\]\.end: .* is before"),
        ([{"host": "db", "start": T0, "error": None}], r"outages\[0\]\.error: a string"),
    ],
)
def test_export_check_refuses_malformed_outages(outages: object, message: str) -> None:
    doc = {"format": "otto.monitor", "version": 2, "runs": [{"id": 1, "outages": outages}]}
    with pytest.raises(ValueError, match=message):
        checked_export_runs(load_export(doc))


def test_export_check_takes_good_outages() -> None:
    good = [{"host": "db", "start": T0, "end": None}, {"host": "db", "start": 5, "end": 6}]
    doc = {"format": "otto.monitor", "version": 2, "runs": [{"id": 1, "outages": good}]}
    (run,) = checked_export_runs(load_export(doc))
    assert run["outages"] == [
        {"host": "db", "start": T0, "end": None, "error": ""},
        {"host": "db", "start": 5.0, "end": 6.0, "error": ""},
    ]


def test_a_replay_of_a_database_shows_its_outages(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with MetricStore(path) as store:
        write_rounds(store, PATTERN)
        store.end_run(T0 + 10)
    replay = Replay.from_file(path)
    snapshot = replay.snapshot()
    assert snapshot["outages"] == [o.as_dict() for o in EXPECTED]
    assert snapshot["now"] == T0 + 10
    # The outage open at the end of the run counts up to the run's end.
    assert replay.down_seconds() == {"web": 2 + 5, "db": 1}


# ------------------------------------------------------------------------ /metrics


def down_seconds_of(text: str) -> dict[str, float]:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    family = families["otto_host_down_seconds"]  # the parser drops "_total"
    assert family.type == "counter"
    return {s.labels["host"]: s.value for s in family.samples if s.name.endswith("_total")}


def test_the_down_seconds_counter_grows_while_down() -> None:
    now = [T0]
    source = MemorySource(interval=1.0, clock=lambda: now[0])
    source.push_round(T0, {"web": {"cpu.percent": 1.0}, "db": {"cpu.percent": 2.0}})
    assert down_seconds_of(render_metrics(source).decode()) == {"web": 0.0, "db": 0.0}
    source.push_round(T0 + 1, {"web": {"cpu.percent": 1.0}, "db": None})
    now[0] = T0 + 1.5
    first = down_seconds_of(render_metrics(source).decode())
    now[0] = T0 + 4
    second = down_seconds_of(render_metrics(source).decode())
    assert first == {"web": 0.0, "db": 0.5}
    assert second == {"web": 0.0, "db": 3.0}
    source.push_round(T0 + 5, {"web": {"cpu.percent": 1.0}, "db": {"cpu.percent": 2.0}})
    now[0] = T0 + 50
    assert down_seconds_of(render_metrics(source).decode()) == {"web": 0.0, "db": 4.0}


async def test_metrics_route_counts_down_seconds_and_never_goes_back() -> None:
    now = [T0]
    source = MemorySource(interval=1.0, clock=lambda: now[0])
    source.push_round(T0, {"db": None})
    transport = httpx.ASGITransport(app=create_app(source))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        now[0] = T0 + 2.5
        during = down_seconds_of((await client.get("/metrics")).text)
        # It answered again in a round that began before that scrape: the outage
        # ended at 2 s, but the counter stays at what was already reported.
        source.push_round(T0 + 2, {"db": {"cpu.percent": 1.0}})
        after = down_seconds_of((await client.get("/metrics")).text)
    assert during == {"db": 2.5}
    assert after == {"db": 2.5}


# ------------------------------------------------------------------------ live


async def test_live_outages_follow_a_sources_published_rounds() -> None:
    source = MemorySource(interval=1.0)
    live = LiveOutages(source)
    live.start()
    try:
        source.push_round(T0, {"db": None}, errors={"db": "refused"})
        source.push_round(T0 + 1, {"db": {"cpu.percent": 1.0}})
        async with asyncio.timeout(5):
            await live.wait_rounds(2)
    finally:
        await live.stop()
    assert live.outage_tracker().outages() == [Outage("db", T0, T0 + 1, "refused")]


async def test_snapshot_of_a_source_without_outages_gets_the_live_ones() -> None:
    class Plain:
        """A source with no tracker of its own (as a Collector)."""

        def __init__(self) -> None:
            self.inner = MemorySource(interval=1.0)

        def snapshot(self) -> dict[str, object]:
            snap = self.inner.snapshot()
            del snap["outages"], snap["now"]
            return snap

        def subscribe(self) -> AsyncIterator[dict[str, object]]:
            return self.inner.subscribe()

        def add_event(
            self, label: str, color: str | None = None, end: float | None = None
        ) -> dict[str, object]:
            return self.inner.add_event(label, color, end)

    plain = Plain()
    app = create_app(plain)
    live = app.state.otto_outages
    assert isinstance(live, LiveOutages)
    live.start()
    try:
        plain.inner.push_round(T0, {"db": None}, errors={"db": "refused"})
        async with asyncio.timeout(5):
            await live.wait_rounds(1)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            snapshot = (await client.get("/api/snapshot")).json()
    finally:
        await live.stop()
    assert snapshot["outages"] == [{"host": "db", "start": T0, "end": None, "error": "refused"}]
    assert snapshot["now"] >= T0
