"""The queue for hosts, with real processes, on a SQLite file and a real PostgreSQL server.

Every waiter is an ``otto reserve --wait`` (or ``otto test --wait-hosts``) process of
its own; the test waits on what each prints and on its exit, never on a clock, except
where the behaviour under test is a heartbeat running out.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from otto.errors import ReservedError
from otto.reservations import Grant, QueuedFor, ReservationStore, open_store
from otto.reservations.queue import wait_turn
from tests.lab import postgres
from tests.lab.reservations import ROOT

pytestmark = pytest.mark.integration

WAITERS = 10
HOLDER = "holder@lab"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pg() -> AsyncIterator[postgres.PostgresServer]:
    """A PostgreSQL server for this module, in its own network namespace."""
    problem = postgres.missing()
    if problem:
        pytest.skip(problem)
    server = postgres.PostgresServer()
    try:
        await server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'reservations.db'}"
    server: postgres.PostgresServer = request.getfixturevalue("pg")
    return server.url


@pytest.fixture
def host() -> str:
    """A host name of this test only (the PostgreSQL store outlives a test)."""
    return f"board-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def env(tmp_path: Path, host: str, store_url: str) -> Iterator[dict[str, str]]:
    """The environment of an ``otto`` process: a lab of local hosts, the store."""
    lab = tmp_path / "lab.json"
    hosts = [{"name": name, "term": "local"} for name in (host, f"{host}-b", f"{host}-c")]
    lab.write_text(json.dumps({"hosts": hosts}))
    yield {
        **os.environ,
        "OTTO_LAB": str(lab),
        "OTTO_RESERVATIONS": store_url,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "OTTO_HEARTBEAT": "600",
        "NO_COLOR": "1",
        "TEST_HOST": host,
    }


def otto(env: dict[str, str], *args: str, user: str = HOLDER) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto", *args],
        env={**env, "OTTO_USER": user},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Waiter:
    """An ``otto`` process that waits in the queue, and what it printed."""

    def __init__(self, proc: asyncio.subprocess.Process, user: str) -> None:
        self.proc = proc
        self.user = user
        self.err: list[str] = []

    async def line_with(self, text: str, timeout: float = 60) -> str:
        """The first stderr line holding ``text`` (lines before it are kept in ``err``)."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stderr.readline()
                if not raw:
                    pytest.fail(f"{self.user} ended without saying {text!r}: {self.err}")
                line = raw.decode()
                self.err.append(line)
                if text in line:
                    return line

    async def end(self, timeout: float = 60) -> tuple[int, str, str]:
        """Its exit status, stdout and the rest of stderr."""
        async with asyncio.timeout(timeout):
            out, err = await self.proc.communicate()
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode(), "".join(self.err) + err.decode()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> None:
        """Ctrl-C (it leaves the queue: the PostgreSQL store outlives the test), else kill."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(30):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
        await self.proc.wait()


async def start(env: dict[str, str], user: str, *args: str, cwd: Path = ROOT) -> Waiter:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "otto",
        *args,
        env={**env, "OTTO_USER": user},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return Waiter(proc, user)


async def queued(env: dict[str, str], user: str, host: str, *args: str) -> Waiter:
    """``otto reserve HOST --wait`` as ``user``, once it says it waits in the queue."""
    waiter = await start(env, user, "reserve", host, "--wait", "--for", "10m", *args)
    try:
        await waiter.line_with("in the queue")
    except BaseException:
        waiter.kill()
        raise
    return waiter


async def hold(url: str, hosts: list[str], claim: str = f"hand:{HOLDER}") -> None:
    async with open_store(url) as store:
        await store.reserve(hosts, holder=claim.removeprefix("hand:"), claim=claim, duration=600)


async def release(url: str, claim: str) -> None:
    async with open_store(url) as store:
        await store.release(claim=claim)


async def state_of(url: str, host: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Who holds ``host`` and who waits for it, first first, read from the store."""
    async with open_store(url) as store:
        leases = await store.leases([host])
        waiters = await store.waiters([host])
    positions = [w.position for w in waiters]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    return [(x.host, x.holder) for x in leases], [w.holder for w in waiters]


