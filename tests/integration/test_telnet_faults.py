"""Telnet against the real lab under faults: cut links, timeouts, misleading logins, hops."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from otto import Status
from otto.errors import ConnectionLost
from tests.integration.hosts import remote_host, start_and_wait_for
from tests.lab import Lab
from tests.lab.users import DENIED_PROFILE_USER

pytestmark = pytest.mark.integration


async def test_network_cut_ends_a_run_without_timeout(fault_lab: Lab) -> None:
    host = remote_host(fault_lab, "telnet1", keepalive_interval=1, connect_timeout=3)
    session = await host.open_session("busy")
    task = await start_and_wait_for(session, "echo started; sleep 300", b"started")
    started = time.monotonic()
    await fault_lab.cut_network("telnet1")
    # Keepalives: 1 s idle, then 3 probes 1 s apart; the run has no timeout of its own.
    result = (await asyncio.wait_for(task, 15)).only
    assert result.status is Status.Error
    assert "telnet1" in result.error
    assert "keepalive" in result.error
    assert result.output == "started"
    assert time.monotonic() - started < 10
    await fault_lab.restore_network("telnet1")
    assert (await session.run("echo back", timeout=20)).only.output == "back"
    await host.close()


async def test_network_cut_while_input_is_unacknowledged(fault_lab: Lab) -> None:
    """Keepalives stop while sent data waits for an ACK; TCP_USER_TIMEOUT covers that."""
    host = remote_host(fault_lab, "telnet1", keepalive_interval=1, connect_timeout=3)
    session = await host.open_session("talk")
    await session.run("true")
    await fault_lab.cut_network("telnet1")
    started = time.monotonic()
    await session.send("echo never arrives\n")
    with pytest.raises(ConnectionLost) as info:
        await session.expect("never arrives", timeout=30)
    assert "telnet1" in str(info.value)
    assert time.monotonic() - started < 10
    await fault_lab.restore_network("telnet1")
    await host.close()


async def test_oneshot_timeout_bounds_the_login_during_a_cut(fault_lab: Lab) -> None:
    host = remote_host(fault_lab, "telnet1", connect_timeout=10)
    await fault_lab.cut_network("telnet1")
    started = time.monotonic()
    result = await host.oneshot("echo hi", timeout=2)
    took = time.monotonic() - started
    assert result.status is Status.Error and result.timed_out
    assert "telnet1" in result.error
    assert took < 3
    await fault_lab.restore_network("telnet1")
    assert (await host.oneshot("echo back", timeout=10)).output == "back"
    await host.close()


async def test_a_profile_saying_access_denied_does_not_fail_the_login(lab: Lab) -> None:
    host = remote_host(lab, "telnet1", user=DENIED_PROFILE_USER)
    result = (await host.run("whoami")).only
    assert result.status is Status.Success, result.error
    assert result.output == DENIED_PROFILE_USER
    await host.close()


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_the_hop_tunnel_listener_closes_with_the_shell(lab: Lab) -> None:
    host = remote_host(lab, "inner-telnet")
    hop = host.hop
    assert hop is not None
    opened: list[int] = []
    connection = hop.connection
    real_tunnel = connection.tunnel  # type: ignore[attr-defined]

    async def watched_tunnel() -> object:
        conn = await real_tunnel()
        real_forward = conn.forward_local_port

        async def forward(*args: object) -> object:
            listener = await real_forward(*args)
            opened.append(listener.get_port())
            return listener

        conn.forward_local_port = forward
        return conn

    connection.tunnel = watched_tunnel  # type: ignore[attr-defined]
    session = await host.open_session("one")
    assert (await session.run("echo via hop")).only.output == "via hop"
    assert len(opened) == 1 and await asyncio.to_thread(_accepts, opened[0])
    await session.close()
    assert not await asyncio.to_thread(_accepts, opened[0])
    await host.close()
    await hop.close()
