"""Reservations against real stores: a SQLite file and a throwaway PostgreSQL server.

Races between real processes, holders killed with SIGKILL, clocks that lie,
and a PostgreSQL server that stops or goes silent in the middle of a lease.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

import otto
from otto.errors import LeaseLost, ReservationStoreError, ReservedError
from otto.lab import Lab
from otto.reservations import open_store
from otto.reservations.postgres import PostgresStore
from tests.lab import postgres
from tests.lab.reservations import ROOT, race_worker

pytestmark = pytest.mark.integration

WORKERS = 20
ROUNDS = 100


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg() -> AsyncIterator[postgres.PostgresServer]:
    """A PostgreSQL server for the whole session, in its own network namespace."""
    problem = postgres.missing()
    if problem:
        pytest.skip(problem)
    server = postgres.PostgresServer()
    try:
        await server.start()
        yield server
    finally:
        server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def pg_fault(pg: postgres.PostgresServer) -> AsyncIterator[postgres.PostgresServer]:
    """The session's server, healed after the test (network back, running again)."""
    try:
        yield pg
    finally:
        await pg.heal()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'reservations.db'}"
    server: postgres.PostgresServer = request.getfixturevalue("pg")
    return server.url


@pytest.fixture
def names() -> Callable[[str], str]:
    """Host names of this test only (the PostgreSQL store outlives a test)."""
    tag = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{tag}"


@pytest.fixture
def lab_env(tmp_path: Path, names: Callable[[str], str]) -> Iterator[tuple[Lab, dict[str, str]]]:
    """A lab of two local hosts, and the environment a subprocess needs to use it."""
    path = tmp_path / "lab.json"
    hosts = [{"name": names("web1"), "term": "local"}, {"name": names("web2"), "term": "local"}]
    path.write_text(json.dumps({"hosts": hosts}))
    env = {
        **os.environ,
        "OTTO_LAB": str(path),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
    }
    env.pop("OTTO_RESERVATIONS", None)
    env.pop("OTTO_USER", None)
    yield Lab.load(path), env


