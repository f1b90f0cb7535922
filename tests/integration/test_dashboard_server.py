"""The dashboard's server on real sockets: the addresses it answers on, and the bounds on
its connections (header and idle timeouts, a connection limit), against a real uvicorn
on loopback and through ``otto monitor``."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from otto.monitor.access import new_token
from otto.monitor.addresses import reachable_addresses
from otto.monitor.web import DashboardServer, MemorySource
from tests.integration.test_monitor_access import cli_env

pytestmark = pytest.mark.integration

WAIT = 30.0


def source() -> MemorySource:
    made = MemorySource(interval=1.0)
    made.push_round(1_700_000_000.0, {"h1": {"cpu.percent": 5.0}})
    return made


class Otto:
    """A running ``otto monitor`` whose output is read line by line (in a thread: its
    own reads never wait on this test's event loop)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.output = b""

    async def read_until(self, pattern: bytes) -> re.Match[bytes]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(WAIT):
            while (found := re.search(pattern, self.output)) is None:
                line = await asyncio.to_thread(self.proc.stdout.readline)
                assert line, f"otto monitor ended: {self.output!r}"
                self.output += line
        return found

    async def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.to_thread(self.proc.communicate, timeout=WAIT)
        self.output += rest
        return self.proc.returncode


@pytest.fixture
def otto_monitor() -> Iterator[list[Otto]]:
    started: list[Otto] = []
    yield started
    for otto in started:
        if otto.proc.poll() is None:
            otto.proc.kill()
            otto.proc.wait(WAIT)
        if otto.proc.stdout is not None:
            otto.proc.stdout.close()


def start_otto(
    started: list[Otto], *args: str, env: dict[str, str] | None = None, files: int | None = None
) -> Otto:
    argv = [sys.executable, "-m", "otto", "monitor", "--port", "0", "--interval", "0.5", *args]
    if files is not None:
        # The shell lowers its descriptor limit, then becomes otto.
        argv = ["sh", "-c", f'ulimit -n {int(files)} && exec "$@"', "sh", *argv]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env or cli_env(),
    )
    otto = Otto(proc)
    started.append(otto)
    return otto


# --- the addresses it answers on ---------------------------------------------------------------


async def test_a_server_on_another_loopback_address_accepts_its_own_url() -> None:
    # It answered 'Invalid host header' to the URL it printed: only 127.0.0.1,
    # localhost and [::1] were allowed Host names.
    async with DashboardServer(source(), host="127.0.0.2", port=0) as server:
        assert server.url == f"http://127.0.0.2:{server.port}/"
        async with httpx.AsyncClient(timeout=WAIT) as http:
            page = await http.get(server.url)
            assert page.status_code == 200, page.text
            # Other names are still refused (DNS rebinding).
            evil = await http.get(server.url, headers={"Host": f"evil.example:{server.port}"})
            assert evil.status_code == 400


async def test_otto_monitor_bind_to_another_loopback_address(otto_monitor: list[Otto]) -> None:
    otto = start_otto(otto_monitor, "--bind", "127.0.0.2")
    found = await otto.read_until(rb"dashboard: (http://127\.0\.0\.2:\d+/)\s")
    async with httpx.AsyncClient(timeout=WAIT) as http:
        page = await http.get(found.group(1).decode() + "api/snapshot")
        assert page.status_code == 200, page.text
        assert "local" in page.json()["hosts"]
    assert await otto.stop() == 0, otto.output


async def test_a_wildcard_server_names_the_machines_addresses() -> None:
    async with DashboardServer(source(), host="0.0.0.0", port=0) as server:
        hosts = [urlsplit(url).hostname for url in server.urls]
        assert "0.0.0.0" not in hosts
        assert hosts == reachable_addresses("0.0.0.0")
        assert hosts[-1] == "127.0.0.1"  # loopback last: the machine's own first
        assert server.url == server.urls[0]
        async with httpx.AsyncClient(timeout=WAIT) as http:
            for link in server.links:
                assert (await http.get(link)).status_code == 200, link


