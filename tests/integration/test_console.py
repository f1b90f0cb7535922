"""Console and serial hosts against real components: ser2net, socat ptys, /bin/login, busybox sh.

Faults: a console that prints nothing, a burst of garbage (a kernel panic) in
the middle of a command, a login that loops on a wrong password, two tasks on
one console at once, a console held by a program.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import termios
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from otto import RemoteHost, Status
from otto.errors import AuthenticationError, ConnectError
from otto.transports.console import ConsoleLink, ConsoleStream, StreamSink
from tests.integration.hosts import eventually, start_and_wait_for
from tests.lab.console import Console, ConsoleLab
from tests.lab.users import LAB_PASSWORD, LAB_USER

pytestmark = pytest.mark.integration


def console_host(console: Console, **options: object) -> RemoteHost:
    base: dict[str, object] = {"name": f"con-{console.name}", "connect_timeout": 10.0}
    if console.login:
        base.update(user=LAB_USER, password=LAB_PASSWORD)
    if console.protocol:
        base.update(term="console", console_protocol=console.protocol)
        address = console.address
    else:
        base.update(term="serial")
        address = console.device
    base.update(options)
    return RemoteHost(address, **base)  # type: ignore[arg-type]


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP console that accepts and never prints a byte."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def burst_to(console: Console, data: bytes) -> None:
    """Print ``data`` on the console, as its kernel would (to the shell's terminal)."""
    fd = os.open(console.tty(), os.O_WRONLY | os.O_NOCTTY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


async def test_a_console_with_a_shell_and_no_login_needs_no_user(consoles: ConsoleLab) -> None:
    async with console_host(consoles["shell"]) as host:
        out = (await host.run("echo $((6*7)); cd /tmp")).only
        assert (out.output, out.status) == ("42", Status.Success)
        assert (await host.run("pwd")).only.output == "/tmp"
        failed = (await host.run("sh -c 'exit 4'")).only
        assert (failed.status, failed.retcode) == (Status.Failed, 4)


async def test_serial_line_without_login(consoles: ConsoleLab) -> None:
    async with console_host(consoles["serial-shell"], baud=9600) as host:
        assert (await host.run("echo serial")).only.output == "serial"


async def test_a_login_prompt_without_a_user_is_a_clear_error(consoles: ConsoleLab) -> None:
    console = await consoles.add("nouser")
    host = console_host(console, user=None, password=None)
    with pytest.raises(ConnectError) as info:
        await host.connect()
    assert "con-nouser" in str(info.value)
    assert "no user was given" in str(info.value) and "login" in str(info.value)
    await host.close()


def test_user_is_required_for_ssh_but_not_for_consoles() -> None:
    with pytest.raises(ValueError, match="user is required"):
        RemoteHost("10.0.0.1")
    RemoteHost("127.0.0.1:7000", term="console")
    RemoteHost("/dev/ttyUSB0", term="serial")
    with pytest.raises(ValueError, match="host:port"):
        RemoteHost("127.0.0.1", term="console")
    with pytest.raises(ValueError, match="console_protocol"):
        RemoteHost("127.0.0.1:7000", term="console", console_protocol="ssh")  # type: ignore[arg-type]


async def test_a_console_that_prints_nothing_fails_at_connect_timeout(silent_port: int) -> None:
    host = RemoteHost(
        f"127.0.0.1:{silent_port}", term="console", console_protocol="raw", name="mute",
        connect_timeout=1.5,
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        await host.run("true")
    elapsed = time.monotonic() - started
    assert 1.2 < elapsed < 4.0
    message = str(info.value)
    assert "mute" in message and f"127.0.0.1:{silent_port}" in message
    assert "printed nothing" in message
    await host.close()


async def test_a_missing_serial_device_is_a_connect_error(tmp_path: Path) -> None:
    host = RemoteHost(str(tmp_path / "ttyUSB9"), term="serial", name="nodev")
    with pytest.raises(ConnectError, match=r"nodev.*ttyUSB9"):
        await host.run("true")
    await host.close()


async def test_kernel_panic_burst_mid_command_ends_and_is_in_the_console_log(
    consoles: ConsoleLab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_path = tmp_path / "console.log"
    shared = Path(tempfile.mkdtemp(prefix="otto-console-"))  # the login user reaches it
    shared.chmod(0o755)
    fifo = shared / "go"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    burst = (
        b"\r\n[  123.456789] Kernel panic - not syncing: Attempted to kill init!\r\n"
        b"[  123.456800] CPU: 0 PID: 1 Comm: init \x00\xff\xfe\x1b[0m garbage \x1e\x1f\r\n"
    )
    caplog.set_level(logging.DEBUG)
    host = console_host(consoles["login"], console_log=log_path)
    try:
        session = await host.open_session("panic")
        task = await start_and_wait_for(
            session, f"echo started; read x < {fifo}; echo finished", b"started"
        )
        burst_to(consoles["login"], burst)
        await asyncio.wait_for(asyncio.to_thread(fifo.write_text, "go\n"), 10)
        result = (await asyncio.wait_for(task, 10)).only
        assert result.status is Status.Success
        assert result.output.startswith("started") and result.output.endswith("finished")
        # Between commands too: what the console prints while otto waits is logged.
        burst_to(consoles["login"], b"[  200.000000] usb 1-1: new device between commands\r\n")
        assert await eventually(lambda: b"between commands" in log_path.read_bytes())
        assert (await host.run("echo still here")).only.output == "still here"
    finally:
        await host.close()
        shutil.rmtree(shared)
    text = log_path.read_bytes()
    assert b"Kernel panic - not syncing" in text
    lines = text.split(b"\n")
    panic = next(line for line in lines if b"Kernel panic" in line)
    assert panic.startswith(b"[20")  # a timestamp opens every line
    assert all(line.startswith(b"[20") for line in lines if line)
    assert LAB_PASSWORD.encode() not in text
    assert all(LAB_PASSWORD not in r.getMessage() for r in caplog.records)


async def test_console_log_masks_a_password_the_console_echoes(
    consoles: ConsoleLab, tmp_path: Path
) -> None:
    log_path = tmp_path / "echoed.log"
    async with console_host(consoles["login"], console_log=log_path) as host:
        await host.run("true")
        # A console that echoes what is typed, split across writes: masked anyway.
        half = len(LAB_PASSWORD) // 2
        burst_to(consoles["login"], b"typed: " + LAB_PASSWORD[:half].encode())
        burst_to(consoles["login"], LAB_PASSWORD[half:].encode() + b" <- there\r\n")
        assert await eventually(lambda: b"<- there" in log_path.read_bytes())
    text = log_path.read_bytes()
    assert LAB_PASSWORD.encode() not in text
    assert b"typed: *** <- there" in text


async def test_a_wrong_password_is_refused_fast_and_never_shown(
    consoles: ConsoleLab, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    console = await consoles.add("wrongpw")
    wrong = "not-" + LAB_PASSWORD
    log_path = tmp_path / "wrong.log"
    host = console_host(console, password=wrong, connect_timeout=30.0, console_log=log_path)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as info:
        await host.run("true")
    # Bounded by login's own delay after a failure, never by connect_timeout.
    assert time.monotonic() - started < 10.0
    assert "con-wrongpw" in str(info.value) and "incorrect" in str(info.value).lower()
    assert wrong not in str(info.value) and wrong not in repr(host)
    assert all(wrong not in r.getMessage() for r in caplog.records)
    assert wrong.encode() not in log_path.read_bytes()
    await host.close()


async def test_two_tasks_on_one_console_are_serialized_never_mixed(consoles: ConsoleLab) -> None:
    async with console_host(consoles["login"]) as host:
        other = await host.open_session("other")

        async def burst(run: object, tag: str) -> list[str]:
            outs = []
            for _ in range(5):
                result = await run(f"for n in 1 2 3 4 5; do echo {tag}-$n; done")  # type: ignore[operator]
                only = result if hasattr(result, "output") else result.only
                outs.append(only.output)
            return outs

        results = await asyncio.gather(
            burst(host.run, "a"), burst(other.run, "b"), burst(host.oneshot, "c")
        )
        for tag, outs in zip("abc", results, strict=True):
            assert outs == ["\n".join(f"{tag}-{n}" for n in range(1, 6))] * 5
        # One shell: what one session changes the others see.
        await other.run("cd /tmp")
        assert (await host.run("pwd")).only.output == "/tmp"


async def test_sessions_wait_for_each_other_on_a_console(consoles: ConsoleLab) -> None:
    async with console_host(consoles["login"]) as host:
        first = await host.open_session("first")
        task = await start_and_wait_for(first, "echo holding; sleep 0.5; echo released", b"holding")
        second = asyncio.ensure_future(host.run("echo second"))
        done, _ = await asyncio.wait({second}, timeout=0.2)
        assert not done  # the console's one shell is busy
        assert (await task).only.output == "holding\nreleased"
        assert (await second).only.output == "second"


async def _wedge(console: Console) -> None:
    """Leave ``cat`` holding the console, as a person (or a crashed run) might."""
    reader, writer = await asyncio.open_connection("127.0.0.1", console.port)
    try:
        writer.write(b"\rcat\r")
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"cat\r\n"), 5)
        assert await eventually(
            lambda: any(_comm(pid) == "cat" for pid in console.shell_pids()), timeout=5
        )
    finally:
        writer.close()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


async def test_a_wedged_console_is_recovered_with_ctrl_c(consoles: ConsoleLab) -> None:
    console = await consoles.add("wedged", login=False, protocol="raw")
    await _wedge(console)
    async with console_host(console) as host:
        assert (await host.run("echo free")).only.output == "free"
    assert not any(_comm(pid) == "cat" for pid in console.shell_pids())


async def test_a_program_left_by_send_is_ended_when_the_host_closes(consoles: ConsoleLab) -> None:
    console = consoles["shell"]
    async with console_host(console) as host:
        await host.send("cat\n")
        assert await eventually(lambda: any(_comm(p) == "cat" for p in console.shell_pids()))
    assert await eventually(lambda: not any(_comm(p) == "cat" for p in console.shell_pids()))
    async with console_host(console) as host:
        assert (await host.run("echo next")).only.output == "next"


def _runs(console: Console, name: str) -> bool:
    return any(_comm(pid).startswith(name) for pid in console.shell_pids())


async def test_a_program_one_session_started_is_left_alone_by_another(
    consoles: ConsoleLab,
) -> None:
    console = await consoles.add("held", login=False, protocol="raw")
    async with console_host(console) as host:
        a = await host.open_session("a")
        b = await host.open_session("b")
        assert (await b.run("echo b-ready")).only.output == "b-ready"
        await a.send("python3 -q\n")
        await a.expect(">>> ", timeout=10)
        # b's command is not typed into a's program: a clear error, at once.
        with pytest.raises(ConnectError) as info:
            await b.run("echo typed", timeout=5)
        message = str(info.value)
        assert "con-held/a" in message and "python3" in message and "con-held/b" in message
        with pytest.raises(ConnectError, match="python3"):
            await host.oneshot("echo typed", timeout=5)
        # a's program was left alone: it still answers, and nothing of b's reached it.
        await a.send("print(6 * 7)\n")
        assert "42" in await a.expect(re.compile(r"42\r?\n>>> "), timeout=10)
        await a.send("exit()\n")
        assert (await a.run("echo a-back")).only.output == "a-back"
        # b's turn: what it sends and expects is its own again.
        await b.send("echo b-$((20 + 22))\n")
        await b.expect("b-42", timeout=10)
        assert (await b.run("echo b-back")).only.output == "b-back"
    assert not _runs(console, "python")


async def test_a_repl_left_by_send_is_ended_and_the_console_stays_usable(
    consoles: ConsoleLab,
) -> None:
    console = await consoles.add("repl", login=False, protocol="raw")
    async with console_host(console) as host:
        await host.send("python3 -q\n")
        await host.expect(">>> ", timeout=10)
        with pytest.raises(ConnectError, match="python3"):
            await host.open_session("other")  # refused: python holds the console
    # Closing ended it (Ctrl-C does not; Ctrl-D at its prompt does).
    assert not _runs(console, "python")
    async with console_host(console, connect_timeout=5.0) as host:
        assert (await host.run("echo free")).only.output == "free"


async def test_a_repl_found_holding_the_console_is_left_its_own_way(consoles: ConsoleLab) -> None:
    console = await consoles.add("found", login=False, protocol="raw")
    reader, writer = await asyncio.open_connection("127.0.0.1", console.port)
    writer.write(b"python3 -q\r")
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b">>> "), 10)
    writer.close()
    async with console_host(console) as host:
        assert (await host.run("echo free")).only.output == "free"
    assert not _runs(console, "python")


async def test_a_repl_that_will_not_end_is_named_in_a_bounded_error(consoles: ConsoleLab) -> None:
    console = await consoles.add("stuck", login=False, protocol="raw")
    reader, writer = await asyncio.open_connection("127.0.0.1", console.port)
    # Ctrl-C ignored, and a new python for every one that ends.
    writer.write(b"trap '' INT QUIT; while :; do python3 -q; done\r")
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b">>> "), 10)
    writer.close()
    host = console_host(console, connect_timeout=4.0)
    with pytest.raises(ConnectError) as info:
        await host.run("true")
    message = str(info.value)
    assert "con-stuck" in message and "python holds it" in message
    await host.close()


