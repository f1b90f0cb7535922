"""Reservations without servers: the SQLite store, otto.reserve's lease, guards, parsing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import otto
from otto.cli.reservecmds import parse_duration
from otto.errors import LabError, LeaseLost, ReservationStoreError, ReservedError
from otto.lab import Lab
from otto.reservations import (
    DEFAULT_HEARTBEAT,
    ENV_VAR,
    HEARTBEAT_ENV,
    Grant,
    Holding,
    Lease,
    hand_claim,
    heartbeat_seconds,
    holder_identity,
    mask_url,
    open_store,
    resolve_hosts,
    run_identity,
    store_url,
)
from otto.reservations.base import check_labels, printable
from otto.reservations.sqlite import SQLiteStore, default_path, path_of_url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "data" / "reservations.db")
    yield opened
    opened.close_now()


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    path = tmp_path / "lab.json"
    hosts = [
        {"name": "web1", "term": "local", "tags": ["web"]},
        {"name": "web2", "term": "local", "tags": ["web", "big"]},
        {"name": "db1", "term": "local"},
    ]
    path.write_text(json.dumps({"hosts": hosts}))
    return Lab.load(path)


# --- identities, URLs, durations -------------------------------------------------------


def test_holder_is_otto_user_else_login_at_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTTO_USER", "alice@ci")
    assert holder_identity() == "alice@ci"
    monkeypatch.delenv("OTTO_USER")
    login, _, machine = holder_identity().partition("@")
    assert login and machine


def test_run_is_otto_run_else_machine_and_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTTO_RUN", "nightly-42")
    assert run_identity() == "nightly-42"
    monkeypatch.delenv("OTTO_RUN")
    assert run_identity().endswith(f":{__import__('os').getpid()}")


def test_passwords_are_masked() -> None:
    assert mask_url("postgresql://otto:pa:ss@db:5432/x") == "postgresql://otto:***@db:5432/x"
    assert mask_url("postgresql://db/x") == "postgresql://db/x"
    assert mask_url("sqlite:////tmp/r.db") == "sqlite:////tmp/r.db"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "10x", "h", "0m", "-5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|more than 0s"):
        parse_duration(text)


def test_store_url_lab_then_env_then_default(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store_url(lab) == f"sqlite:///{tmp_path / 'xdg' / 'otto' / 'reservations.db'}"
    assert default_path() == tmp_path / "xdg" / "otto" / "reservations.db"
    monkeypatch.setenv(ENV_VAR, "postgresql://u:p@h/db")
    assert store_url(lab) == "postgresql://u:p@h/db"
    lab.reservations = "sqlite:////tmp/lab.db"
    assert store_url(lab) == "sqlite:////tmp/lab.db"


def test_lab_file_names_its_store(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    path.write_text(json.dumps({"hosts": [], "settings": {"reservations": url}}))
    assert Lab.load(path).reservations == url
    path.write_text(json.dumps({"hosts": [], "settings": {"reservations": "mysql://x"}}))
    with pytest.raises(LabError, match=r"settings: 'reservations' must be a store URL"):
        Lab.load(path)


def test_open_store_by_url(tmp_path: Path) -> None:
    sqlite_store = open_store(f"sqlite:///{tmp_path}/r.db")
    assert isinstance(sqlite_store, SQLiteStore)
    assert sqlite_store.path == tmp_path / "r.db"
    assert path_of_url("sqlite:///relative.db") == Path("relative.db")
    postgres = open_store("postgresql://otto:secret@db.example:5432/lab")
    assert type(postgres).__name__ == "PostgresStore"
    assert "secret" not in repr(postgres)
    with pytest.raises(ReservationStoreError, match=r"redis://h: unknown kind of URL"):
        open_store("redis://h")
    with pytest.raises(ReservationStoreError, match="no file named"):
        open_store("sqlite:///")


def test_names_or_tags(lab: Lab) -> None:
    assert resolve_hosts(lab, "web") == ["web1", "web2"]
    assert resolve_hosts(lab, ["db1", "web"]) == ["db1", "web1", "web2"]
    assert resolve_hosts(lab, ["web2", "big"]) == ["web2"]
    with pytest.raises(LabError, match="no host or tag named 'nope'"):
        resolve_hosts(lab, ["web1", "nope"])


# --- the SQLite store ------------------------------------------------------------------------


async def test_reading_a_missing_store_creates_nothing(store: SQLiteStore) -> None:
    assert await store.leases(["web1"]) == []
    assert await store.release(["web1"]) == []
    assert not store.path.parent.exists()


async def test_all_or_nothing(store: SQLiteStore) -> None:
    grant = await store.reserve(["a", "b"], holder="alice", claim="c1", duration=60, note="x")
    assert grant.hosts == ["a", "b"]
    assert {lease.until - lease.since for lease in grant.leases} == {timedelta(seconds=60)}
    with pytest.raises(ReservedError, match=r"b: reserved by alice until .*Z \(x\)") as caught:
        await store.reserve(["c", "b"], holder="bob", claim="c2", duration=60)
    assert [lease.host for lease in caught.value.leases] == ["b"]  # type: ignore[attr-defined]
    assert [lease.host for lease in await store.leases()] == ["a", "b"]  # c was not taken


async def test_the_same_claim_extends_and_keeps_since(store: SQLiteStore) -> None:
    first = await store.reserve(["a"], holder="alice", claim="c1", duration=10)
    again = await store.reserve(["a"], holder="alice", claim="c1", duration=100)
    assert again.leases[0].since == first.leases[0].since
    assert again.leases[0].until > first.leases[0].until


async def test_force_takes_a_host(store: SQLiteStore) -> None:
    await store.reserve(["a"], holder="alice", claim="c1", duration=60)
    grant = await store.reserve(["a"], holder="bob", claim="c2", duration=60, force=True)
    assert grant.leases[0].holder == "bob"
    renewed = await store.renew(["a"], claim="c1", duration=60)
    assert renewed.leases == ()  # alice's claim lost it


async def test_an_expired_lease_is_free_and_cannot_be_renewed(store: SQLiteStore) -> None:
    await store.reserve(["a"], holder="alice", claim="c1", duration=0.001)
    conn = sqlite3.connect(store.path)
    # Expired by the store's clock: moved back rather than waited for.
    conn.execute("UPDATE leases SET until = until - 10")
    conn.commit()
    conn.close()
    assert await store.leases(["a"]) == []
    assert (await store.renew(["a"], claim="c1", duration=60)).leases == ()
    grant = await store.reserve(["a"], holder="bob", claim="c2", duration=60)
    assert grant.leases[0].holder == "bob"


async def test_release_by_claim_holder_or_host(store: SQLiteStore) -> None:
    await store.reserve(["a", "b"], holder="alice", claim="c1", duration=60)
    await store.reserve(["c"], holder="bob", claim="c2", duration=60)
    assert await store.release(["a"], claim="other") == []
    assert [x.host for x in await store.release(["a"], claim="c1")] == ["a"]
    assert [x.host for x in await store.release(holder="alice")] == ["b"]
    assert [x.host for x in await store.conflicts(["c"], "alice")] == ["c"]
    assert await store.conflicts(["c"], "bob") == []
    assert [x.host for x in await store.release(["c"])] == ["c"]
    assert await store.leases() == []


async def test_times_come_from_sqlite(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real = __import__("time").time
    monkeypatch.setattr("time.time", lambda: real() + 10 * 86400)
    grant = await store.reserve(["a"], holder="alice", claim="c1", duration=60)
    monkeypatch.undo()
    now = datetime.now(UTC)
    assert abs((grant.now - now).total_seconds()) < 30
    assert abs((grant.leases[0].until - now).total_seconds() - 60) < 30


async def test_a_corrupt_file_is_named_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "reservations.db"
    garbage = b"this is not a database\n" * 200
    path.write_bytes(garbage)
    broken = SQLiteStore(path)
    for attempt in (broken.leases(["a"]), broken.reserve(["a"], holder="x", claim="c", duration=1)):
        with pytest.raises(ReservationStoreError, match="not a readable SQLite database") as e:
            await attempt
        assert str(path) in str(e.value)
    await broken.close()
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reservations.db"]


async def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    other = SQLiteStore(path)
    with pytest.raises(ReservationStoreError, match=r"app.db: a SQLite database, but not otto's"):
        await other.reserve(["a"], holder="x", claim="c", duration=1)
    await other.close()
    assert path.read_bytes() == before


async def test_a_closed_store_says_so(store: SQLiteStore) -> None:
    await store.close()
    with pytest.raises(ReservationStoreError, match="used after close"):
        await store.reserve(["a"], holder="x", claim="c", duration=1)


# --- otto.reserve and the guard -------------------------------------------------------------


async def test_reserve_holds_renews_and_releases(
    lab: Lab, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    renewed = asyncio.Event()
    renew = store.renew

    async def watched_renew(hosts: list[str], *, claim: str, duration: float) -> Grant:
        grant = await renew(hosts, claim=claim, duration=duration)
        renewed.set()
        return grant

    monkeypatch.setattr(store, "renew", watched_renew)
    async with otto.reserve("web", duration=3, note="flash", lab=lab, store=store) as hosts:
        assert [h.name for h in hosts] == ["web1", "web2"]
        first = {x.host: x.until for x in await store.leases()}
        assert set(first) == {"web1", "web2"}
        await asyncio.wait_for(renewed.wait(), 5)  # every duration/3
        after = {x.host: x.until for x in await store.leases()}
        assert all(after[h] > first[h] for h in first)
        result = await hosts[0].run("echo held")
        assert result.only.output == "held"
        with pytest.raises(ReservedError, match=r"web2: reserved by .* \(flash\)"):
            await store.reserve(["web2"], holder="bob", claim="bob", duration=5)
    assert await store.leases() == []
    assert hosts[0]._guard is None
    await lab.close()


async def test_reserve_fails_whole_when_one_host_is_held(lab: Lab, store: SQLiteStore) -> None:
    await store.reserve(["web2"], holder="bob@ci", claim=hand_claim("bob@ci"), duration=60)
    with pytest.raises(ReservedError, match=r"web2: reserved by bob@ci until"):
        async with otto.reserve(["web1", "web2"], lab=lab, store=store):
            pytest.fail("entered a reservation that did not hold every host")
    assert [x.host for x in await store.leases()] == ["web2"]


async def test_a_lost_lease_refuses_every_verb(lab: Lab, store: SQLiteStore) -> None:
    host = lab.host("web1")
    holding = Holding(store, ["web1"], "c1")
    now = datetime.now(UTC)
    lease = Lease("web1", "me", now, now + timedelta(seconds=30), claim="c1")
    holding.granted(Grant((lease,), now), sent=__import__("time").monotonic())
    host.set_guard(holding)
    try:
        assert (await host.run("true")).is_ok
        holding.lose("web1", "could not renew it: store unreachable")
        for verb in (
            host.run("true"),
            host.oneshot("true"),
            host.put([], "/tmp"),
            host.get([], "/tmp"),
            host.open_session("other"),
        ):
            with pytest.raises(LeaseLost, match=rf"web1: not acting on it: .*{store.path}"):
                await verb
    finally:
        host.set_guard(None)
        await lab.close()


async def test_a_lease_past_its_end_refuses_without_any_renewal(
    lab: Lab, store: SQLiteStore
) -> None:
    host = lab.host("web1")
    holding = Holding(store, ["web1"], "c1")
    now = datetime.now(UTC)
    lease = Lease("web1", "me", now, now + timedelta(seconds=5), claim="c1")
    # Sent 10 s ago by the monotonic clock: the 5 s lease has ended.
    holding.granted(Grant((lease,), now), sent=__import__("time").monotonic() - 10)
    host.set_guard(holding)
    try:
        with pytest.raises(LeaseLost, match=r"ended at .* before the store confirmed a renewal"):
            await host.run("true")
    finally:
        host.set_guard(None)


async def test_any_file_name(tmp_path: Path) -> None:
    folder = tmp_path / "we ird?#%20 'dir\""
    url = f"sqlite:///{folder}/r.db"
    store = open_store(url)
    assert isinstance(store, SQLiteStore)
    async with store:
        await store.reserve(["a"], holder="x", claim="c", duration=60)
    assert (folder / "r.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]


# --- the heartbeat, and what is printed -------------------------------------------------------


def test_heartbeat_from_argument_env_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HEARTBEAT_ENV, raising=False)
    assert heartbeat_seconds() == DEFAULT_HEARTBEAT == 60.0
    assert heartbeat_seconds(timedelta(seconds=5)) == 5.0
    monkeypatch.setenv(HEARTBEAT_ENV, "2.5")
    assert heartbeat_seconds() == 2.5
    assert heartbeat_seconds(7) == 7.0
    for bad in ("soon", "0", "-1", "nan", "inf"):
        monkeypatch.setenv(HEARTBEAT_ENV, bad)
        with pytest.raises(ValueError, match=r"\$OTTO_HEARTBEAT"):
            heartbeat_seconds()


@pytest.mark.parametrize(("duration", "heartbeat", "lease"), [(3600, 4, 4), (2, 60, 2)])
async def test_the_store_holds_one_heartbeat_never_the_whole_duration(
    lab: Lab, store: SQLiteStore, duration: float, heartbeat: float, lease: float
) -> None:
    async with otto.reserve(["web1"], duration=duration, heartbeat=heartbeat, lab=lab, store=store):
        (held,) = await store.leases()
        assert abs((held.until - held.since).total_seconds() - lease) < 0.01
    await lab.close()


def test_printable_escapes_every_control_character() -> None:
    assert printable("bob@ci (flash)") == "bob@ci (flash)"
    assert printable("\x1b]0;t\x07\x1b[2J") == "\\x1b]0;t\\x07\\x1b[2J"
    assert printable("a\nb\rc\td\x7f\x9b") == "a\\nb\\rc\\td\\x7f\\x9b"
    assert printable("x\u202ey\u2028") == "x\\u202ey\\u2028"
    check_labels(holder="bob@ci", note="flash 4.2 — ünïcode ok", run="ci:42")
    with pytest.raises(ValueError, match=r"holder \(\$OTTO_USER\) 'bob\\x1b\[2J'"):
        check_labels(holder="bob\x1b[2J", note="", run="")


async def test_the_store_refuses_control_characters(store: SQLiteStore) -> None:
    with pytest.raises(ValueError, match="note"):
        await store.reserve(["a"], holder="x", claim="c", duration=60, note="a\nb")
    assert await store.leases() == []
    lease = Lease("web1", "\x1b[2J", datetime.now(UTC), datetime.now(UTC), note="n\nx")
    assert "\x1b" not in lease.describe() and "\n" not in lease.describe()
