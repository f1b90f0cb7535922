"""The lab works: proved with asyncssh and telnetlib3 directly, without otto."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import pytest
import telnetlib3

from otto.transports.sshlib import asyncssh
from tests.lab import DEFAULT_NODES, SLOW_STARTUP_SECONDS, CutHow, Lab, LabHost, Mode, NodeSpec
from tests.lab.hosts import MAX_SLOTS, Link, netns_prefix, plan_addresses, ssh_nodes
from tests.lab.keys import known_hosts_pattern
from tests.lab.netns import list_netns
from tests.lab.procs import is_alive

TOP_SSH = ["ssh1", "ssh2", "ssh3"]


@asynccontextmanager
async def ssh(
    lab: Lab,
    host: LabHost,
    *,
    tunnel: asyncssh.SSHClientConnection | None = None,
    use_password: bool = False,
    known_hosts: Path | None = None,
    timeout: float = 10.0,
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """An asyncssh connection to ``host`` as the lab would have a client make it."""
    conn = await asyncssh.connect(
        host.address,
        host.port,
        tunnel=tunnel,
        username=host.user,
        password=host.password if use_password else None,
        client_keys=None if use_password else [str(host.key_path)],
        known_hosts=str(known_hosts or lab.known_hosts),
        agent_path=None,
        connect_timeout=timeout,
    )
    try:
        yield conn
    finally:
        conn.abort()
        await conn.wait_closed()


async def chain(
    lab: Lab, name: str, stack: list[asyncssh.SSHClientConnection]
) -> asyncssh.SSHClientConnection | None:
    """Connect each hop on the way to ``name``; returns the last (the tunnel to use)."""
    tunnel = None
    for hop in lab.hop_chain(name):
        tunnel = await asyncssh.connect(
            hop.address,
            hop.port,
            tunnel=tunnel,
            username=hop.user,
            client_keys=[str(hop.key_path)],
            known_hosts=str(lab.known_hosts),
            agent_path=None,
        )
        stack.append(tunnel)
    return tunnel


async def read_until(
    reader: telnetlib3.TelnetReaderUnicode, text: str, timeout: float = 10.0
) -> str:
    seen = ""
    async with asyncio.timeout(timeout):
        while text not in seen:
            chunk = await reader.read(4096)
            if not chunk:
                raise EOFError(f"connection closed before {text!r}; got {seen!r}")
            seen += chunk
    return seen


async def telnet_run(host: LabHost, address: str, port: int, command: str) -> str:
    """Log in through /bin/login and return what ``command`` printed."""
    opened = await telnetlib3.open_connection(address, port, connect_minwait=0.0)
    # With an encoding (utf8 by default) the streams carry str.
    reader = cast(telnetlib3.TelnetReaderUnicode, opened[0])
    writer = cast(telnetlib3.TelnetWriterUnicode, opened[1])
    try:
        await read_until(reader, "login: ")
        writer.write(host.user + "\r\n")
        await read_until(reader, "Password: ")
        writer.write(host.password + "\r\n")
        await read_until(reader, "$ ")
        writer.write(f"echo BEGIN; {command}; echo END-$((6*7))\r\n")
        seen = await read_until(reader, "END-42")
        return seen.split("BEGIN\r\n", 1)[1].split("END-42", 1)[0]
    finally:
        writer.close()


@pytest.mark.parametrize("name", TOP_SSH)
async def test_publickey_login_runs_command(lab: Lab, name: str) -> None:
    async with ssh(lab, lab.hosts[name]) as conn:
        done = await conn.run("echo hi; whoami", check=True)
    assert done.stdout == f"hi\n{lab.user}\n"


async def test_password_login(lab: Lab) -> None:
    async with ssh(lab, lab.hosts["ssh1"], use_password=True) as conn:
        assert (await conn.run("echo hi", check=True)).stdout == "hi\n"


async def test_wrong_password_is_refused(lab: Lab) -> None:
    host = lab.hosts["ssh1"]
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(
            host.address,
            host.port,
            username=host.user,
            password="not-" + host.password,
            client_keys=None,
            known_hosts=str(lab.known_hosts),
            agent_path=None,
        )


async def test_known_hosts_is_honoured(lab: Lab) -> None:
    host = lab.hosts["ssh2"]
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with ssh(lab, host, known_hosts=lab.bad_known_hosts):
            pass
    assert f"{known_hosts_pattern(host.address, host.port)} ssh-ed25519 " in (
        lab.known_hosts.read_text()
    )


async def test_sftp_subsystem(lab: Lab) -> None:
    async with ssh(lab, lab.hosts["ssh1"]) as conn, conn.start_sftp_client() as sftp:
        assert await sftp.getcwd() == f"/home/{lab.user}"


async def test_max_sessions_is_ten(lab: Lab) -> None:
    async with ssh(lab, lab.hosts["ssh3"]) as conn:
        procs = [await conn.create_process("cat") for _ in range(10)]
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_process("cat")
        for proc in procs:
            proc.stdin.write_eof()
            await proc.wait()


async def test_target_behind_hop(lab: Lab) -> None:
    stack: list[asyncssh.SSHClientConnection] = []
    try:
        tunnel = await chain(lab, "inner", stack)
        assert [hop.name for hop in lab.hop_chain("inner")] == ["ssh1"]
        async with ssh(lab, lab.hosts["inner"], tunnel=tunnel) as conn:
            client = str((await conn.run("echo $SSH_CONNECTION", check=True)).stdout).split()[0]
    finally:
        for conn in reversed(stack):
            conn.close()
    if lab.hop_enforced:
        # The connection came from ssh1's side of the inner link (.1), not from us.
        assert client == lab.hosts["inner"].address.rsplit(".", 1)[0] + ".1"


async def test_target_behind_hop_is_unreachable_directly(lab: Lab) -> None:
    if not lab.hop_enforced:
        pytest.skip("loopback mode cannot hide a host behind a hop")
    for name in ("inner", "inner-telnet", "inner2"):
        host = lab.hosts[name]
        with pytest.raises(OSError):
            async with asyncio.timeout(2.0):
                await asyncio.open_connection(host.address, host.port)


async def test_two_level_hop_chain(lab: Lab) -> None:
    assert [hop.name for hop in lab.hop_chain("inner2")] == ["ssh1", "inner"]
    stack: list[asyncssh.SSHClientConnection] = []
    try:
        tunnel = await chain(lab, "inner2", stack)
        async with ssh(lab, lab.hosts["inner2"], tunnel=tunnel) as conn:
            assert (await conn.run("echo hi", check=True)).stdout == "hi\n"
    finally:
        for conn in reversed(stack):
            conn.close()


async def test_telnet_login_runs_command(lab: Lab) -> None:
    host = lab.hosts["telnet1"]
    assert host.term == "telnet"
    output = await telnet_run(host, host.address, host.port, "echo hi; whoami")
    assert output == f"hi\r\n{lab.user}\r\n"


async def test_telnet_behind_hop(lab: Lab) -> None:
    host = lab.hosts["inner-telnet"]
    hop = lab.hosts[host.hop or ""]
    async with ssh(lab, hop) as conn:
        listener = await conn.forward_local_port("127.0.0.1", 0, host.address, host.port)
        try:
            output = await telnet_run(host, "127.0.0.1", listener.get_port(), "echo hi")
        finally:
            listener.close()
    assert output == "hi\r\n"


async def test_slow_user_shell_start_up(lab: Lab) -> None:
    async with ssh(lab, lab.host("ssh1", user=lab.slow_user)) as conn:
        began = time.monotonic()
        done = await conn.run("whoami", check=True)
        slow = time.monotonic() - began
        # A login shell on a plain shell channel, as otto's sessions use.
        began = time.monotonic()
        proc = await conn.create_process()
        proc.stdin.write("echo ready\n")
        assert await asyncio.wait_for(proc.stdout.readline(), 10) == "ready\n"
        slow_shell = time.monotonic() - began
        proc.close()
    assert done.stdout == f"{lab.slow_user}\n"
    assert slow >= SLOW_STARTUP_SECONDS
    assert slow_shell >= SLOW_STARTUP_SECONDS
    async with ssh(lab, lab.hosts["ssh1"]) as conn:
        began = time.monotonic()
        await conn.run("true", check=True)
        assert time.monotonic() - began < SLOW_STARTUP_SECONDS


async def test_kill_and_restart_sshd(fault_lab: Lab) -> None:
    lab = fault_lab
    host = lab.hosts["ssh2"]
    async with ssh(lab, host) as conn:
        proc = await conn.create_process("sleep 60")
        await lab.kill_sshd("ssh2")
        assert not lab.sshd_running("ssh2")
        # The server side of the connection died with it.
        async with asyncio.timeout(5):
            await proc.wait_closed()
            await conn.wait_closed()
    with pytest.raises(OSError):
        async with ssh(lab, host, timeout=2.0):
            pass
    await lab.start_sshd("ssh2")
    async with ssh(lab, host) as conn:
        assert (await conn.run("echo back", check=True)).stdout == "back\n"


@pytest.mark.parametrize("how", ["link", "drop"])
async def test_cut_and_restore_network(fault_lab: Lab, how: CutHow) -> None:
    lab = fault_lab
    if how == "drop" and not lab.uses_netns:
        pytest.skip("drop rules need namespaces")
    host = lab.hosts["ssh3"]
    async with ssh(lab, host) as conn:
        await lab.cut_network("ssh3", how=how)
        assert lab.is_cut("ssh3")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await conn.run("echo hi")
        with pytest.raises((TimeoutError, OSError)):
            async with ssh(lab, host, timeout=0.3):
                pass
        await lab.restore_network("ssh3")
    async with ssh(lab, host) as conn:
        assert (await conn.run("echo hi", check=True)).stdout == "hi\n"


async def test_cut_hop_cuts_what_is_behind_it(fault_lab: Lab) -> None:
    lab = fault_lab
    if not lab.hop_enforced:
        pytest.skip("loopback mode has no hop topology")
    async with ssh(lab, lab.hosts["ssh1"]) as hop:
        await lab.cut_network("inner")
        inner = lab.hosts["inner"]
        with pytest.raises((TimeoutError, OSError, asyncssh.Error)):
            async with ssh(lab, inner, tunnel=hop, timeout=0.5):
                pass
        # The hop itself is unaffected.
        assert (await hop.run("echo hi", check=True)).stdout == "hi\n"


SMALL = (
    NodeSpec("a", None, (("a", "ssh"), ("a-telnet", "telnet"))),
    NodeSpec("b", "a", (("b", "ssh"),)),
)


@pytest.mark.parametrize("mode", ["netns", "loopback"])
async def test_second_lab_runs_beside_and_leaves_nothing(lab: Lab, mode: Mode) -> None:
    if mode == "netns" and not lab.uses_netns:
        pytest.skip("namespaces unavailable")
    other = Lab(SMALL, mode=mode)
    async with other:
        assert other.slot != lab.slot
        assert other.hop_enforced == (mode == "netns")
        stack: list[asyncssh.SSHClientConnection] = []
        try:
            tunnel = await chain(other, "b", stack)
            async with ssh(other, other.hosts["b"], tunnel=tunnel) as conn:
                assert (await conn.run("echo hi", check=True)).stdout == "hi\n"
        finally:
            for conn in stack:
                conn.close()
        telnet = other.hosts["a-telnet"]
        assert await telnet_run(telnet, telnet.address, telnet.port, "echo hi") == "hi\r\n"
        pids = other.processes()
        lab_dir = other.dir
        assert pids
    assert not [pid for pid in pids if is_alive(pid)]
    assert not lab_dir.exists()
    assert not [n for n in list_netns() if n.startswith(netns_prefix(other.slot))]


def test_address_plan_keeps_every_link_apart() -> None:
    nodes = (*ssh_nodes(79), NodeSpec("deep1", "h1", (("deep1", "ssh"),)))
    plans = [plan_addresses(slot, nodes) for slot in range(MAX_SLOTS)]
    addresses = [a for plan in plans for link in plan.links.values() for a in link_addrs(link)]
    assert len(addresses) == len(set(addresses))
    default = plan_addresses(0, DEFAULT_NODES).links
    assert default["ssh1"].child_addr == "10.213.1.2"
    assert default["inner"].child_addr == "10.213.17.2"
    with pytest.raises(ValueError):
        plan_addresses(0, ssh_nodes(80))


def link_addrs(link: Link) -> tuple[str, str]:
    return link.parent_addr, link.child_addr