# --- bounds on connections ---------------------------------------------------------------------


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    async with asyncio.timeout(WAIT):
        return await reader.read()


@pytest_asyncio.fixture(loop_scope="session")
async def guarded() -> AsyncIterator[tuple[DashboardServer, MemorySource]]:
    shown = source()
    server = DashboardServer(
        shown, port=0, token=new_token(), max_connections=20, header_timeout=0.5
    )
    async with server:
        yield server, shown
    shown.stop()


async def test_a_connection_that_sends_nothing_or_half_a_request_is_closed(
    guarded: tuple[DashboardServer, MemorySource],
) -> None:
    server, _ = guarded
    silent = await asyncio.open_connection("127.0.0.1", server.port)
    half = await asyncio.open_connection("127.0.0.1", server.port)
    half[1].write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no end of headers
    await half[1].drain()
    try:
        assert await closed_by_server(silent[0]) == b""
        assert await closed_by_server(half[0]) == b""
    finally:
        for _, writer in (silent, half):
            writer.close()


async def test_a_request_without_the_token_gets_401_and_the_connection_closed(
    guarded: tuple[DashboardServer, MemorySource],
) -> None:
    server, _ = guarded
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        answer = await closed_by_server(reader)
    finally:
        writer.close()
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 401"), answer
    assert b"\r\nconnection: close" in head, answer


async def test_idle_connections_beyond_the_limit_make_room_for_the_token_holder(
    guarded: tuple[DashboardServer, MemorySource],
) -> None:
    server, shown = guarded
    assert server.token is not None
    limit = server.limits.max_connections
    auth = {"Authorization": f"Bearer {server.token}"}
    # The token holder's event stream is open before the flood, and stays open.
    async with (
        httpx.AsyncClient(timeout=WAIT) as http,
        http.stream("GET", server.url + "api/stream", headers=auth) as stream,
    ):
        lines = stream.aiter_lines()
        async with asyncio.timeout(WAIT):
            first = await anext(line async for line in lines if line.startswith("data:"))
        assert json.loads(first[5:])["type"] == "snapshot"
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(50)]
        try:
            # The oldest ones were closed to keep `limit` open at most.
            for reader, _ in idle[: 50 - limit]:
                assert await closed_by_server(reader) == b""
            # A new request with the token gets in.
            metrics = await http.get(server.url + "metrics", headers=auth)
            assert metrics.status_code == 200
            # The stream still runs.
            shown.push_round(1_700_000_001.0, {"h1": {"cpu.percent": 6.0}})
            async with asyncio.timeout(WAIT):
                message = await anext(line async for line in lines if line.startswith("data:"))
            assert json.loads(message[5:])["type"] == "round"
            # And the rest are closed by the header timeout.
            for reader, _ in idle[50 - limit :]:
                assert await closed_by_server(reader) == b""
        finally:
            for _, writer in idle:
                writer.close()


async def test_otto_monitor_with_few_file_descriptors_outlasts_300_idle_connections(
    otto_monitor: list[Otto],
) -> None:
    # 300 connections that never send a byte used up the monitor's file descriptors:
    # the token holder's requests were never even accepted.
    token = new_token()
    otto = start_otto(otto_monitor, env=cli_env(OTTO_MONITOR_TOKEN=token), files=128)
    found = await otto.read_until(rb"dashboard: http://127\.0\.0\.1:(\d+)/")
    port = int(found.group(1))
    idle: list[asyncio.StreamWriter] = []
    try:
        for _ in range(300):
            # On the old code, connects beyond its descriptors wait in the backlog.
            async with asyncio.timeout(WAIT):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            idle.append(writer)
        async with httpx.AsyncClient(timeout=WAIT) as http:
            metrics = await http.get(
                f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}
            )
        assert metrics.status_code == 200
        assert 'otto_host_up{host="local"} 1' in metrics.text
    finally:
        for writer in idle:
            writer.close()
    assert await otto.stop() == 0, otto.output
    # Never out of descriptors: asyncio would say so (in a storm of tracebacks).
    assert b"Traceback" not in otto.output, otto.output
    assert b"out of system resource" not in otto.output, otto.output
