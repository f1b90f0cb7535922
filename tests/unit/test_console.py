"""Console pieces without real consoles: the capture file, addresses, lab fields,
and the link's state machine against scripted TCP consoles."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from otto import RemoteHost
from otto.errors import AuthenticationError, ConnectError, ConnectionLost, LabError
from otto.hosts.console import split_console_address
from otto.lab import Lab
from otto.transports.console import (
    ConsoleLink,
    ConsoleLog,
    ConsoleStream,
    ConsoleStreamView,
    StreamSink,
    TcpConsoleStream,
    held_by,
)

SECRET = "s3cret-Console-pw"
STAMP = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] ")


def test_console_log_stamps_every_line_and_masks_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = ConsoleLog(str(path), lambda: [SECRET])
    log.open()
    log.feed(b"first line\r\nsecond ")
    log.feed(b"half, then the rest\nthird: " + SECRET[:5].encode())
    log.feed(SECRET[5:].encode() + b" done\n\npartial")
    log.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    body = [STAMP.sub(b"", line) for line in lines[:-1]]
    assert body == [
        b"first line\r",
        b"second half, then the rest",
        b"third: *** done",
        b"",
        b"partial",
    ]
    assert all(STAMP.match(line) for line in lines[:-1])
    assert SECRET.encode() not in path.read_bytes()


def test_console_log_appends(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    path.write_bytes(b"before\n")
    log = ConsoleLog(str(path), tuple)
    log.open()
    log.feed(b"after\n")
    log.close()
    assert path.read_bytes().startswith(b"before\n[")


@pytest.mark.parametrize(
    ("address", "port", "expected"),
    [
        ("10.0.0.5:7001", 0, ("10.0.0.5", 7001)),
        ("ts1.lab:2003", 9, ("ts1.lab", 2003)),
        ("[::1]:7001", 0, ("::1", 7001)),
        ("ts1.lab", 7002, ("ts1.lab", 7002)),
        ("::1", 7003, ("::1", 7003)),
    ],
)
def test_console_addresses(address: str, port: int, expected: tuple[str, int]) -> None:
    assert split_console_address(address, port) == expected


def _lab(tmp_path: Path, host: dict[str, object]) -> Lab:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": [{"name": "board", **host}]}))
    return Lab.load(path)


def test_lab_console_and_serial_hosts(tmp_path: Path) -> None:
    lab = _lab(
        tmp_path,
        {"term": "console", "address": "ts1:7001", "console_protocol": "raw",
         "console_log": "logs/board.log"},
    )  # fmt: skip
    spec = lab.spec("board")
    assert (spec.term, spec.user, spec.console_protocol) == ("console", None, "raw")
    assert spec.console_log == tmp_path / "logs" / "board.log"
    host = lab.host("board")
    assert isinstance(host, RemoteHost)
    assert (host.term, host.console_protocol, host.console_log) == (
        "console",
        "raw",
        str(tmp_path / "logs" / "board.log"),
    )
    serial = _lab(tmp_path, {"term": "serial", "address": "/dev/ttyUSB0", "baud": 9600})
    host = serial.host("board")
    assert isinstance(host, RemoteHost) and host.baud == 9600


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ({"term": "ssh", "address": "a", "user": "u", "baud": 9600}, "baud"),
        ({"term": "console", "address": "a:1", "console_protocol": "ssh"}, "console_protocol"),
        ({"term": "serial", "address": "/dev/x", "baud": "fast"}, "baud"),
        ({"term": "serial", "address": "/dev/x", "console_protocol": "raw"}, "console_protocol"),
        ({"term": "console", "address": "a:1", "hop": "b"}, "hop"),
        ({"term": "console"}, "address"),
    ],
)
def test_lab_console_field_errors(tmp_path: Path, host: dict[str, object], message: str) -> None:
    with pytest.raises(LabError, match=message) as info:
        _lab(tmp_path, host)
    assert "board" in str(info.value)


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> int:
        server = await asyncio.start_server(script, "127.0.0.1", 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()


async def _line(reader: asyncio.StreamReader) -> bytes:
    return (await reader.readuntil(b"\r")).strip()


async def test_a_login_prompt_that_loops_is_refused(
    serve: Callable[[Script], Awaitable[int]],
) -> None:
    async def looping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            writer.write(b"\r\nboard login: ")
            await _line(reader)
            writer.write(b"\r\nPassword: ")
            await _line(reader)
            writer.write(b"\r\nLogin incorrect\r\n")

    port = await serve(looping)
    host = RemoteHost(f"127.0.0.1:{port}", term="console", console_protocol="raw",
                      user="root", password=SECRET, name="board", connect_timeout=5)  # fmt: skip
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AuthenticationError) as info:
        await host.connect()
    assert loop.time() - started < 2.0
    assert "board" in str(info.value) and "Login incorrect" in str(info.value)
    assert SECRET not in str(info.value)
    await host.close()


async def test_a_shell_already_there_is_used_without_login(
    serve: Callable[[Script], Awaitable[int]],
) -> None:
    asked: list[bytes] = []

    async def shell(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = await _line(reader)
            asked.append(line)
            found = re.search(rb"echo \$\(\((\d+)\+1\)\)", line)
            if found:
                writer.write(b"%d\r\n# " % (int(found.group(1)) + 1))
            else:
                writer.write(b"\r\n# ")

    port = await serve(shell)
    host = RemoteHost(f"127.0.0.1:{port}", term="console", console_protocol="raw", name="b")
    await host.connect()
    assert any(b"echo $((" in line for line in asked)
    await host.close()


async def test_a_login_prompt_with_no_user_says_so(
    serve: Callable[[Script], Awaitable[int]],
) -> None:
    async def login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\r\nboard login: ")
        await reader.read()

    port = await serve(login)
    host = RemoteHost(f"127.0.0.1:{port}", term="console", console_protocol="raw", name="b")
    with pytest.raises(ConnectError, match="no user was given") as info:
        await host.connect()
    assert "board login:" in str(info.value)
    await host.close()


class _Heard:
    """A session's side of a view: what it received, and whether it heard the end."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lost: list[str] = []

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exit_status: int | None, reason: str) -> None:
        self.lost.append(reason)


