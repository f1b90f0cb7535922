"""Port forwards, SOCKS and ``otto tunnel add`` over the lab's two-hop chain
(ssh1 -> inner -> inner2), with a real HTTP server on the innermost host."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from otto import RemoteHost
from otto.errors import ForwardError
from tests.integration.hosts import eventually, remote_host
from tests.lab import Lab

pytestmark = pytest.mark.integration

INNER = "inner2"
ROUTE = "ssh1 -> inner -> inner2"
PAGE = "otto-forward-page\n"
DEADLINE = 20.0


def in_netns(lab: Lab, name: str, argv: list[str]) -> list[str]:
    """``argv`` run on the lab host ``name`` (its network namespace), or here in loopback mode."""
    netns = lab.netns(name)
    return argv if netns is None else ["ip", "netns", "exec", netns, *argv]


@dataclass
class Web:
    """An HTTP server on the innermost host, listening on its 127.0.0.1."""

    port: int
    proc: asyncio.subprocess.Process

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def web(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Web]:
    root = tmp_path_factory.mktemp("web")
    (root / "index.html").write_text(PAGE)
    proc = await asyncio.create_subprocess_exec(
        *in_netns(
            lab,
            INNER,
            [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
        ),
        "--directory",
        str(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), DEADLINE)
    found = re.search(rb"port (\d+)", line)
    assert found, line
    try:
        yield Web(int(found[1]), proc)
    finally:
        proc.kill()
        await proc.wait()


@pytest_asyncio.fixture(loop_scope="session")
async def inner(lab: Lab) -> AsyncIterator[RemoteHost]:
    host = remote_host(lab, INNER)
    try:
        yield host
    finally:
        await host.close()


async def http_get(port: int, host: str = "127.0.0.1") -> str:
    """The body of ``GET /`` from ``host:port`` (HTTP/1.0: the server closes)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        response = await asyncio.wait_for(reader.read(), DEADLINE)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    return body.decode()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def established(lab: Lab, name: str, port: int) -> list[str]:
    """TCP connections established to ``port`` on host ``name`` (seen from its side)."""
    done = subprocess.run(
        in_netns(lab, name, ["ss", "-Htn", "state", "established", f"( sport = :{port} )"]),
        capture_output=True,
        text=True,
        check=True,
        timeout=DEADLINE,
    )
    return [line for line in done.stdout.splitlines() if line.strip()]


# --- host.forward --------------------------------------------------------------------------


async def test_forward_reaches_a_web_server_behind_two_hops(
    lab: Lab, web: Web, inner: RemoteHost
) -> None:
    async with inner.forward(0, web.target) as forward:
        assert forward.port > 0
        assert str(forward) == f"127.0.0.1:{forward.port} -> {web.target} via {ROUTE}"
        assert await http_get(forward.port) == PAGE
        assert await http_get(forward.port) == PAGE  # a second connection, a second channel
        port = forward.port
    assert port_is_free(port)
    assert forward.open_channels == 0
    assert forward.failures == []
    # The host's connection outlives the forward.
    assert (await inner.run("echo still-here")).only.output == "still-here"


async def test_leaving_the_forward_closes_its_connections(
    lab: Lab, web: Web, inner: RemoteHost
) -> None:
    async with inner.forward(0, web.target) as forward:
        reader, writer = await asyncio.open_connection("127.0.0.1", forward.port)
        # An open connection the server is waiting on (no request sent yet).
        assert await eventually(lambda: forward.open_channels == 1, timeout=DEADLINE)
        assert await eventually(lambda: len(established(lab, INNER, web.port)) == 1)
        port = forward.port
    assert forward.open_channels == 0
    assert await asyncio.wait_for(reader.read(), DEADLINE) == b""  # the client sees the end
    writer.close()
    assert port_is_free(port)
    # The channel is gone at the far end too: the server's connection was closed.
    assert await eventually(lambda: established(lab, INNER, web.port) == [], timeout=DEADLINE)
    assert (await inner.run("echo still-here")).only.output == "still-here"


async def test_a_taken_port_is_one_clear_error(web: Web, inner: RemoteHost) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ForwardError) as info:
            async with inner.forward(port, web.target):
                pass
    message = str(info.value)
    assert f"cannot listen on 127.0.0.1:{port} here: the port is taken" in message
    assert "Traceback" not in message


async def test_a_refusing_target_is_reported_on_probe_and_first_connection(
    lab: Lab, inner: RemoteHost
) -> None:
    closed = 9  # discard: nothing listens there on the lab hosts
    seen: list[str] = []
    expected = f"target 127.0.0.1:{closed} refused the connection (through {INNER})"
    async with inner.forward(0, f"127.0.0.1:{closed}") as forward:
        forward.on_failure = seen.append
        with pytest.raises(ForwardError) as info:
            await forward.probe()
        assert str(info.value) == f"{INNER}: {expected}"
        reader, writer = await asyncio.open_connection("127.0.0.1", forward.port)
        assert await asyncio.wait_for(reader.read(), DEADLINE) == b""
        writer.close()
        assert await eventually(lambda: bool(forward.failures), timeout=DEADLINE)
    assert forward.failures == [expected]
    assert seen == [expected]
    assert forward.open_channels == 0


