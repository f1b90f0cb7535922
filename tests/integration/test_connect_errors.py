"""Connection failures a person can act on: each names the step that failed (TCP
connect, SSH handshake, authentication, login, shell start), the host, and what
to do next; no secret is ever part of one.

Against real sockets (a port that accepts TCP and never speaks, a port nobody
listens on, a server that echoes what it is sent), the lab's sshd and telnetd,
and the ``otto`` command itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from otto import AuthenticationError, ConnectError, HostKeyError, RemoteHost
from otto.transports.sshlib import asyncssh
from otto.transports.steps import AUTHENTICATION, LOGIN, SHELL_START, SSH_HANDSHAKE, TCP_CONNECT
from tests.integration.hosts import remote_host
from tests.lab import Lab

pytestmark = pytest.mark.integration

SECRET = "Echoed-Pa55word"


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A port whose connections the kernel accepts, and where nobody ever says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest_asyncio.fixture
async def http_port() -> AsyncIterator[int]:
    """A server that answers like a web server, not an SSH server."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest_asyncio.fixture
async def echoing_login_port() -> AsyncIterator[int]:
    """A login that refuses every password and prints the one it was given."""

    async def login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                writer.write(b"login: ")
                await reader.readuntil(b"\r")
                writer.write(b"Password: ")
                typed = (await reader.readuntil(b"\r")).strip()
                writer.write(b"\r\nno user knows the password %s\r\nLogin incorrect\r\n" % typed)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(login, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


class _SilentShell(asyncssh.SSHServerSession[str]):
    """A shell that starts and never reads or prints a thing."""

    def shell_requested(self) -> bool:
        return True


class _NoAuthServer(asyncssh.SSHServer):
    """Lets anyone in; ``shell`` decides what a session channel gets."""

    def __init__(self, shell: bool) -> None:
        self._shell = shell

    def begin_auth(self, username: str) -> bool:
        return False

    def session_requested(self) -> asyncssh.SSHServerSession[str] | bool:
        # A session that never runs anything, or a refused channel.
        return _SilentShell() if self._shell else False


class _StallingAuth(asyncssh.SSHServer):
    """Asks for a password and never decides on it."""

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        await asyncio.Event().wait()
        return False


@pytest_asyncio.fixture
async def stalling_auth_port() -> AsyncIterator[int]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(_StallingAuth, "127.0.0.1", 0, server_host_keys=[key])
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest_asyncio.fixture
async def greeting_only_port() -> AsyncIterator[int]:
    """A server that says it speaks SSH, then says nothing more."""
    held: list[asyncio.StreamWriter] = []

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-Stalls\r\n")
        held.append(writer)

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]
        for writer in held:
            writer.close()


@pytest_asyncio.fixture(params=[False, True], ids=["channel-refused", "shell-silent"])
async def shell_less_ssh(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, bool]]:
    """An SSH server (asyncssh) that logs anyone in and then never gives a working shell."""
    shell = bool(request.param)
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        lambda: _NoAuthServer(shell), "127.0.0.1", 0, server_host_keys=[key]
    )
    try:
        yield server.sockets[0].getsockname()[1], shell
    finally:
        server.close()
        await server.wait_closed()


def local_host(port: int, **options: object) -> RemoteHost:
    values: dict[str, object] = {"user": "nobody", "known_hosts": None, "connect_timeout": 1.5}
    values.update(options)
    return RemoteHost("127.0.0.1", port=port, **values)  # type: ignore[arg-type]


async def connect_error(host: RemoteHost) -> ConnectError:
    """The error ``host.run`` raises (the host is closed after)."""
    try:
        with pytest.raises(ConnectError) as info:
            await host.run("true")
    finally:
        await host.close()
    assert "\n" not in str(info.value)
    return info.value


# --- TCP connect ---------------------------------------------------------------------------


