"""A dashboard beyond loopback: its access token and TLS, on a real uvicorn, in real
Chromium, and through ``otto monitor --bind``."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from otto.monitor.access import UNAUTHORIZED_BODY, new_token
from otto.monitor.addresses import reachable_addresses
from otto.monitor.web import DashboardServer, MemorySource
from tests.integration.test_dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    filled,
    push,
    wait_points,
    wait_ready,
)
from tests.lab.prometheus import TlsFiles, make_tls

WAIT = 30.0
# What differs between any two answers whatever they are.
VOLATILE = {"date", "server"}


def client(tls: TlsFiles, **options: object) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(tls.ca))
    return httpx.AsyncClient(verify=context, timeout=WAIT, **options)  # type: ignore[arg-type]


def seen(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE)
    return response.status_code, response.content, headers


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls(tmp_path / "tls")


@pytest_asyncio.fixture(loop_scope="session")
async def exposed(
    tls: TlsFiles, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[tuple[DashboardServer, MemorySource]]:
    """A dashboard on every address, over HTTPS, with the token it made itself."""
    caplog.set_level(logging.DEBUG)
    source = filled(20)
    server = DashboardServer(source, host="0.0.0.0", port=0, tls_cert=tls.cert, tls_key=tls.key)
    async with server:
        yield server, source
    source.stop()
    assert server.token is not None
    assert server.token not in caplog.text, "the token was logged"


async def test_https_and_the_token_on_a_real_server(
    exposed: tuple[DashboardServer, MemorySource], tls: TlsFiles
) -> None:
    server, _ = exposed
    token = server.token
    assert token is not None
    base = f"https://127.0.0.1:{server.port}"
    assert server.url == f"https://{reachable_addresses('0.0.0.0')[0]}:{server.port}/"
    assert server.link == f"{server.url}?token={token}"
    async with client(tls) as http:
        refused = [
            seen(await http.get(f"{base}{path}"))
            for path in ("/", "/metrics", "/api/stream", "/no/such/path", "/static/nope.js")
        ]
        wrong = new_token()
        refused.append(seen(await http.get(f"{base}/metrics", params={"token": wrong})))
        refused.append(seen(await http.get(f"{base}/no/such", params={"token": wrong})))
        refused.append(
            seen(
                await http.get(f"{base}/api/snapshot", headers={"Authorization": f"Bearer {wrong}"})
            )
        )
        refused.append(seen(await http.post(f"{base}/api/events", json={"label": "x"})))
        # A known path and an unknown one, with no token or a wrong one: the same answer.
        assert all(answer == refused[0] for answer in refused), refused
        assert refused[0][:2] == (401, UNAUTHORIZED_BODY)

        by_header = await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
        assert by_header.status_code == 200 and "otto_host_up" in by_header.text
        assert "set-cookie" not in by_header.headers
        page = await http.get(f"{base}/", params={"token": token})
        assert page.status_code == 200 and "<html" in page.text.lower()
        cookie = page.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie
        # The client now holds the cookie: the page's own requests need nothing else.
        snapshot = await http.get(f"{base}/api/snapshot")
        assert snapshot.status_code == 200 and "web-1" in snapshot.json()["hosts"]
        assert (await http.get(f"{base}/no/such/path")).status_code == 404
    # Plain HTTP on the HTTPS port gets no dashboard.
    async with httpx.AsyncClient(timeout=WAIT) as plain:
        try:
            answer = await plain.get(f"http://127.0.0.1:{server.port}/metrics")
        except httpx.HTTPError:
            pass
        else:
            assert answer.status_code != 200, answer.text


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing")
async def test_chromium_opens_the_printed_link_and_gets_live_rounds(
    exposed: tuple[DashboardServer, MemorySource],
) -> None:
    server, source = exposed
    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            # The throwaway CA is not in Chromium's store; the token is what is tested.
            context = await browser.new_context(ignore_https_errors=True, bypass_csp=True)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(server.link.replace("0.0.0.0", "127.0.0.1"))
            await wait_ready(page)
            await wait_points(page, 20)
            # Live updates come through the event stream, which carries only the cookie.
            for k in range(20, 23):
                push(source, k)
            await wait_points(page, 23)
            assert errors == []
            await context.close()

            stranger = await browser.new_context(ignore_https_errors=True)
            other = await stranger.new_page()
            answer = await other.goto(server.url.replace("0.0.0.0", "127.0.0.1"))
            assert answer is not None and answer.status == 401
            assert "needs its access token" in await other.content()
            await stranger.close()
        finally:
            await browser.close()


# --- otto monitor --bind ---------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "OTTO_MONITOR_TOKEN"}}
    env.update(extra)
    return env


async def run_otto(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "otto",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env or cli_env(),
    )
    async with asyncio.timeout(WAIT):
        output, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, output.decode()


async def test_otto_monitor_bind_prints_a_link_with_a_new_token() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "otto",
        "monitor",
        "--bind",
        "0.0.0.0",
        "--port",
        "0",
        "--interval",
        "0.5",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=cli_env(),
    )
    assert proc.stdout is not None
    output = b""
    try:
        async with asyncio.timeout(WAIT):
            # The machine's own addresses, loopback last: never 0.0.0.0.
            while (
                found := re.search(rb"also at: http://127\.0\.0\.1:(\d+)/\?token=(\S+)", output)
            ) is None:
                line = await proc.stdout.readline()
                assert line, f"otto monitor ended: {output!r}"
                output += line
        port, token = int(found.group(1)), found.group(2).decode()
        assert len(token) >= 16
        printed = re.findall(rb"(?:dashboard|also at): http://([0-9.]+):(\d+)/\?token=", output)
        addresses = reachable_addresses("0.0.0.0")
        assert [(a.decode(), int(p)) for a, p in printed] == [(a, port) for a in addresses]
        assert b"0.0.0.0" not in output
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
            assert (await http.get("/metrics")).status_code == 401
            metrics = await http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            assert metrics.status_code == 200 and 'otto_host_up{host="local"}' in metrics.text
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT):
            rest, _ = await proc.communicate()
    output += rest
    assert proc.returncode == 0, output
    # The token is in the printed links, and nowhere else.
    assert output.count(token.encode()) == len(addresses), output


async def test_otto_monitor_token_from_the_environment_guards_loopback_too() -> None:
    token = new_token()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "otto",
        "monitor",
        "--port",
        "0",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=cli_env(OTTO_MONITOR_TOKEN=token),
    )
    assert proc.stdout is not None
    output = b""
    try:
        async with asyncio.timeout(WAIT):
            while (
                found := re.search(rb"dashboard: (http://127\.0\.0\.1:(\d+)/\S*)", output)
            ) is None:
                line = await proc.stdout.readline()
                assert line, f"otto monitor ended: {output!r}"
                output += line
        assert found.group(1).decode().endswith(f"?token={token}")
        port = int(found.group(2))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
            assert (await http.get("/")).status_code == 401
            assert (await http.get("/", params={"token": token})).status_code == 200
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT):
            await proc.communicate()
    assert proc.returncode == 0


async def test_otto_monitor_bad_tls_files_and_tokens_are_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    code, output = await run_otto(
        "monitor",
        "--bind",
        "0.0.0.0",
        "--port",
        "0",
        "--tls-cert",
        str(junk),
        "--tls-key",
        str(junk),
    )
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1, output
    assert "junk.pem" in lines[0] and "Traceback" not in output
    code, output = await run_otto("monitor", "--port", "0", "--tls-cert", str(junk))
    assert code == 2 and "--tls-cert and --tls-key go together" in output, output
    code, output = await run_otto("monitor", "--port", "0", "--token", "hunter2")
    assert code == 2 and "at least 16 characters" in output and "hunter2" not in output