async def test_an_unreachable_target_is_reported_on_probe(lab: Lab, inner: RemoteHost) -> None:
    if not lab.hop_enforced:
        pytest.skip("loopback lab: no subnet of its own to find an unused address in")
    # An unused address on inner2's own link: its ARP goes unanswered.
    nobody = lab.host(INNER).address.rsplit(".", 1)[0] + ".3"
    async with inner.forward(0, f"{nobody}:80") as forward:
        with pytest.raises(ForwardError) as info:
            await forward.probe(timeout=DEADLINE)
    assert str(info.value) in (
        f"{INNER}: target {nobody}:80 cannot be reached through {INNER}: No route to host",
        f"{INNER}: target {nobody}:80 did not answer within {DEADLINE:g}s (through {INNER})",
    )


async def test_a_local_forward_outlives_a_reconnect(web: Web, inner: RemoteHost) -> None:
    async with inner.forward(0, web.target) as forward:
        assert await http_get(forward.port) == PAGE
        first = await inner.tunnel()
        await inner.disconnect()  # the host's SSH connection (and its hops' channel) is gone
        assert await http_get(forward.port) == PAGE  # the next connection reconnects
        assert await inner.tunnel() is not first
    assert forward.failures == []


async def test_a_telnet_host_cannot_forward(lab: Lab) -> None:
    host = remote_host(lab, "telnet1")
    with pytest.raises(ForwardError, match="port forwards need an SSH host; this is a telnet"):
        async with host.forward(0, "127.0.0.1:80"):
            pass


async def test_connections_prefer_aes_gcm(inner: RemoteHost) -> None:
    # asyncssh's ChaCha20-Poly1305 costs forwards over twice the CPU per byte at each hop.
    conn = await inner.tunnel()
    assert conn.get_extra_info("send_cipher") == "aes128-gcm@openssh.com"
    assert conn.get_extra_info("recv_cipher") == "aes128-gcm@openssh.com"


# --- host.forward_remote -------------------------------------------------------------------


async def test_forward_remote_lets_the_inner_host_reach_a_server_here(
    lab: Lab, inner: RemoteHost
) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello from the controller\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    here = server.sockets[0].getsockname()[1]
    client = (
        "python3 -c 'import socket,sys; "
        's=socket.create_connection(("127.0.0.1", int(sys.argv[1]))); '
        "print(s.makefile().readline().strip())'"
    )
    try:
        async with inner.forward_remote(0, f"127.0.0.1:{here}") as forward:
            assert forward.port > 0
            assert str(forward).startswith(f"127.0.0.1:{forward.port} on {INNER} -> ")
            result = await inner.run(f"{client} {forward.port}")
            assert result.only.output == "hello from the controller"
            remote_port = forward.port
        # The host no longer listens there.
        listening = await inner.run(f"ss -Hltn '( sport = :{remote_port} )'")
        assert listening.only.output == ""
        assert forward.open_channels == 0
    finally:
        server.close()
        await server.wait_closed()


# --- host.socks ----------------------------------------------------------------------------


async def socks5_get(proxy: int, host: str, port: int) -> str:
    """``GET /`` from ``host:port`` through the SOCKS5 proxy on 127.0.0.1:``proxy``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    try:
        writer.write(b"\x05\x01\x00")  # version 5, one method: no authentication
        assert await reader.readexactly(2) == b"\x05\x00"
        try:
            address = b"\x01" + ipaddress.IPv4Address(host).packed
        except ValueError:
            address = b"\x03" + bytes([len(host)]) + host.encode()
        writer.write(b"\x05\x01\x00" + address + struct.pack("!H", port))
        reply = await reader.readexactly(10)
        assert reply[:2] == b"\x05\x00", reply
        writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        response = await asyncio.wait_for(reader.read(), DEADLINE)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    return body.decode()


async def test_socks_connects_from_the_inner_host(lab: Lab, web: Web, inner: RemoteHost) -> None:
    async with inner.socks(0) as proxy:
        assert str(proxy).startswith(f"127.0.0.1:{proxy.port} (SOCKS)")
        # 127.0.0.1 and localhost as the inner host sees them: its own web server.
        assert await socks5_get(proxy.port, "127.0.0.1", web.port) == PAGE
        assert await socks5_get(proxy.port, "localhost", web.port) == PAGE
        port = proxy.port
    assert port_is_free(port)
    assert proxy.open_channels == 0


# --- otto tunnel add -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_file(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    hosts = []
    for record in lab.inventory():
        entry = {k: v for k, v in record.items() if v is not None}
        if entry["term"] == "ssh":
            entry["known_hosts"] = str(lab.known_hosts)
        hosts.append(entry)
    path = tmp_path_factory.mktemp("tunnel-lab") / "lab.json"
    path.write_text(json.dumps({"hosts": hosts}))
    return path


@contextlib.contextmanager
def tunnel(lab_file: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "NO_COLOR"}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otto", "--lab", str(lab_file), "tunnel", "add", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=DEADLINE)


def served_port(proc: subprocess.Popen[str], name: str, target: str) -> int:
    """The port from the tunnel's first line (read with a deadline, not a sleep)."""
    assert proc.stdout is not None
    line = asyncio.run(
        asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), DEADLINE)
    )  # never blocks the test for longer than the deadline
    found = re.fullmatch(
        rf"tunnel {name}: 127\.0\.0\.1:(\d+) -> {re.escape(target)} via {ROUTE}\n", line
    )
    assert found, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
    return int(found[1])


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_otto_tunnel_add_serves_until_interrupted(
    lab_file: Path, web: Web, sig: signal.Signals, code: int
) -> None:
    with tunnel(lab_file, "web", "--host", INNER, "--local", "0", "--to", web.target) as proc:
        port = served_port(proc, "web", web.target)
        assert asyncio.run(http_get(port)) == PAGE
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == code, err
        assert "Traceback" not in err
    assert port_is_free(port)