@pytest.mark.parametrize("term", ["ssh", "telnet"])
async def test_nothing_listening_is_a_failed_tcp_connect(closed_port: int, term: str) -> None:
    error = await connect_error(local_host(closed_port, term=term))
    assert error.step == TCP_CONNECT
    assert f"TCP connect to 127.0.0.1:{closed_port} failed: Connection refused" in str(error)


@pytest.mark.parametrize("term", ["ssh", "telnet"])
async def test_a_name_that_does_not_resolve_is_a_failed_tcp_connect(term: str) -> None:
    host = RemoteHost("no-such-host.invalid", user="nobody", term=term, known_hosts=None)  # type: ignore[arg-type]
    error = await connect_error(host)
    assert error.step == TCP_CONNECT
    port = 22 if term == "ssh" else 23
    assert f"TCP connect to no-such-host.invalid:{port} failed: " in str(error)
    assert "Unknown error" not in str(error) and "Errno" not in str(error)


@pytest.mark.parametrize("name", ["inner", "inner-telnet"])
async def test_a_refused_connect_through_a_hop_is_a_failed_tcp_connect(
    lab: Lab, closed_port: int, name: str
) -> None:
    host = remote_host(lab, name, port=closed_port, connect_timeout=5)
    hop = host.hop
    assert hop is not None
    try:
        error = await connect_error(host)
    finally:
        await hop.close()
    assert error.step == TCP_CONNECT
    where = f"{lab.host(name).address}:{closed_port}"
    assert f"TCP connect to {where} through " in str(error)


# --- SSH handshake -------------------------------------------------------------------------


async def test_a_port_that_never_speaks_ssh_is_a_handshake_timeout(mute_port: int) -> None:
    error = await connect_error(local_host(mute_port, connect_timeout=1.5, name="mute"))
    assert error.step == SSH_HANDSHAKE
    assert str(error).startswith(f"mute: no SSH handshake from 127.0.0.1:{mute_port} within 1.5s")
    assert "sent no SSH greeting" in str(error)
    assert "shell" not in str(error)


async def test_a_server_that_greets_and_stalls_is_a_handshake_timeout(
    greeting_only_port: int,
) -> None:
    error = await connect_error(local_host(greeting_only_port, connect_timeout=1.5))
    assert error.step == SSH_HANDSHAKE
    assert f"no SSH handshake from 127.0.0.1:{greeting_only_port} within 1.5s" in str(error)
    assert "greeting" not in str(error)


async def test_a_server_that_speaks_something_else_fails_the_handshake(http_port: int) -> None:
    error = await connect_error(local_host(http_port))
    assert error.step == SSH_HANDSHAKE
    assert f"SSH handshake with 127.0.0.1:{http_port} failed" in str(error)


async def test_a_missing_known_hosts_file_says_the_two_ways_on(
    tmp_path: Path, closed_port: int
) -> None:
    missing = tmp_path / "no such dir" / "known_hosts"
    error = await connect_error(local_host(closed_port, known_hosts=missing))
    assert isinstance(error, HostKeyError)
    assert error.step == SSH_HANDSHAKE
    message = str(error)
    assert f"known_hosts file {missing} does not exist" in message
    # Checked before connecting: nobody listens on the port, and that is not the error.
    assert "Connection refused" not in message
    assert f"`ssh-keyscan -H -p {closed_port} 127.0.0.1 >> '{missing}'`" in message
    assert '"known_hosts": null' in message


async def test_a_key_file_that_cannot_be_used_is_named_before_connecting(
    tmp_path: Path, closed_port: int
) -> None:
    missing, garbage = tmp_path / "id_missing", tmp_path / "id_garbage"
    garbage.write_text("not a key\n")
    error = await connect_error(local_host(closed_port, key=missing))
    assert str(error).endswith(f"cannot read {missing}: No such file or directory")
    error = await connect_error(local_host(closed_port, key=garbage))
    assert f"cannot load the key {garbage}: " in str(error)
    assert "Connection refused" not in str(error)