def listing(env: dict[str, str]) -> list[dict[str, object]]:
    """``otto reservations --json`` on this test's hosts."""
    host = env["TEST_HOST"]
    proc = otto(env, "reservations", "--json", host, f"{host}-b", f"{host}-c")
    assert proc.returncode == 0, proc.stderr
    listed: list[dict[str, object]] = json.loads(proc.stdout)
    return listed


def queue_of(env: dict[str, str]) -> list[object]:
    """Who waits for this test's hosts, first first (positions checked in order)."""
    waiting = [x for x in listing(env) if x.get("waiting")]
    positions = [int(str(x["position"])) for x in waiting]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    return [x["holder"] for x in waiting]


# --- order ----------------------------------------------------------------------------------


@pytest.mark.timeout(600)
async def test_ten_waiters_are_served_one_by_one_in_arrival_order(
    env: dict[str, str], store_url: str, host: str
) -> None:
    await hold(store_url, [host])
    waiters: list[Waiter] = []
    try:
        for i in range(WAITERS):
            # Each one joins once the one before it is in the queue: arrival order is known.
            waiters.append(await queued(env, f"w{i}", host))
        assert queue_of(env) == [f"w{i}" for i in range(WAITERS)]
        previous = f"hand:{HOLDER}"
        for i, waiter in enumerate(waiters):
            await release(store_url, previous)
            # Only the first in the queue is served: it says so and ends.
            code, out, err = await waiter.end()
            assert code == 0, err
            assert out.startswith(f"{host}: reserved by you until"), out
            # The store itself, not `otto reservations` (whose listing is checked above
            # and in its own test): ten CLI starts per waiter cost the suite seconds.
            held, waiting = await state_of(store_url, host)
            assert held == [(host, f"w{i}")]
            assert waiting == [f"w{j}" for j in range(i + 1, WAITERS)]
            assert all(w.proc.returncode is None for w in waiters[i + 1 :])
            previous = f"hand:w{i}"
    finally:
        await asyncio.gather(*(waiter.stop() for waiter in waiters))


async def test_a_later_waiter_never_overtakes_on_a_host_both_want(
    store_url: str, host: str
) -> None:
    a, b, c = host, f"{host}-b", f"{host}-c"
    await hold(store_url, [a])
    s1, s2, s3 = (open_store(store_url) for _ in range(3))
    async with s1, s2, s3:
        seen = {name: asyncio.Event() for name in ("first", "second")}

        def wait(
            store: ReservationStore, hosts: list[str], name: str
        ) -> Coroutine[Any, Any, Grant]:
            event = seen.get(name)
            return wait_turn(
                store,
                hosts,
                holder=name,
                claim=name,
                duration=600,
                heartbeat=600,
                on_wait=None if event is None else lambda turn: event.set(),
            )

        first = asyncio.create_task(wait(s1, [a, b], "first"))
        await asyncio.wait_for(seen["first"].wait(), 30)
        # b is free, but the first waiter wants it: the second waits behind it.
        second = asyncio.create_task(wait(s2, [b], "second"))
        await asyncio.wait_for(seen["second"].wait(), 30)
        # c is nobody else's: a third waiter takes it at once.
        third = await asyncio.wait_for(wait(s3, [c], "third"), 30)
        assert third.hosts == [c]
        # A reservation that does not queue is refused b: the queue asked first.
        with pytest.raises(QueuedFor, match=rf"{b}: promised to the queue: #1 first waiting"):
            await s3.reserve([b], holder="rude", claim="rude", duration=60)
        assert not first.done() and not second.done()
        await release(store_url, f"hand:{HOLDER}")
        assert (await asyncio.wait_for(first, 30)).hosts == [a, b]
        assert not second.done()
        await s1.release(claim="first")
        assert (await asyncio.wait_for(second, 30)).hosts == [b]


# --- leaving ----------------------------------------------------------------------------------


@pytest.mark.timeout(300)
async def test_a_waiter_killed_leaves_within_one_heartbeat_and_the_next_is_served(
    env: dict[str, str], store_url: str, host: str
) -> None:
    await hold(store_url, [host])
    beat = {**env, "OTTO_HEARTBEAT": "2"}
    doomed = await queued(beat, "doomed", host)
    after = await queued(beat, "after", host)
    try:
        (place,) = [x for x in listing(env) if x.get("waiting") and x["holder"] == "doomed"]
        doomed.proc.send_signal(signal.SIGKILL)
        await doomed.proc.wait()
        await release(store_url, f"hand:{HOLDER}")
        code, out, err = await after.end()
        assert code == 0, err
        assert out.startswith(f"{host}: reserved by you")
        # Served once the dead waiter's heartbeat ran out, and not before.
        (lease,) = [x for x in listing(env) if not x.get("waiting")]
        assert datetime.fromisoformat(str(lease["since"])) >= datetime.fromisoformat(
            str(place["until"])
        )
        assert queue_of(env) == []
    finally:
        await asyncio.gather(doomed.stop(), after.stop())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