def test_otto_tunnel_add_socks(lab_file: Path, web: Web) -> None:
    with tunnel(lab_file, "proxy", "--host", INNER, "--socks", "0") as proc:
        assert proc.stdout is not None
        line = asyncio.run(asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), DEADLINE))
        found = re.fullmatch(
            rf"tunnel proxy: 127\.0\.0\.1:(\d+) \(SOCKS\) -> where {INNER} connects, "
            rf"via {ROUTE}\n",
            line,
        )
        assert found, line
        port = int(found[1])
        assert asyncio.run(socks5_get(port, "127.0.0.1", web.port)) == PAGE
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 130, err
    assert port_is_free(port)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--local", "0"], "--local needs --to TARGET:PORT"),
        (["--local", "0", "--to", "::1:80"], "put an IPv6 address in brackets"),
        (["--socks", "0", "--to", "a:1"], "--socks takes no --to"),
        (["--local", "0", "--socks", "0"], "give one of --local PORT, --remote PORT or --socks"),
        (["--local", "70000", "--to", "a:1"], "--local: a port is a number from 0"),
        (["--host", "nosuch", "--local", "0", "--to", "a:1"], "--host: no host matches 'nosuch'"),
    ],
)
def test_otto_tunnel_add_refuses_a_bad_command_line(
    lab_file: Path, args: list[str], says: str
) -> None:
    with tunnel(lab_file, "t", "--host", INNER, *args) as proc:
        _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 2, err
    assert says in err
    assert len(err.strip().splitlines()) == 1, err


def test_otto_tunnel_add_says_when_the_target_refuses(lab_file: Path) -> None:
    with tunnel(lab_file, "web", "--host", INNER, "--local", "0", "--to", "127.0.0.1:9") as proc:
        out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 1, err
    assert out == ""
    assert err.strip().endswith(
        f"otto: error: tunnel web: {INNER}: target 127.0.0.1:9 refused the connection "
        f"(through {INNER})"
    ), err
    assert len(err.strip().splitlines()) == 1, err


def test_otto_tunnel_add_needs_an_ssh_host(lab_file: Path) -> None:
    with tunnel(lab_file, "t", "--host", "telnet1", "--local", "0", "--to", "a:1") as proc:
        out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 1, err
    assert out == ""
    assert err == (
        "otto: error: tunnel t: telnet1: port forwards need an SSH host; this is a telnet host\n"
    )


async def test_otto_tunnel_add_remote_ends_when_its_connection_is_lost(
    fault_lab: Lab, lab_file: Path, inner: RemoteHost
) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello through the tunnel\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    here = server.sockets[0].getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "otto", "--lab", str(lab_file), "tunnel", "add", "back"],
        *["--host", INNER, "--remote", "0", "--to", f"127.0.0.1:{here}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), DEADLINE)).decode()
        found = re.fullmatch(
            rf"tunnel back: 127\.0\.0\.1:(\d+) on {INNER} -> 127\.0\.0\.1:{here} from here, "
            rf"via {ROUTE}\n",
            line,
        )
        assert found, line
        port = int(found[1])
        client = (
            "python3 -c 'import socket,sys; "
            's=socket.create_connection(("127.0.0.1", int(sys.argv[1]))); '
            "print(s.makefile().readline().strip())'"
        )
        assert (await inner.run(f"{client} {port}")).only.output == "hello through the tunnel"
        await fault_lab.kill_sshd(INNER)
        _, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.close()
        await server.wait_closed()
    assert proc.returncode == 1, err
    assert err.decode() == (
        f"otto: error: tunnel back: {INNER}: the SSH connection to {INNER} was lost, "
        f"so it no longer listens on 127.0.0.1:{port}\n"
    )


def test_otto_tunnel_help_shows_metavars_not_types() -> None:
    for command in (["tunnel"], ["tunnel", "add"]):
        proc = subprocess.run(
            [sys.executable, "-m", "otto", *command, "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
            timeout=DEADLINE,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert re.findall(r"<(?:bool|str|int)[^>]*>|\{[A-Z]+\}", proc.stdout) == []
    assert re.search(r"--to\s+TARGET:PORT", proc.stdout)
    assert re.search(r"--local\s+PORT", proc.stdout)
