"""The Telnet login and data path against a scripted server on loopback."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from otto.errors import AuthenticationError
from otto.transports.telnet import TelnetShell

SECRET = "s3cret-Pw"
_COMMANDS = re.compile(rb"\xff[\xfb-\xfe].|\xff\xfa.*?\xff\xf0|\xff[\xf0-\xf9]", re.DOTALL)

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _line(reader: asyncio.StreamReader) -> str:
    """One line the client typed, without Telnet commands."""
    data = await reader.readuntil(b"\r")
    return _COMMANDS.sub(b"", data).decode().strip("\r\n\x00")


async def _answer_probes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    """Act as a shell until the inner shell is started; return that line."""
    while True:
        line = await _line(reader)
        probe = re.fullmatch(r"echo \$\(\((\d+)\+1\)\)", line)
        if probe is None:
            return line
        writer.write(f"{line}\r\n{int(probe.group(1)) + 1}\r\n$ ".encode())


async def _log_in(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"Welcome\r\nbox login: ")
    await _line(reader)
    writer.write(b"Password: ")
    if await _line(reader) != SECRET:
        writer.write(b"\r\nLogin incorrect\r\nbox login: ")
        await writer.drain()
        return False
    return True


class Received:
    """A receiver that records what the transport hands on."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lost: asyncio.Future[tuple[int | None, str]] = (
            asyncio.get_running_loop().create_future()
        )

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exit_status: int | None, reason: str) -> None:
        assert not self.lost.done(), "loss reported twice"
        self.lost.set_result((exit_status, reason))


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[TelnetShell]]]:
    servers: list[asyncio.Server] = []
    shells: list[TelnetShell] = []

    async def start(script: Script) -> TelnetShell:
        server = await asyncio.start_server(script, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        shell = TelnetShell(
            "box", "127.0.0.1", port=port, user="me", password=SECRET, connect_timeout=5
        )
        shells.append(shell)
        return shell

    yield start
    for shell in shells:
        await shell.close()
    for server in servers:
        server.close()


async def test_a_profile_that_says_access_denied_is_not_a_failed_login(
    serve: Callable[[Script], Awaitable[TelnetShell]],
) -> None:
    started = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await _log_in(reader, writer)
        writer.write(b"\r\nAccess denied: just the profile talking\r\n$ ")
        await _answer_probes(reader, writer)
        started.set()
        await reader.read()

    shell = await serve(script)
    received = Received()
    await shell.open(received)
    await asyncio.wait_for(started.wait(), 5)
    assert not received.lost.done()


async def test_a_wrong_password_is_refused_and_never_logged(
    serve: Callable[[Script], Awaitable[TelnetShell]], caplog: pytest.LogCaptureFixture
) -> None:
    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert not await _log_in(reader, writer)
        await reader.read()

    shell = await serve(refusing)
    shell._password = SECRET + "-wrong"
    with caplog.at_level(logging.NOTSET), pytest.raises(AuthenticationError) as info:
        await shell.open(Received())
    assert "box" in str(info.value) and "Login incorrect" in str(info.value)
    assert SECRET not in str(info.value)
    assert caplog.records, "nothing was logged, so nothing was checked"
    assert all(SECRET not in record.getMessage() for record in caplog.records)


async def test_failure_text_then_a_closed_connection_is_a_refusal(
    serve: Callable[[Script], Awaitable[TelnetShell]],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await _log_in(reader, writer)
        writer.write(b"\r\nAccess denied for this terminal\r\n")
        await _line(reader)
        writer.close()

    shell = await serve(script)
    with pytest.raises(AuthenticationError, match="Access denied"):
        await shell.open(Received())


async def test_output_is_exact_across_telnet_commands_and_the_exit_marker(
    serve: Callable[[Script], Awaitable[TelnetShell]],
) -> None:
    inner: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    go_on = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await _log_in(reader, writer)
        writer.write(b"$ ")
        inner.set_result(await _answer_probes(reader, writer))
        await go_on.wait()
        token = re.search(r"otto-exit:%s:%d\\037' (\w+)", inner.result())
        assert token is not None
        marker = b"\x1eotto-exit:" + token.group(1).encode() + b":3\x1f"
        # Data with an escaped 0xff, a NOP, an option request split across
        # writes, a subnegotiation, then the exit marker split in three.
        for piece in (
            b"a\xff\xffb\xff",
            b"\xf1c\xff\xfd",
            b"\x18d\xff\xfa\x18\x01\xff",
            b"\xf0e\r\n",
            marker[:5],
            marker[5:20],
            marker[20:] + b"\r\n$ ",
        ):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0)
        await reader.read()

    shell = await serve(script)
    received = Received()
    await shell.open(received)
    assert "bash --noprofile --norc /dev/stdin" in await asyncio.wait_for(inner, 5)
    before = len(received.data)
    go_on.set()
    status, reason = await asyncio.wait_for(received.lost, 5)
    assert status == 3, reason
    assert bytes(received.data[before:]).endswith(b"a\xffbcde\r\n")


@pytest.mark.parametrize(
    ("printed", "login", "password"),
    [
        ("host login: ", True, False),
        ("User name: ", True, False),
        ("Username:", True, False),
        ("login: \x1b[0m", True, False),
        ("Password: ", False, True),
        # Lines that merely end like prompts, with more printed after them.
        ("Last login: Sat Dec  5 10:00:00\n", False, False),
        ("Last login:", False, False),
        ("To change your password:\nWelcome\n", False, False),
        ("change your password:\n", False, False),
        ("User name:\n$ ", False, False),
    ],
)
def test_login_prompts_count_only_where_they_end_what_was_printed(
    printed: str, login: bool, password: bool
) -> None:
    from otto.transports.login import LOGIN_PROMPT, PASSWORD_PROMPT, anchored

    assert bool(anchored(LOGIN_PROMPT).search(printed)) is login
    assert bool(anchored(PASSWORD_PROMPT).search(printed)) is password


def test_a_lab_prompt_regex_is_anchored_the_same_way() -> None:
    from otto.transports.login import anchored

    prompt = anchored(r"(?i)enter pin\s*:\s*$")
    assert prompt.search("Enter PIN: ")
    assert not prompt.search("enter pin:\nok")
    assert not prompt.search("enter pin:\n")