async def test_closing_the_link_tells_raw_views_and_a_later_write_raises(
    serve: Callable[[Script], Awaitable[int]],
) -> None:
    async def quiet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    port = await serve(quiet)

    async def opener(sink: StreamSink) -> ConsoleStream:
        return await TcpConsoleStream.open(
            sink, "127.0.0.1", port, telnet=False, keepalive_interval=15.0
        )

    link = ConsoleLink(
        "b", opener=opener, where=f"127.0.0.1:{port}", user=None,
        password=lambda: None, connect_timeout=5.0,
    )  # fmt: skip
    heard = _Heard()
    view = ConsoleStreamView(link)
    await view.open(heard)
    view.write(b"\x03")
    await link.close()  # what host.disconnect() does
    assert heard.lost and "closed" in heard.lost[0]
    with pytest.raises(ConnectionLost, match=r"b: the console .* is closed"):
        view.write(b"version\r")
    await view.close()


@pytest.mark.parametrize(
    ("printed", "program"),
    [
        ("KeyboardInterrupt\r\n>>> ", "python"),
        ("x\r\n\x1b[?2004h>>> ", "python"),  # bracketed paste around the prompt
        ('  File "<stdin>"\r\n... ', "python"),
        ("<INTERRUPT>\r\n=> ", "U-Boot"),
        ("=> ", "U-Boot"),
        ("sqlite> ", "sqlite3"),
        ("console$ ", None),
        ("a => b\r\n", None),  # prompt-like text that more output follows
        (">>> x", None),
    ],
)
def test_a_program_is_known_by_the_prompt_that_ends_what_it_printed(
    printed: str, program: str | None
) -> None:
    found = held_by(printed)
    assert (found.name if found is not None else None) == program
    if program == "U-Boot":
        assert found is not None and found.leave is None  # nothing to leave: no key is sent
