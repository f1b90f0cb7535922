"""``--wait-hosts`` outside ``otto test``: plain ``pytest`` waits in the reservation queue
for a held host, and ``otto -n test --wait-hosts`` says it would wait instead of refusing.

Each run is a process of its own on a SQLite store; the test waits on what it prints
and on its exit, never on a clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from otto.reservations import open_store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HOLDER = "bob@ci"


@pytest.fixture
def host() -> str:
    return f"board-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'reservations.db'}"


@pytest.fixture
def env(tmp_path: Path, host: str, store_url: str) -> dict[str, str]:
    lab = tmp_path / "lab.json"
    lab.write_text(json.dumps({"hosts": [{"name": host, "term": "local"}]}))
    kept = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    return {
        **kept,
        "OTTO_LAB": str(lab),
        "OTTO_RESERVATIONS": store_url,
        "OTTO_USER": "alice@laptop",
        "OTTO_HEARTBEAT": "600",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "NO_COLOR": "1",
    }


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


async def hold(url: str, hosts: list[str]) -> None:
    async with open_store(url) as store:
        await store.reserve(hosts, holder=HOLDER, claim=f"hand:{HOLDER}", duration=600)


async def release(url: str) -> None:
    async with open_store(url) as store:
        await store.release(claim=f"hand:{HOLDER}")


async def leases(url: str, host: str) -> list[str]:
    async with open_store(url) as store:
        return [lease.holder for lease in await store.leases([host])]


async def waiters(url: str, host: str) -> list[str]:
    async with open_store(url) as store:
        return [w.holder for w in await store.waiters([host])]


async def pytest_process(
    env: dict[str, str], suite: Path, *args: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        *args,
        str(suite),
        env=env,
        cwd=suite.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def line_with(proc: asyncio.subprocess.Process, text: str) -> str:
    assert proc.stderr is not None
    seen: list[str] = []
    async with asyncio.timeout(60):
        while True:
            raw = await proc.stderr.readline()
            if not raw:
                pytest.fail(f"pytest ended without saying {text!r}: {seen}")
            line = raw.decode()
            seen.append(line)
            if text in line:
                return line


async def test_plain_pytest_wait_hosts_waits_for_a_held_host_then_runs(
    env: dict[str, str], store_url: str, host: str, suite: Path, tmp_path: Path
) -> None:
    await hold(store_url, [host])
    run = tmp_path / "run"
    proc = await pytest_process(env, suite, "--wait-hosts", "5m", f"--otto-output={run}")
    try:
        line = await line_with(proc, "in the queue")
        assert f"waiting for {host}: {host}: reserved by {HOLDER} until" in line
        assert await waiters(store_url, host) == ["alice@laptop"]
        await release(store_url)
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
        assert proc.returncode == 0, out.decode() + err.decode()
        assert "1 passed" in out.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # The run released what it waited for, and its test ran on the host.
    assert await leases(store_url, host) == []
    records = [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]
    assert [(r["outcome"], r["hosts"]) for r in records] == [("passed", [host])]


async def test_plain_pytest_wait_hosts_gives_up_with_status_3(
    env: dict[str, str], store_url: str, host: str, suite: Path, tmp_path: Path
) -> None:
    await hold(store_url, [host])
    proc = await pytest_process(
        env, suite, "--wait-hosts", "1s", f"--otto-output={tmp_path / 'run'}"
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode == 3, out.decode() + err.decode()
    assert f"{host}: reserved by {HOLDER} until" in err.decode()
    assert "(--wait-hosts 1s)" in err.decode()
    assert await waiters(store_url, host) == []
    assert await leases(store_url, host) == [HOLDER]


def test_dry_run_of_otto_test_wait_hosts_says_it_would_wait(
    env: dict[str, str], store_url: str, host: str, suite: Path
) -> None:
    asyncio.run(hold(store_url, [host]))

    def dry(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "otto", "-n", "test", *args, str(suite)],
            env=env,
            cwd=suite.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    refused = dry()
    assert refused.returncode == 3, refused.stdout + refused.stderr
    proc = dry("--wait-hosts", "90s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        f"[{host}] reservation: reserved by {HOLDER} until " in proc.stdout
        and "would wait up to 1m30s in the queue for it (--wait-hosts)" in proc.stdout
    ), proc.stdout
    assert "otto: dry run: 1 test would run" in proc.stdout
    # Nobody queued, nothing taken.
    assert asyncio.run(waiters(store_url, host)) == []
    assert asyncio.run(leases(store_url, host)) == [HOLDER]
