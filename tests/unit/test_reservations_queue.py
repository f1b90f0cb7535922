"""The queue for hosts on a SQLite file: the fairness rule, heartbeats, leaving, waking up."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

import otto
from otto import loop as otto_loop
from otto.errors import ReservedError
from otto.lab import Lab
from otto.reservations import ENV_VAR, Grant, QueuedFor, StillQueued, Turn, hand_claim
from otto.reservations.base import Lease, Waiter, reserved_message
from otto.reservations.queue import describe_turn, parse_duration, span, wait_turn
from otto.reservations.sqlite import SQLiteStore
from otto.testing.hostlock import wait_for_hosts, wait_hosts_option

NOW = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


@pytest_asyncio.fixture
async def path(tmp_path: Path) -> AsyncIterator[Path]:
    yield tmp_path / "store.db"


def store(path: Path) -> SQLiteStore:
    return SQLiteStore(path)


async def waiting(
    path: Path, hosts: list[str], name: str, **kwargs: float
) -> tuple[asyncio.Task[Grant], asyncio.Event]:
    """``name`` waiting for ``hosts`` in a task of its own, once it has looked once."""
    told = asyncio.Event()
    own = store(path)

    async def wait() -> Grant:
        try:
            return await wait_turn(
                own,
                hosts,
                holder=name,
                claim=name,
                duration=kwargs.get("duration", 600),
                heartbeat=kwargs.get("heartbeat", 600),
                timeout=kwargs.get("timeout"),
                on_wait=lambda turn: told.set(),
            )
        finally:
            await own.close()

    task = asyncio.create_task(wait())
    looked = asyncio.create_task(told.wait())
    done, _ = await asyncio.wait([task, looked], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    looked.cancel()
    await asyncio.gather(looked, return_exceptions=True)
    assert done, f"{name} neither waited nor was served"
    return task, told


async def holders(path: Path) -> list[str]:
    async with store(path) as s:
        return [w.holder for w in await s.waiters()]


# --- the rule --------------------------------------------------------------------------------


async def test_a_free_host_is_granted_at_once_and_the_waiter_leaves(path: Path) -> None:
    task, told = await waiting(path, ["a"], "first")
    grant = await asyncio.wait_for(task, 30)
    assert grant.hosts == ["a"] and not told.is_set()
    assert grant.leases[0].claim == "first"
    assert await holders(path) == []


async def test_first_come_first_served_per_host(path: Path) -> None:
    async with store(path) as s:
        await s.reserve(["a"], holder="owner", claim="owner", duration=600)
        first, _ = await waiting(path, ["a", "b"], "first")
        # b is free, but an earlier waiter wants it: no overtaking.
        second, _ = await waiting(path, ["b"], "second")
        # c is wanted by nobody earlier: taken at once, past the queue.
        third, _ = await waiting(path, ["c"], "third")
        assert (await asyncio.wait_for(third, 30)).hosts == ["c"]
        assert await holders(path) == ["first", "second"]
        with pytest.raises(QueuedFor) as refused:
            await s.reserve(["b"], holder="rude", claim="rude", duration=60)
        assert [w.holder for w in refused.value.waiters] == ["first", "second"]
        assert not first.done() and not second.done()
        await s.release(claim="owner")
        assert (await asyncio.wait_for(first, 30)).hosts == ["a", "b"]
        assert not second.done()
        await s.release(claim="first")
        assert (await asyncio.wait_for(second, 30)).hosts == ["b"]


async def test_a_waiter_may_wait_for_hosts_its_own_claim_holds(path: Path) -> None:
    async with store(path) as s:
        await s.reserve(["a"], holder="me", claim="me", duration=600)
    task, told = await waiting(path, ["a", "b"], "me")
    grant = await asyncio.wait_for(task, 30)
    assert grant.hosts == ["a", "b"] and not told.is_set()


async def test_the_turn_names_the_holder_and_those_ahead(path: Path) -> None:
    async with store(path) as s:
        await s.reserve(["a"], holder="owner", claim="owner", duration=600)
        first, _ = await waiting(path, ["a"], "first")
        me = await s.enqueue(["a"], holder="me", claim="me", heartbeat=600)
        assert me.position == 2
        turn = await s.take_turn(me, duration=60, heartbeat=600, renew=False)
        assert turn.grant is None
        assert [x.holder for x in turn.leases] == ["owner"]
        assert [w.holder for w in turn.ahead] == ["first"]
        assert turn.position == 2
        assert turn.changes_in is not None and 0 < turn.changes_in <= 600
        await s.leave(me)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)


# --- leaving ---------------------------------------------------------------------------------


async def test_a_wait_that_times_out_leaves_and_says_why(path: Path) -> None:
    async with store(path) as s:
        await s.reserve(["a"], holder="owner", claim="owner", duration=600)
        task, _ = await waiting(path, ["a"], "late", timeout=0.2)
        with pytest.raises(StillQueued) as err:
            await asyncio.wait_for(task, 30)
        assert isinstance(err.value, TimeoutError) and isinstance(err.value, ReservedError)
        text = str(err.value)
        assert text.startswith("not free within 0.2s: waiting for a: a: reserved by owner until")
        assert text.endswith("you are #1 in the queue (left the queue)")
        assert [x.holder for x in err.value.leases if isinstance(x, Lease)] == ["owner"]
        assert await holders(path) == []


async def test_a_cancelled_wait_leaves_the_queue_at_once(path: Path) -> None:
    async with store(path) as s:
        await s.reserve(["a"], holder="owner", claim="owner", duration=600)
        task, told = await waiting(path, ["a"], "gone")
        assert told.is_set()
        assert await holders(path) == ["gone"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await holders(path) == []


async def test_a_dead_waiter_is_passed_over_once_its_heartbeat_ends(path: Path) -> None:
    async with store(path) as s:
        await s.reserve(["a"], holder="owner", claim="owner", duration=600)
        # A waiter that stops renewing: enqueued, then never looked at again.
        dead = await s.enqueue(["a"], holder="dead", claim="dead", heartbeat=0.5)
        after, _ = await waiting(path, ["a"], "after")
        await s.release(claim="owner")
        grant = await asyncio.wait_for(after, 30)
        # Its place ended first (the store's clock says so): then the host was handed on.
        assert grant.leases[0].since >= dead.until
        assert await holders(path) == []


# --- waking up -------------------------------------------------------------------------------


async def test_a_commit_elsewhere_wakes_the_queue(path: Path) -> None:
    async with store(path) as watcher, store(path) as other:
        await other.reserve(["a"], holder="x", claim="x", duration=60)
        mark = await watcher.queue_mark()
        await other.release(claim="x")
        # Woken long before its own timeout (a minute) runs out.
        await asyncio.wait_for(watcher.queue_changed(mark, 60), 20)


async def test_nothing_changed_waits_the_whole_timeout(path: Path) -> None:
    async with store(path) as watcher:
        await watcher.reserve(["a"], holder="x", claim="x", duration=60)
        mark = await watcher.queue_mark()
        # Its own commit is not a change by someone else.
        await watcher.release(claim="x")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(watcher.queue_changed(mark, 60), 0.5)


# --- words ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("1h30m", 5400)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert wait_hosts_option(text) == seconds


def test_wait_hosts_also_takes_seconds_and_refuses_nonsense() -> None:
    assert wait_hosts_option("45") == 45
    for bad in ("0", "-3", "10x", "", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            wait_hosts_option(bad)


def test_a_turn_in_words() -> None:
    lease = Lease("a", "bob@ci", NOW, LATER, "flash")
    ahead = Waiter(3, ("a", "b"), "carol", "carol", NOW, LATER, position=1)
    text = describe_turn(["a", "b"], Turn(None, (lease,), (ahead,), 2, 5.0))
    assert text == (
        "waiting for a, b: a: reserved by bob@ci until 2026-12-01 18:00:00Z (flash); "
        "before you in the queue: #1 carol waiting since 2026-12-01 17:00:00Z for a, b; "
        "you are #2 in the queue"
    )


def test_a_refusal_names_the_free_hosts_the_queue_asked_for_first() -> None:
    lease = Lease("a", "bob", NOW, LATER)
    ahead = Waiter(3, ("a", "b", "c"), "carol\x1b[2J", "carol", NOW, LATER, position=1)
    text = reserved_message([lease], [ahead], ["a", "b"])
    assert text == (
        "a: reserved by bob until 2026-12-01 18:00:00Z; b: promised to the queue: "
        "#1 carol\\x1b[2J waiting since 2026-12-01 17:00:00Z for a, b, c"
    )


# --- otto test --wait-hosts: the hold ------------------------------------------------------


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("OTTO_USER", "alice@laptop")
    path = tmp_path / "lab.json"
    hosts = [{"name": "web1", "term": "local"}, {"name": "web2", "term": "local"}]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    path.write_text(json.dumps({"hosts": hosts, "settings": {"reservations": url}}))
    built = Lab.load(path)
    yield built
    otto_loop.run(built.close())


def test_wait_for_hosts_takes_only_those_others_hold_as_the_users_own(
    lab: Lab, tmp_path: Path
) -> None:
    async def setup() -> None:
        async with store(tmp_path / "store.db") as s:
            await s.reserve(["web2"], holder="bob", claim="bob", duration=600)
            await s.reserve(["web1"], holder="alice@laptop", claim="hand:alice@laptop", duration=1)

    otto.run(setup())
    said: list[str] = []
    waits = threading.Event()

    def say(text: str) -> None:
        said.append(text)
        waits.set()

    def bob_releases_once_alice_waits() -> None:
        if waits.wait(30):
            SQLiteStore(tmp_path / "store.db").close_now()
            asyncio.run(release(tmp_path / "store.db", "bob"))

    bob = threading.Thread(target=bob_releases_once_alice_waits)
    bob.start()
    try:
        held = wait_for_hosts(lab, ["web1", "web2"], timeout=60, say=say)
    finally:
        waits.set()
        bob.join(30)
    try:
        assert held.hosts == ["web2"]
        assert said[0].startswith("waiting for web2: web2: reserved by bob until")
        leases = {x.host: x.claim for x in SQLiteStore(tmp_path / "store.db").leases_now()}
        assert leases["web2"] == hand_claim("alice@laptop")
    finally:
        held.close()
    left = {x.host for x in SQLiteStore(tmp_path / "store.db").leases_now()}
    assert "web2" not in left


async def release(path: Path, claim: str) -> None:
    async with store(path) as s:
        await s.release(claim=claim)


def test_wait_for_hosts_gives_up_and_leaves(lab: Lab, tmp_path: Path) -> None:
    async def setup() -> None:
        async with store(tmp_path / "store.db") as s:
            await s.reserve(["web1"], holder="bob", claim="bob", duration=600)

    otto.run(setup())
    with pytest.raises(StillQueued, match="web1: reserved by bob"):
        wait_for_hosts(lab, ["web1"], timeout=0.2)
    assert SQLiteStore(tmp_path / "store.db").waiters_now() == []


# --- otto.reserve(wait=...) ------------------------------------------------------------------


def test_reserve_waits_in_the_queue_for_a_held_host(lab: Lab) -> None:
    async def scenario() -> list[str]:
        queued = asyncio.Event()

        async def second() -> list[str]:
            async with otto.reserve(
                ["web1"], lab=lab, wait=60, on_wait=lambda turn: queued.set()
            ) as hosts:
                return [host.name for host in hosts]

        async with otto.reserve(["web1"], lab=lab):
            task = asyncio.create_task(second())
            await asyncio.wait_for(queued.wait(), 30)
            assert not task.done()
        # The first block has left: the waiter is served.
        return await asyncio.wait_for(task, 30)

    assert otto.run(scenario()) == ["web1"]


def test_reserve_gives_up_waiting_with_still_queued(lab: Lab) -> None:
    async def scenario() -> None:
        async with otto.reserve(["web1"], lab=lab):
            with pytest.raises(StillQueued, match="web1: reserved by alice@laptop until"):
                async with otto.reserve(["web1"], lab=lab, wait=0.2):
                    pass
            with pytest.raises(ReservedError, match="web1: reserved by"):
                async with otto.reserve(["web1"], lab=lab):
                    pass
            with pytest.raises(ValueError, match="wait must be 0 or more seconds"):
                async with otto.reserve(["web1"], lab=lab, wait=-1):
                    pass

    otto.run(scenario())


def test_a_lease_from_a_row_is_the_same_frozen_lease() -> None:
    row = ("web1", "bob", NOW, LATER, "flash", "ci:1", "run:x")
    fast = Lease.from_row(row)
    assert fast == Lease(*row) and hash(fast) == hash(Lease(*row))
    assert repr(fast) == repr(Lease(*row))
    # Rows with more columns (RETURNING ..., now()) keep the first seven.
    assert Lease.from_row((*row, NOW)) == fast
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.host = "web2"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "0.2s"), (45, "45s"), (90, "1m30s"), (1800, "30m"), (3600, "1h"), (5400, "1h30m")],
)
def test_a_wait_in_words(seconds: float, text: str) -> None:
    assert span(seconds) == text
