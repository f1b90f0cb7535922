"""SSH connections begun before asyncssh is imported (``otto.transports.ssh_early``).

The link runs SSH on the socket it is handed, with the same host-key check;
a connect that failed leaves the link to connect and report as it always did;
a name, a hop or a client config that could send the connection elsewhere is
never connected early. Against the lab's sshd and real sockets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from otto import HostKeyError
from otto.transports import ssh_early
from otto.transports.steps import SSH_HANDSHAKE, TCP_CONNECT
from tests.integration.hosts import remote_host
from tests.integration.test_connect_errors import connect_error, local_host
from tests.lab import Lab

pytestmark = pytest.mark.integration


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A port whose connections the kernel accepts, and where nobody ever says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def full_port() -> Iterator[int]:
    """A port whose listener's queue is full: the kernel drops new connects' SYNs, so
    they stay under way."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            yield port
        finally:
            for filler in fillers:
                filler.close()


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    yield
    ssh_early.discard_all()


@pytest.fixture
def no_ssh_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def pending(address: str, port: int) -> socket.socket:
    sock = ssh_early._pending.get((address, port))
    assert sock is not None, "the connect was not begun"
    return sock


async def test_the_link_runs_ssh_on_the_early_socket(lab: Lab, no_ssh_config: Path) -> None:
    spec = lab.host("ssh1")
    port = spec.port or 22
    assert ssh_early.start(spec.address, port)
    early = pending(spec.address, port)
    host = remote_host(lab, "ssh1")
    try:
        result = await host.run("echo $((6 * 7))")
        assert result.output == "42"
        conn = await host.tunnel()
        # The connection's own end is the early socket's.
        assert conn.get_extra_info("sockname") == early.getsockname()
    finally:
        await host.close()
    assert not ssh_early._pending


async def test_host_keys_are_checked_on_an_early_socket(lab: Lab, no_ssh_config: Path) -> None:
    spec = lab.host("ssh2")
    assert ssh_early.start(spec.address, spec.port or 22)
    error = await connect_error(remote_host(lab, "ssh2", known_hosts=lab.bad_known_hosts))
    assert isinstance(error, HostKeyError)
    assert error.step == SSH_HANDSHAKE
    assert f"is not trusted by {lab.bad_known_hosts}" in str(error)
    assert not ssh_early._pending


async def test_a_port_that_never_speaks_ssh_is_still_a_handshake_timeout(
    mute_port: int, no_ssh_config: Path
) -> None:
    assert ssh_early.start("127.0.0.1", mute_port)
    error = await connect_error(local_host(mute_port, connect_timeout=1.5, name="mute"))
    assert error.step == SSH_HANDSHAKE
    assert str(error).startswith(f"mute: no SSH handshake from 127.0.0.1:{mute_port} within 1.5s")
    assert "sent no SSH greeting" in str(error)
    assert not ssh_early._pending


async def test_a_refused_early_connect_leaves_the_usual_error(
    closed_port: int, no_ssh_config: Path
) -> None:
    ssh_early.start("127.0.0.1", closed_port)  # refused at once, or soon after
    error = await connect_error(local_host(closed_port))
    assert error.step == TCP_CONNECT
    assert f"TCP connect to 127.0.0.1:{closed_port} failed: Connection refused" in str(error)
    assert not ssh_early._pending


async def test_a_hop_host_never_takes_an_early_socket(lab: Lab, no_ssh_config: Path) -> None:
    """``inner`` is reached through ssh1: its address means something only there."""
    inner = lab.host("inner")
    key = (inner.address, inner.port or 22)
    started = ssh_early.start(*key)
    host = remote_host(lab, "inner")
    try:
        assert (await host.run("echo inner")).output == "inner"
    finally:
        await host.close()
        if host.hop is not None:
            await host.hop.close()
    if started:
        assert key in ssh_early._pending  # still there: nobody took it


def test_a_name_or_a_client_config_is_left_to_the_link(no_ssh_config: Path) -> None:
    assert not ssh_early.start("localhost", 22)
    (no_ssh_config / ".ssh").mkdir()
    (no_ssh_config / ".ssh" / "config").write_text("Host *\n  ProxyJump elsewhere\n")
    assert not ssh_early.start("127.0.0.1", 22)
    assert not ssh_early._pending


async def test_a_connect_still_under_way_is_bounded_by_the_link(
    full_port: int, no_ssh_config: Path
) -> None:
    """The wait for an early connect that does not finish is the link's TCP step."""
    assert ssh_early.start("127.0.0.1", full_port)
    error = await connect_error(local_host(full_port, connect_timeout=0.5, name="full"))
    assert error.step == TCP_CONNECT
    assert f"no TCP connection to 127.0.0.1:{full_port} within 0.5s" in str(error)
    assert not ssh_early._pending