def run_otto(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The ``otto`` command in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "otto", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def past(moment: datetime, margin: float = 0.0) -> None:
    """Wait until the wall clock has passed ``moment`` (plus ``margin`` seconds).

    A lease ends at a time, with no event to wait on: this wait is the
    behaviour under test (the store runs on this machine, on its clock).
    """
    left = (moment - datetime.now(UTC)).total_seconds() + margin
    if left > 0:
        await asyncio.sleep(left)


async def free(url: str, host: str) -> bool:
    store = open_store(url)
    try:
        await store.reserve([host], holder="checker", claim=f"check-{host}", duration=600)
    except ReservedError:
        return False
    finally:
        await store.close()
    return True


async def leases(url: str, host: str) -> list[otto.reservations.Lease]:
    store = open_store(url)
    try:
        return await store.leases([host])
    finally:
        await store.close()


async def start_holder(
    env: dict[str, str], host: str, seconds: float, url: str, shift: float | None = None
) -> asyncio.subprocess.Process:
    argv = [sys.executable, "-m", "tests.lab.reservations", "hold", host, str(seconds), url]
    if shift is not None:
        argv.append(str(shift))
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail("the holder did not say 'held' in time")
    if line.strip() != b"held":
        assert proc.stderr is not None
        err = await proc.stderr.read()
        await proc.wait()
        pytest.fail(f"the holder failed: {line!r} {err.decode()[-2000:]}")
    return proc


# --- races ----------------------------------------------------------------------------------


@pytest.mark.timeout(600)  # 100 rounds of 20 processes: long, and always run
def test_twenty_processes_race_for_one_host(store_url: str, names: Callable[[str], str]) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    prefix = names("race")
    workers = [
        context.Process(
            target=race_worker, args=(store_url, i, prefix, ROUNDS, barrier, results), daemon=True
        )
        for i in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes: dict[int, dict[int, object]] = {}
        for _ in range(WORKERS * ROUNDS):
            round_, index, outcome = results.get(timeout=120)
            outcomes.setdefault(round_, {})[index] = outcome
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
    errors = [o for by in outcomes.values() for o in by.values() if not isinstance(o, bool)]
    assert errors == []
    winners = {r: [i for i, won in by.items() if won] for r, by in outcomes.items()}
    assert {r: len(w) for r, w in winners.items()} == dict.fromkeys(range(ROUNDS), 1)

    async def holders() -> dict[str, str]:
        store = open_store(store_url)
        try:
            return {x.host: x.holder for x in await store.leases()}
        finally:
            await store.close()

    held = asyncio.run(holders())
    for round_, (winner,) in winners.items():
        assert held[f"{prefix}-{round_}"] == f"worker{winner}"


# --- holders that die, clocks that lie ----------------------------------------------------------


async def test_a_holder_killed_with_sigkill_frees_the_host(
    store_url: str, lab_env: tuple[Lab, dict[str, str]], names: Callable[[str], str]
) -> None:
    _, env = lab_env
    host, seconds = names("web1"), 3.0
    holder = await start_holder(env, host, seconds, store_url)
    try:
        (lease,) = await leases(store_url, host)
        assert lease.note == "held by a test"
        assert lease.run.endswith(f":{holder.pid}")
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
        assert not await free(store_url, host)  # its lease still runs
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    await past(lease.until)  # the dead holder's lease has run out: nothing renewed it
    assert await free(store_url, host), f"{host} still held after its lease ended"
    (taken,) = await leases(store_url, host)
    assert taken.holder == "checker"
    assert taken.since >= lease.until  # free only once the dead holder's lease had ended


async def test_a_killed_holder_of_a_long_reservation_frees_it_within_a_heartbeat(
    store_url: str, lab_env: tuple[Lab, dict[str, str]], names: Callable[[str], str]
) -> None:
    """An hour asked for, a 2 s heartbeat: SIGKILL frees the host one heartbeat later."""
    _, env = lab_env
    host, hour, heartbeat = names("web1"), 3600.0, 2.0
    holder = await start_holder({**env, "OTTO_HEARTBEAT": str(heartbeat)}, host, hour, store_url)
    try:
        (lease,) = await leases(store_url, host)
        # The store holds one heartbeat, not the hour: the lease a dead holder leaves.
        assert abs((lease.until - lease.since).total_seconds() - heartbeat) < 0.01, lease
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    (last,) = await leases(store_url, host)  # perhaps renewed once before the kill
    assert last.until - datetime.now(UTC) <= timedelta(seconds=heartbeat)
    await past(last.until)
    assert await free(store_url, host), f"{host} still held after its heartbeat ended"


async def test_a_living_holder_keeps_renewing_its_heartbeat(
    store_url: str, lab_env: tuple[Lab, dict[str, str]], names: Callable[[str], str]
) -> None:
    _, env = lab_env
    host, heartbeat = names("web1"), 1.5
    holder = await start_holder({**env, "OTTO_HEARTBEAT": str(heartbeat)}, host, 3600, store_url)
    try:
        (first,) = await leases(store_url, host)
        assert abs((first.until - first.since).total_seconds() - heartbeat) < 0.01, first
        await past(first.until)
        (later,) = await leases(store_url, host)  # renewed every third of the heartbeat
        assert later.until > first.until
        assert later.since == first.since
        assert not await free(store_url, host)
    finally:
        holder.kill()
        await holder.wait()


async def test_reserving_again_never_shortens_a_reservation(
    store_url: str, names: Callable[[str], str]
) -> None:
    host = names("web1")
    store = open_store(store_url)
    try:
        long = await store.reserve([host], holder="bob", claim="hand:bob", duration=7200)
        short = await store.reserve([host], holder="bob", claim="hand:bob", duration=600)
        assert short.leases[0].until == long.leases[0].until
        assert short.leases[0].since == long.leases[0].since
        longer = await store.reserve([host], holder="bob", claim="hand:bob", duration=9000)
        assert longer.leases[0].until > long.leases[0].until
        # Another claim's reservation, once the old one is gone, is its own.
        await store.release([host], claim="hand:bob")
        fresh = await store.reserve([host], holder="amy", claim="hand:amy", duration=60)
        assert fresh.leases[0].until < long.leases[0].until
    finally:
        await store.close()


async def test_leases_use_the_store_clock_not_the_client(
    store_url: str, lab_env: tuple[Lab, dict[str, str]], names: Callable[[str], str]
) -> None:
    """A holder whose time.time is a year ahead, then jumps two years back, holds right."""
    _, env = lab_env
    host, seconds = names("web1"), 3.0
    year = 365 * 86400.0
    before = datetime.now(UTC)
    holder = await start_holder(env, host, seconds, store_url, shift=year)
    try:
        (first,) = await leases(store_url, host)
        after = datetime.now(UTC)
        assert before - timedelta(seconds=5) <= first.since <= after + timedelta(seconds=5)
        assert first.until - first.since <= timedelta(seconds=seconds)

        # Its clock jumped back two years once it held the host: it still renews
        # (every third of the lease), so past the first lease's end it still holds.
        await past(first.until)
        (later,) = await leases(store_url, host)
        assert later.until > first.until, f"{host} was not renewed by the holder"
        assert later.until - datetime.now(UTC) <= timedelta(seconds=seconds + 5)
    finally:
        holder.kill()
        await holder.wait()


# --- PostgreSQL gone in the middle of a lease ----------------------------------------------


async def _held_then(
    pg: postgres.PostgresServer,
    lab: Lab,
    host: str,
    fault: Callable[[], Awaitable[None]],
) -> None:
    seconds = 3.0
    store = PostgresStore(pg.url, timeout=1.0)
    try:
        async with otto.reserve([host], duration=seconds, lab=lab, store=store) as hosts:
            assert (await hosts[0].run("true")).is_ok
            # A session opened while the lease held must refuse too once it is lost.
            early = await hosts[0].open_session("early")
            assert (await early.run("true")).is_ok
            await fault()
            # No renewal can reach the store now, and the last one that did set
            # the lease to end at most `seconds` from now: past that, the host refuses.
            await past(datetime.now(UTC), margin=seconds + 0.5)
            with pytest.raises(LeaseLost) as refused:
                await hosts[0].run("true")
            text = str(refused.value)
            assert text.startswith(f"{host}: not acting on it")
            assert f"{pg.address}:{pg.port}" in text
            assert postgres.PASSWORD not in text
            with pytest.raises(LeaseLost):
                await hosts[0].put([], "/tmp")
            with pytest.raises(LeaseLost):
                await early.run("echo should-not-run")
            with pytest.raises(LeaseLost):
                await early.send("echo should-not-run\n")
    finally:
        await store.close()
        await lab.close()


async def test_postgres_stopped_mid_lease(
    pg_fault: postgres.PostgresServer, lab_env: tuple[Lab, dict[str, str]]
) -> None:
    lab, env = lab_env
    host = lab.names[0]
    await _held_then(pg_fault, lab, host, pg_fault.stop)
    result = await asyncio.to_thread(
        run_otto,
        {**env, "OTTO_RESERVATIONS": pg_fault.url},
        "host",
        host,
        "run",
        "echo should-not-run",
    )
    assert result.returncode not in (0, 3)
    assert "should-not-run" not in result.stdout
    masked = pg_fault.url.replace(postgres.PASSWORD, "***")
    assert f"reservation store {masked} is unreachable" in result.stderr
    assert postgres.PASSWORD not in result.stderr
    await pg_fault.start()
    # Back again: the lease that was lost stays lost; the host is free for others.
    assert await free(pg_fault.url, host)


async def test_postgres_network_cut_mid_lease(
    pg_fault: postgres.PostgresServer, lab_env: tuple[Lab, dict[str, str]]
) -> None:
    if not pg_fault.uses_netns:
        pytest.skip("cutting the network needs nft")
    lab, env = lab_env
    await _held_then(pg_fault, lab, lab.names[0], pg_fault.cut_network)
    result = await asyncio.to_thread(
        run_otto, {**env, "OTTO_RESERVATIONS": pg_fault.url}, "reservations"
    )
    assert result.returncode == 1
    masked = pg_fault.url.replace(postgres.PASSWORD, "***")
    assert result.stderr.strip() == (
        f"otto: error: reservation store {masked} is unreachable: no answer in time"
    )


async def test_cli_reserves_in_postgres(
    pg: postgres.PostgresServer, lab_env: tuple[Lab, dict[str, str]]
) -> None:
    lab, env = lab_env
    env = {**env, "OTTO_RESERVATIONS": pg.url}

    def otto_cli(*args: str, user: str) -> subprocess.CompletedProcess[str]:
        return run_otto({**env, "OTTO_USER": user}, *args)

    web1 = lab.names[0]
    assert otto_cli("reserve", web1, "--for", "10m", user="bob@ci").returncode == 0
    refused = otto_cli("host", web1, "run", "echo hi", user="alice@laptop")
    assert refused.returncode == 3
    assert f"{web1}: reserved by bob@ci until " in refused.stderr
    listed = otto_cli("reservations", user="alice@laptop")
    assert web1 in listed.stdout and "bob@ci" in listed.stdout
    web2 = lab.names[1]
    assert otto_cli("reserve", web2, user="carol@ci").returncode == 0
    both = otto_cli("reservations", f"{web2},{web1}", user="alice@laptop").stdout.splitlines()
    assert [line.split()[:2] for line in both[1:]] == [[web1, "bob@ci"], [web2, "carol@ci"]]
    assert otto_cli("release", user="carol@ci").stdout == f"{web2}: released\n"
    assert otto_cli("release", user="bob@ci").stdout == f"{web1}: released\n"
    started = time.monotonic()
    assert otto_cli("host", web1, "run", "true", user="alice@laptop").returncode == 0
    assert time.monotonic() - started < 60


async def test_store_passwords_are_never_shown(
    pg: postgres.PostgresServer, lab_env: tuple[Lab, dict[str, str]]
) -> None:
    """A password with '@' in it, or given as ?password=, is masked in every message."""
    lab, env = lab_env
    at = f"{pg.address}:{pg.port}/postgres"
    wrong = "wr0ng@pa:ss-word"
    cases = {
        # Right password as ?password=: it works, and the listing names the store masked.
        f"postgresql://{postgres.USER}@{at}?password={postgres.PASSWORD}": postgres.PASSWORD,
        # A wrong password holding '@': refused by the server, masked whole in the error.
        f"postgresql://{postgres.USER}:{wrong}@{at}": wrong,
        f"postgresql://{postgres.USER}@{at}?sslmode=disable&password={wrong}": wrong,
    }
    for url, password in cases.items():
        result = await asyncio.to_thread(
            run_otto, {**env, "OTTO_RESERVATIONS": url}, "reservations", lab.names[0]
        )
        shown = result.stdout + result.stderr
        assert "***" in shown, shown
        for part in {password, *password.split("@"), *password.split(":")}:
            assert part not in shown, (url, shown)


# --- the check before every action, on PostgreSQL ---------------------------------------------


async def test_postgres_checks_and_claims_at_once_share_one_connection(
    pg: postgres.PostgresServer, names: Callable[[str], str]
) -> None:
    """Checks and claims in flight together on one store: each gets its own answer."""
    store = PostgresStore(pg.url)
    held, nobodys = names("held"), names("free")
    try:
        await store.reserve([held], holder="bob", claim="held", duration=600)
        await store.leases([held])  # open and idle: the next checks go straight out

        async def claim_check_release(n: int) -> list[str]:
            host = names(f"busy{n}")
            await store.reserve([host], holder="carol", claim=f"busy{n}", duration=600)
            found = [lease.host for lease in await store.leases([host, held])]
            await store.release([host], claim=f"busy{n}")
            return found

        async with asyncio.timeout(60):
            checks = [store.leases([held, nobodys]) for _ in range(50)]
            claims = [claim_check_release(n) for n in range(10)]
            results = await asyncio.gather(*checks, *claims)
        for found in results[:50]:
            assert [(x.host, x.holder, x.claim) for x in found] == [(held, "bob", "held")]
        for n, hosts in enumerate(results[50:]):
            assert hosts == sorted([names(f"busy{n}"), held])
    finally:
        await store.release(claim="held")
        await store.close()


async def test_postgres_check_sees_a_renewal_a_release_and_a_new_holder(
    pg: postgres.PostgresServer, names: Callable[[str], str]
) -> None:
    """The check keeps a held host's Lease built between checks: never a stale one."""
    checker, holder = PostgresStore(pg.url), PostgresStore(pg.url)
    host = names("web1")
    try:
        await holder.reserve([host], holder="bob", claim="first", duration=60)
        (first,) = await checker.leases([host])
        assert await checker.leases([host]) == [first]
        grant = await holder.renew([host], claim="first", duration=600)
        (renewed,) = await checker.leases([host])
        assert renewed.until == grant.leases[0].until > first.until
        await holder.release([host], claim="first")
        assert await checker.leases([host]) == []
        await holder.reserve([host], holder="carol", claim="second", duration=60, note="flash")
        (second,) = await checker.leases([host])
        assert (second.holder, second.claim, second.note) == ("carol", "second", "flash")
    finally:
        await holder.release([host])
        await checker.close()
        await holder.close()


async def test_postgres_check_survives_a_change_of_its_table(
    pg: postgres.PostgresServer, names: Callable[[str], str]
) -> None:
    """A column's type changed under the check's prepared query: it is prepared again."""
    import asyncpg

    store = PostgresStore(pg.url)
    host = names("web1")
    admin = await asyncpg.connect(pg.url)
    try:
        await store.reserve([host], holder="bob", claim="c", duration=600, note="flash")
        (before,) = await store.leases([host])
        assert await store.leases([host]) == [before]  # prepared, and sent as such
        async with asyncio.timeout(60):
            await admin.execute("ALTER TABLE otto_leases ALTER COLUMN note TYPE varchar(200)")
            try:
                assert await store.leases([host]) == [before]
                assert await store.leases([host]) == [before]
            finally:
                await admin.execute("ALTER TABLE otto_leases ALTER COLUMN note TYPE text")
            assert await store.leases([host]) == [before]
    finally:
        await store.release([host])
        await store.close()
        await admin.close()


async def test_postgres_check_cancelled_midway_leaves_the_store_usable(
    pg: postgres.PostgresServer, names: Callable[[str], str]
) -> None:
    store = PostgresStore(pg.url)
    host = names("web1")
    try:
        await store.reserve([host], holder="bob", claim="c", duration=600)
        (lease,) = await store.leases([host])
        check = asyncio.create_task(store.leases([host]))
        await asyncio.sleep(0)  # one step: the query is out, the answer not yet read
        check.cancel()
        with pytest.raises(asyncio.CancelledError):
            await check
        async with asyncio.timeout(30):
            assert await store.leases([host]) == [lease]
            assert await store.leases([host]) == [lease]
    finally:
        await store.release([host])
        await store.close()


async def test_postgres_check_on_a_silent_server_fails_in_time_naming_the_store(
    pg_fault: postgres.PostgresServer, names: Callable[[str], str]
) -> None:
    """The network cut with the check's connection open: it fails, then works once back."""
    if not pg_fault.uses_netns:
        pytest.skip("cutting the network needs nft")
    store = PostgresStore(pg_fault.url, timeout=1.0)
    host = names("web1")
    try:
        assert await store.leases([host]) == []
        assert await store.leases([host]) == []  # open and idle: sent straight out
        await pg_fault.cut_network()
        async with asyncio.timeout(30):  # a check that hangs fails the test here
            with pytest.raises(ReservationStoreError) as failed:
                await store.leases([host])
        masked = pg_fault.url.replace(postgres.PASSWORD, "***")
        assert str(failed.value) == (
            f"reservation store {masked} is unreachable: no answer in time"
        )
        await pg_fault.restore_network()
        async with asyncio.timeout(30):
            assert await store.leases([host]) == []
    finally:
        await store.close()