@pytest.mark.parametrize("name", ["login", "serial"])
async def test_closing_right_after_a_timeout_leaves_the_console_to_the_next_user(
    consoles: ConsoleLab, name: str
) -> None:
    # The timed-out command is interrupted in the background; the host closes at
    # once. The console's shell outlives us: the next user must find it reading.
    console = consoles[name]
    for attempt in range(3):
        async with console_host(console) as host:
            result = await host.run(["sleep 0.2", "sleep 5"], timeout=0.5)
            assert result.statuses[-1].timed_out
        async with console_host(console) as host:
            assert (await host.run(f"echo next {attempt}")).only.output == f"next {attempt}"
    assert await eventually(lambda: not any(_comm(p) == "sleep" for p in console.shell_pids()))


async def test_a_console_that_never_answers_even_ctrl_c_names_the_host(
    consoles: ConsoleLab,
) -> None:
    console = await consoles.add("deaf", login=False, protocol="raw")
    # A program that ignores Ctrl-C and prints what it reads, never running it.
    reader, writer = await asyncio.open_connection("127.0.0.1", console.port)
    writer.write(b"\rtrap '' INT; while read line; do echo \"ignored: $line\"; done\r")
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b"done\r\n"), 5)
    writer.close()
    host = console_host(console, connect_timeout=2.0)
    with pytest.raises(ConnectError) as info:
        await host.run("true")
    message = str(info.value)
    assert "con-deaf" in message and "Ctrl-C" in message and "ignored:" in message
    await host.close()