async def test_an_unknown_host_key_names_the_lab_field(lab: Lab) -> None:
    error = await connect_error(remote_host(lab, "ssh2", known_hosts=lab.bad_known_hosts))
    assert isinstance(error, HostKeyError)
    assert error.step == SSH_HANDSHAKE
    message = str(error)
    assert f"is not trusted by {lab.bad_known_hosts}" in message
    assert '"known_hosts": null' in message
    assert "known_hosts=None" not in message
    assert f"ssh-keyscan -H {lab.host('ssh2').address}" in message


async def test_an_unknown_host_key_behind_a_hop_says_to_scan_on_the_hop(lab: Lab) -> None:
    host = remote_host(lab, "inner", known_hosts=lab.bad_known_hosts)
    hop = host.hop
    assert hop is not None
    try:
        error = await connect_error(host)
    finally:
        await hop.close()
    assert isinstance(error, HostKeyError)
    address = lab.host("inner").address
    assert (
        f"add its key with `ssh-keyscan -H {address}` on hop ssh1, "
        f"its output appended to {lab.bad_known_hosts}"
    ) in str(error)


# --- authentication and login --------------------------------------------------------------


async def test_a_refused_ssh_password_is_named_authentication(lab: Lab) -> None:
    spec = lab.host("ssh2")
    host = RemoteHost(
        spec.address, user=spec.user, password=SECRET, known_hosts=lab.known_hosts, name="ssh2"
    )
    error = await connect_error(host)
    assert isinstance(error, AuthenticationError)
    assert error.step == AUTHENTICATION
    assert str(error) == (
        f"ssh2: authentication failed: {spec.address}:{spec.port} refused the password "
        f"for user {spec.user}"
    )


async def test_an_authentication_that_never_ends_is_bounded(stalling_auth_port: int) -> None:
    host = local_host(stalling_auth_port, password="pw-never-checked", connect_timeout=2)
    error = await connect_error(host)
    assert error.step == AUTHENTICATION
    assert str(error).endswith(
        f"authentication as nobody at 127.0.0.1:{stalling_auth_port} did not finish within 2s"
    )


async def test_a_refused_telnet_password_is_a_refused_login(lab: Lab) -> None:
    error = await connect_error(remote_host(lab, "telnet1", password=SECRET, connect_timeout=5))
    assert isinstance(error, AuthenticationError)
    assert error.step == LOGIN
    assert SECRET not in str(error) and SECRET not in repr(error)


async def test_a_telnet_port_that_never_prompts_is_a_login_timeout(mute_port: int) -> None:
    error = await connect_error(local_host(mute_port, term="telnet", password="pw-unused"))
    assert error.step == LOGIN
    assert f"no Telnet login at 127.0.0.1:{mute_port} within 1.5s" in str(error)


async def test_a_password_the_server_prints_back_is_masked(echoing_login_port: int) -> None:
    host = local_host(echoing_login_port, term="telnet", password=SECRET, connect_timeout=5)
    error = await connect_error(host)
    assert isinstance(error, AuthenticationError)
    assert error.step == LOGIN
    assert "no user knows the password ***" in str(error)
    for shown in (str(error), repr(error), error.reason):
        assert SECRET not in shown


# --- shell start ---------------------------------------------------------------------------


async def test_no_working_shell_after_login_is_a_failed_shell_start(
    shell_less_ssh: tuple[int, bool],
) -> None:
    port, shell = shell_less_ssh
    error = await connect_error(local_host(port, connect_timeout=3))
    assert error.step == SHELL_START
    if shell:
        assert "the shell did not become ready within 3s" in str(error)
    else:
        assert f"shell start failed: cannot open an SSH channel on 127.0.0.1:{port}" in str(error)


# --- through the otto command --------------------------------------------------------------