async def test_ctrl_c_or_sigterm_leaves_the_queue_at_once(
    env: dict[str, str], store_url: str, host: str, sig: signal.Signals
) -> None:
    await hold(store_url, [host])
    first = await queued(env, "first", host)
    second = await queued(env, "second", host)
    try:
        assert queue_of(env) == ["first", "second"]
        first.proc.send_signal(sig)
        code, _, err = await first.end()
        assert code == 128 + sig
        assert "left the queue" in err
        # The heartbeat is 600 s: only leaving explains the move.
        assert queue_of(env) == ["second"]
    finally:
        await asyncio.gather(first.stop(), second.stop())


async def test_the_wait_ends_after_timeout_naming_the_holder_and_the_place(
    env: dict[str, str], store_url: str, host: str
) -> None:
    await hold(store_url, [host])
    ahead = await queued(env, "ahead", host)
    try:
        proc = await asyncio.to_thread(
            otto, env, "reserve", host, "--wait", "--timeout", "1s", user="late"
        )
        assert proc.returncode == 3
        assert f"waiting for {host}: {host}: reserved by {HOLDER} until" in proc.stderr
        assert "before you in the queue: #1 ahead waiting since" in proc.stderr
        assert "you are #2 in the queue (left the queue)" in proc.stderr
        assert queue_of(env) == ["ahead"]
    finally:
        await ahead.stop()


async def test_reservations_lists_the_waiters_after_the_holders(
    env: dict[str, str], store_url: str, host: str
) -> None:
    await hold(store_url, [host])
    one = await queued(env, "one", host)
    two = await queued(env, "two", f"{host},{host}-b", "--note", "flash")
    try:
        proc = otto(env, "reservations", host, f"{host}-b")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].split() == ["HOST", "HOLDER", "SINCE", "UNTIL", "NOTE"]
        assert lines[1].startswith(f"{host}  {HOLDER} (you)")
        assert lines[2] == ""
        assert lines[3].split() == ["QUEUE", "WAITER", "HOSTS", "WAITING", "SINCE", "NOTE"]
        first, second = lines[4].split(), lines[5].split()
        assert first[1:3] == ["one", host] and second[1:3] == ["two", f"{host},{host}-b"]
        assert int(second[0].lstrip("#")) == int(first[0].lstrip("#")) + 1
        assert lines[5].endswith("flash")
        waiting = [x for x in listing(env) if x.get("waiting")]
        assert [(x["holder"], x["hosts"], x["note"]) for x in waiting] == [
            ("one", [host], ""),
            ("two", [host, f"{host}-b"], "flash"),
        ]
    finally:
        await asyncio.gather(one.stop(), two.stop())


def test_reserving_a_host_the_queue_waits_for_is_refused_by_hand(
    env: dict[str, str], store_url: str, host: str
) -> None:
    # One waiter for two hosts, one of them held: the free one is the queue's first.
    asyncio.run(hold(store_url, [host]))

    async def scenario() -> subprocess.CompletedProcess[str]:
        waiter = await queued(env, "first", f"{host},{host}-b")
        try:
            return await asyncio.to_thread(otto, env, "reserve", f"{host}-b", user="rude")
        finally:
            await waiter.stop()

    proc = asyncio.run(scenario())
    assert proc.returncode == 3
    assert f"{host}-b: promised to the queue: #1 first waiting since" in proc.stderr
    assert "(--wait joins the queue)" in proc.stderr


# --- otto test --wait-hosts ---------------------------------------------------------------


@pytest.fixture
def suite(tmp_path: Path, host: str) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "test_board.py").write_text(
        "import pytest\n\n"
        f"@pytest.mark.hosts({host!r})\n"
        "async def test_board(host):\n"
        "    assert (await host.run('echo on-board')).output.strip() == 'on-board'\n"
    )
    return folder