async def test_put_and_get_through_a_serial_console(consoles: ConsoleLab, tmp_path: Path) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(os.urandom(100_000) + b"\xff\x03\x1c")
    back = tmp_path / "back"
    back.mkdir()
    async with console_host(consoles["serial"]) as host:
        folder = (await host.run("mktemp -d")).only.output
        assert (await host.put(source, folder)).status is Status.Success
        assert (await host.get(f"{folder}/blob.bin", back)).status is Status.Success
        await host.run(f"rm -r {folder}")
    assert (back / "blob.bin").read_bytes() == source.read_bytes()


def test_cli_login_joins_the_terminal_to_the_console(consoles: ConsoleLab, tmp_path: Path) -> None:
    from tests.integration.test_login import Terminal

    console = consoles["shell"]
    lab_file = tmp_path / "lab.json"
    lab_file.write_text(
        json.dumps(
            {"hosts": [{"name": "board", "term": "console", "address": console.address,
                        "console_protocol": "raw"}]}
        )
    )  # fmt: skip
    env = {**os.environ, "TERM": "xterm", "NO_COLOR": "1"}
    env.pop("OTTO_LAB", None)
    argv = [sys.executable, "-m", "otto", "--lab", str(lab_file), "host", "board", "login"]
    term = Terminal(argv, env, 30, 90)
    try:
        term.wait_for(rb"console of board .*Ctrl-\] leaves")
        term.type(b"echo $((6*7))\r")
        term.wait_for(rb"[\r\n]42\r\n")
        term.type(b"\x1d")
        assert term.wait_exit() == 0
        term.drain()
        assert b"left with Ctrl-]" in term.seen
        assert termios.tcgetattr(term.slave) == term.settings_before
    finally:
        term.close()


