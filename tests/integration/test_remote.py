"""RemoteHost against the real lab: auth, host keys, hops, limits, transfers, faults."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from otto import (
    AuthenticationError,
    ConnectError,
    HostKeyError,
    RemoteHost,
    Status,
)
from otto.transports.steps import TCP_CONNECT
from tests.integration.hosts import remote_host, start_and_wait_for
from tests.lab import Lab

pytestmark = pytest.mark.integration


async def test_password_and_key_auth(lab: Lab) -> None:
    spec = lab.host("ssh2")
    by_password = RemoteHost(
        spec.address, user=spec.user, password=spec.password, known_hosts=lab.known_hosts
    )
    by_key = remote_host(lab, "ssh2")
    assert (await by_password.run("whoami")).only.output == spec.user
    assert (await by_key.run("whoami")).only.output == spec.user
    await by_password.close()
    await by_key.close()


async def test_wrong_password_is_an_authentication_error_without_the_password(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    spec = lab.host("ssh2")
    secret = "wrong-Secret-123"
    host = RemoteHost(
        spec.address,
        user=spec.user,
        password=secret,
        known_hosts=lab.known_hosts,
        connect_timeout=5,
    )
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as info:
        await host.run("true")
    assert time.monotonic() - started < 5.5
    assert spec.address in str(info.value)
    assert secret not in str(info.value)
    assert secret not in repr(host)
    assert all(secret not in r.getMessage() for r in caplog.records)
    await host.close()


async def test_unknown_host_key_is_refused(lab: Lab) -> None:
    host = remote_host(lab, "ssh2", known_hosts=lab.bad_known_hosts)
    with pytest.raises(HostKeyError, match="known_hosts"):
        await host.run("true")
    await host.close()
    unchecked = remote_host(lab, "ssh2", known_hosts=None)
    assert (await unchecked.run("echo ok")).only.output == "ok"
    await unchecked.close()


async def test_unreachable_address_fails_within_connect_timeout(lab: Lab) -> None:
    if not lab.hop_enforced:
        pytest.skip("needs network namespaces")
    inner = lab.host("inner")  # reachable only through ssh1
    host = RemoteHost(
        inner.address,
        user=inner.user,
        key=inner.key_path,
        known_hosts=lab.known_hosts,
        connect_timeout=2,
    )
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        await host.run("true")
    assert time.monotonic() - started < 3
    assert inner.address in str(info.value)
    assert info.value.step == TCP_CONNECT
    await host.close()


async def test_hops_chain_two_levels_and_reach_telnet(lab: Lab) -> None:
    inner2 = remote_host(lab, "inner2")
    assert inner2.hop is not None and inner2.hop.hop is not None
    out = (await inner2.run("hostname -I")).only
    assert lab.host("inner2").address in out.output
    telnet = remote_host(lab, "inner-telnet")
    assert (await telnet.run("echo through the hop")).only.output == "through the hop"
    for h in (inner2, telnet, inner2.hop, inner2.hop.hop):
        await h.close()


def test_hop_cycle_is_rejected(lab: Lab) -> None:
    a = remote_host(lab, "ssh1")
    b = remote_host(lab, "ssh2", hop=a)
    a.hop = b
    with pytest.raises(ConnectError, match="cycle"):
        b.hop_chain()


async def test_hop_down_names_the_hop(fault_lab: Lab) -> None:
    inner = remote_host(fault_lab, "inner", connect_timeout=3)
    await fault_lab.kill_sshd("ssh1")
    with pytest.raises(ConnectError, match="hop ssh1"):
        await inner.run("true")
    await inner.close()


async def test_hundred_concurrent_oneshots(lab: Lab) -> None:
    host = remote_host(lab, "ssh3")
    outs = await asyncio.gather(*(host.oneshot(f"echo {i}") for i in range(100)))
    assert [o.output for o in outs] == [str(i) for i in range(100)]
    assert all(o.status is Status.Success for o in outs)
    await host.close()


async def test_more_sessions_than_the_server_allows_per_connection(lab: Lab) -> None:
    host = remote_host(lab, "ssh3")
    sessions = await asyncio.gather(*(host.open_session(f"s{i}") for i in range(25)))
    outs = await asyncio.gather(*(s.run(f"echo {i}") for i, s in enumerate(sessions)))
    assert [r.only.output for r in outs] == [str(i) for i in range(25)]
    assert (await host.oneshot("echo extra")).output == "extra"
    await host.close()


async def test_slow_shell_startup_follows_connect_timeout(lab: Lab) -> None:
    spec = lab.host("ssh2", user=lab.slow_user)
    host = RemoteHost(
        spec.address,
        user=spec.user,
        key=spec.key_path,
        known_hosts=lab.known_hosts,
        connect_timeout=10,
    )
    started = time.monotonic()
    assert (await host.run("whoami")).only.output == lab.slow_user
    assert time.monotonic() - started >= 1.0
    await host.close()


@pytest.mark.parametrize("transfer", ["sftp", "scp"])
async def test_transfer_methods(lab: Lab, tmp_path: Path, transfer: str) -> None:
    host = remote_host(lab, "inner", transfer=transfer)  # through a hop, too
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.bin").write_bytes(b"\x00\xff" * 70000)
    remote = (await host.run("mktemp -d")).only.output
    seen: list[int] = []
    put = await host.put(tmp_path / "d", remote, progress=lambda p, d, t: seen.append(d))
    assert put.status is Status.Success, put.error
    assert seen and max(seen) == 140000
    back = tmp_path / "back"
    back.mkdir()
    got = await host.get(f"{remote}/d/f.bin", back)
    assert got.status is Status.Success, got.error
    assert (back / "f.bin").read_bytes() == b"\x00\xff" * 70000
    assert host.hop is not None
    await host.close()
    await host.hop.close()


async def test_sshd_killed_mid_command_then_reconnect(fault_lab: Lab) -> None:
    host = remote_host(fault_lab, "ssh3")
    session = await host.open_session("busy")
    task = await start_and_wait_for(session, "echo started; sleep 30", b"started", run_timeout=10)
    started = time.monotonic()
    await fault_lab.kill_sshd("ssh3")
    result = (await task).only
    assert result.status is Status.Error
    assert "ssh3" in result.error
    assert result.output == "started"
    assert time.monotonic() - started < 10
    with pytest.raises(ConnectError):
        await host.run("true")
    await fault_lab.start_sshd("ssh3")
    assert (await host.run("echo back")).only.output == "back"
    await host.close()


async def test_network_cut_mid_command_does_not_hang(fault_lab: Lab) -> None:
    host = remote_host(fault_lab, "ssh3", connect_timeout=2)
    session = await host.open_session("busy")
    task = await start_and_wait_for(session, "echo started; sleep 30", b"started", run_timeout=2)
    started = time.monotonic()
    await fault_lab.cut_network("ssh3")
    result = (await task).only
    assert result.status is Status.Error
    assert "ssh3" in result.error
    assert time.monotonic() - started < 2 + 5
    await fault_lab.restore_network("ssh3")
    assert (await host.run("echo back", timeout=20)).only.output == "back"
    await host.close()


async def test_telnet_wrong_password(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    spec = lab.host("telnet1")
    host = RemoteHost(
        spec.address, user=spec.user, password="nope-Secret", term="telnet", connect_timeout=10
    )
    with caplog.at_level(1), pytest.raises(AuthenticationError) as info:
        await host.run("true")
    assert "nope-Secret" not in str(info.value)
    assert all("nope-Secret" not in r.getMessage() for r in caplog.records)
    await host.close()


async def test_passwords_stay_out_of_logs_at_every_level(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    telnet = remote_host(lab, "telnet1")
    spec = lab.host("ssh2")
    ssh = RemoteHost(
        spec.address, user=spec.user, password=spec.password, known_hosts=lab.known_hosts
    )
    with caplog.at_level(1):
        assert (await telnet.run("echo in")).only.output == "in"
        assert (await ssh.run("echo in")).only.output == "in"
    assert caplog.records
    assert all(spec.password not in r.getMessage() for r in caplog.records)
    assert spec.password not in repr(ssh) and spec.password not in repr(telnet)
    await telnet.close()
    await ssh.close()