async def test_otto_test_wait_hosts_waits_for_the_host_then_runs(
    env: dict[str, str], store_url: str, host: str, suite: Path, tmp_path: Path
) -> None:
    await hold(store_url, [host], claim="hand:bob@ci")
    run = tmp_path / "run"
    args = ["test", "--wait-hosts", "5m", "--output", str(run), str(suite)]
    # Without --wait-hosts the run stops at once: someone holds the host.
    refused = await asyncio.to_thread(otto, env, *args[:1], *args[3:], user="alice@laptop")
    assert refused.returncode == 3, refused.stderr
    tester = await start(env, "alice@laptop", *args)
    try:
        line = await tester.line_with("in the queue")
        assert f"waiting for {host}: {host}: reserved by bob@ci until" in line
        assert queue_of(env) == ["alice@laptop"]
        await release(store_url, "hand:bob@ci")
        code, out, err = await tester.end(timeout=120)
        assert code == 0, out + err
        assert "1 passed" in out
    finally:
        await tester.stop()
    # The run released what it waited for.
    assert listing(env) == []


async def test_otto_test_wait_hosts_gives_up_with_status_3(
    env: dict[str, str], store_url: str, host: str, suite: Path, tmp_path: Path
) -> None:
    await hold(store_url, [host], claim="hand:bob@ci")
    proc = await asyncio.to_thread(
        otto,
        env,
        "test",
        "--wait-hosts",
        "1s",
        "--output",
        str(tmp_path / "run"),
        str(suite),
        user="alice@laptop",
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"{host}: reserved by bob@ci until" in proc.stderr
    assert "you are #1 in the queue (left the queue) (--wait-hosts 1s)" in proc.stderr
    assert queue_of(env) == []


async def test_a_plain_reservation_error_still_names_the_holder(store_url: str, host: str) -> None:
    await hold(store_url, [host])
    async with open_store(store_url) as store:
        with pytest.raises(ReservedError, match=rf"{host}: reserved by {HOLDER} until") as err:
            await store.reserve([host], holder="x", claim="x", duration=60)
    assert not isinstance(err.value, QueuedFor)


async def blocked(conn: Any) -> bool:
    """Whether a backend of the server waits on a row lock."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    return bool(await conn.fetchval(query))


async def test_a_grant_raced_by_a_plain_reservation_takes_nothing(
    pg: postgres.PostgresServer, host: str
) -> None:
    import asyncpg

    a, b = host, f"{host}-b"
    other = await asyncpg.connect(pg.url)
    async with open_store(pg.url) as store:
        me = await store.enqueue([a, b], holder="me", claim="me", heartbeat=600)
        try:
            # Someone takes b in a transaction not yet committed: the waiter's look
            # finds both free, and its grant waits on b's row.
            tx = other.transaction()
            await tx.start()
            await other.execute(
                "INSERT INTO otto_leases (host, holder, claim, run, note, since, until) "
                "VALUES ($1, 'rude', 'rude', '', '', now(), now() + interval '10 minutes')",
                b,
            )
            turn = asyncio.create_task(store.take_turn(me, duration=600, heartbeat=600))
            async with asyncio.timeout(30):
                while not await blocked(other):  # noqa: ASYNC110 (only the server can tell)
                    await asyncio.sleep(0.01)
            await tx.commit()
            seen = await asyncio.wait_for(turn, 30)
            assert seen.grant is None
            assert [(x.host, x.holder) for x in seen.leases] == [(b, "rude")]
            # Nothing of the grant stays: a is nobody's.
            assert [(x.host, x.holder) for x in await store.leases([a, b])] == [(b, "rude")]
        finally:
            await store.leave(me)
            await other.close()


def test_a_dry_run_of_a_wait_says_it_would_wait_and_queues_nobody(
    env: dict[str, str], store_url: str, host: str
) -> None:
    asyncio.run(hold(store_url, [host]))
    proc = otto(env, "-n", "reserve", host, "--wait", user="late")
    assert proc.returncode == 0, proc.stderr
    assert f"{host}: would reserve for 1h (reserved by {HOLDER} until " in proc.stdout
    assert proc.stdout.rstrip().endswith("would wait in the queue for it)")
    assert queue_of(env) == []