def otto_run(
    lab_file: Path,
    host: str,
    *,
    home: Path | None = None,
    options: tuple[str, ...] = (),
    **extra_env: str,
) -> str:
    """``otto [OPTIONS] --lab FILE host HOST run true``: its exit must fail; returns
    stdout + stderr."""
    env = {k: v for k, v in os.environ.items() if k != "OTTO_LAB"}
    if home is not None:
        env["HOME"] = str(home)
    env.update(extra_env)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "otto",
            *options,
            "--lab",
            str(lab_file),
            "host",
            host,
            "run",
            "true",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    return proc.stdout + proc.stderr


def write_lab(path: Path, *hosts: dict[str, object]) -> Path:
    path.write_text(json.dumps({"hosts": list(hosts)}))
    return path


def test_cli_names_the_missing_handshake(tmp_path: Path, mute_port: int) -> None:
    lab = write_lab(
        tmp_path / "lab.json",
        {
            "name": "mute",
            "address": "127.0.0.1",
            "port": mute_port,
            "user": "nobody",
            "known_hosts": None,
            "connect_timeout": 1,
        },
    )
    out = otto_run(lab, "mute")
    assert f"no SSH handshake from 127.0.0.1:{mute_port} within 1s" in out
    assert "did not become ready" not in out


@pytest.mark.parametrize("term", ["ssh", "telnet"])
def test_cli_connect_timeout_is_the_one_the_error_names(
    tmp_path: Path, mute_port: int, term: str
) -> None:
    lab = write_lab(
        tmp_path / "lab.json",
        {
            "name": "mute",
            "term": term,
            "address": "127.0.0.1",
            "port": mute_port,
            "user": "nobody",
            "password": "pw-never-asked",
            "connect_timeout": 30,
            **({"known_hosts": None} if term == "ssh" else {}),
        },
    )
    out = otto_run(lab, "mute", options=("--connect-timeout", "1.2"))
    step = "no SSH handshake from" if term == "ssh" else "no Telnet login at"
    assert f"{step} 127.0.0.1:{mute_port} within 1.2s" in out


def test_cli_says_how_to_go_on_without_a_known_hosts_file(tmp_path: Path, closed_port: int) -> None:
    home = tmp_path / "home"
    home.mkdir()
    lab = write_lab(
        tmp_path / "lab.json",
        {"name": "fresh", "address": "127.0.0.1", "port": closed_port, "user": "nobody"},
    )
    out = otto_run(lab, "fresh", home=home)
    file = home / ".ssh" / "known_hosts"
    [line] = [line for line in out.splitlines() if "known_hosts" in line]
    assert f"known_hosts file {file} does not exist" in line
    assert f"ssh-keyscan -H -p {closed_port} 127.0.0.1 >> {file}" in line
    assert '"known_hosts": null' in line


def test_cli_names_a_refused_password_without_it(tmp_path: Path, lab: Lab) -> None:
    spec = lab.host("ssh2")
    lab_file = write_lab(
        tmp_path / "lab.json",
        {
            "name": "ssh2",
            "address": spec.address,
            "port": spec.port,
            "user": spec.user,
            "password": SECRET,
            "known_hosts": str(lab.known_hosts),
        },
    )
    out = otto_run(lab_file, "ssh2")
    assert f"authentication failed: {spec.address}:{spec.port} refused the password" in out
    assert SECRET not in out


def test_cli_never_shows_an_environment_value_in_hop_and_via_errors(tmp_path: Path) -> None:
    hop_value, via_value = "Hop-Sekr3t-value", "Via-Sekr3t-value"
    lab = write_lab(
        tmp_path / "lab.json",
        {
            "name": "db",
            "address": "192.0.2.5",
            "user": "nobody",
            "hop": "${GW_NAME}",
            "power": {"via": "${PDU_HOST}", "on": "true"},
        },
    )
    out = otto_run(lab, "db", GW_NAME=hop_value, PDU_HOST=via_value)
    assert "no host in the lab is named by the value of ${GW_NAME} (not shown)" in out
    assert "no host in the lab is named by the value of ${PDU_HOST} (not shown)" in out
    assert hop_value not in out and via_value not in out