async def test_closing_a_serial_line_that_does_not_drain_is_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from otto.transports.serial import SerialStream

    # A serial line whose far end reads nothing: what otto writes fills it and stays.
    master, slave = os.openpty()
    device = os.ttyname(slave)
    closed = threading.Event()
    rescued: list[int] = []

    def rescue() -> None:
        # Only if closing blocks the loop: drain the line so the test can end.
        if closed.wait(30):
            return
        os.set_blocking(master, False)
        while not closed.is_set():
            with contextlib.suppress(BlockingIOError):
                rescued.append(len(os.read(master, 65536)))

    watchdog = threading.Thread(target=rescue, daemon=True)
    watchdog.start()

    fds: list[int] = []

    async def opener(sink: StreamSink) -> ConsoleStream:
        stream = await SerialStream.open(sink, device, 115200)
        fds.append(stream._fd)
        return stream

    link = ConsoleLink(
        "stuck-line", opener=opener, where=device, user=None,
        password=lambda: None, connect_timeout=5.0,
    )  # fmt: skip
    try:
        await link.open_raw()
        link.write_raw(b"x" * 1_000_000)
        with caplog.at_level(logging.WARNING, logger="otto.transports.serial"):
            await asyncio.wait_for(link.close(), 8)
    finally:
        closed.set()
        watchdog.join()
        os.close(master)
        os.close(slave)
    assert not rescued  # the close returned by itself, the line still full
    # No watch is left on the closed descriptor: the loop would fail to watch
    # whatever opens that number next (seen: a later subprocess's pipe never read).
    loop = asyncio.get_running_loop()
    assert not loop.remove_writer(fds[0])
    assert not loop.remove_reader(fds[0])
    assert any("dropped" in r.getMessage() and device in r.getMessage() for r in caplog.records)
