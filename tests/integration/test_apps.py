"""host.open_app against real programs: a Python REPL on every kind of host, a real U-Boot."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from otto import (
    App,
    ConnectError,
    ConnectionLost,
    ExpectTimeout,
    Host,
    LocalHost,
    OttoError,
    RemoteHost,
)
from otto.expect import DEFAULT_MAX_CHARS
from tests.integration.hosts import HOST_KINDS, make_host, skip_on_one_stream
from tests.lab.uboot import UBoot, uboot_missing

pytestmark = pytest.mark.integration

REPL = "python3 -i -q"
PROMPT = r">>> "


@pytest.fixture(params=HOST_KINDS)
def unopened_host(request: pytest.FixtureRequest) -> Host:
    return make_host(request, request.param)


@pytest_asyncio.fixture(loop_scope="session")
async def host(unopened_host: Host) -> AsyncIterator[Host]:
    try:
        yield unopened_host
    finally:
        await unopened_host.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def uboot() -> AsyncIterator[UBoot]:
    missing = uboot_missing()
    if missing:
        pytest.skip(missing)
    async with UBoot() as board:
        yield board


def app_sessions(host: Host) -> list[str]:
    return [name for name in host.sessions if name.startswith("app")]


async def test_repl_answers_exactly_and_the_host_is_a_shell_again(host: Host) -> None:
    async with host.open_app(REPL, PROMPT, exit="exit()") as app:
        assert isinstance(app, App)
        assert app_sessions(host) == ["app:python3"]
        assert await app.cmd("1") == "1"
        assert await app.cmd("x = 40") == ""
        assert await app.cmd("x + 2") == "42"
        assert await app.cmd("print('a\\nb')") == "a\nb"
        # Prompt-like text inside a line is output; a prompt must start a line...
        assert await app.cmd("print('a >>> b')") == "a >>> b"
        assert await app.cmd("print('>>> ' + 'x')") == ">>> x"
        # ...or end what was printed (the program waits there).
        assert await app.cmd("print('no newline', end='')") == "no newline"
        assert await app.cmd("print('crlf', end='\\r\\n')") == "crlf"
        assert await app.cmd("print('é ' * 3)") == "é é é "
        assert await app.cmd("print('  indented')") == "  indented"
        assert await app.cmd("") == ""
        assert await app.cmd("'1'") == "'1'"
    assert app_sessions(host) == []
    assert (await host.run("echo back")).only.output == "back"


async def test_repl_on_a_pipe() -> None:
    async with LocalHost() as host, host.open_app(REPL, PROMPT, pty=False) as app:
        assert app.echoes == 0
        assert await app.cmd("1") == "1"
        assert await app.cmd("print('a >>> b')") == "a >>> b"
        assert not app.session.pty


async def test_open_app_is_awaitable_and_names_are_unique(host: Host) -> None:
    skip_on_one_stream(host, "two programs at once need two shells")
    first = await host.open_app(REPL, PROMPT)
    async with host.open_app(REPL, PROMPT) as second:
        assert sorted(app_sessions(host)) == ["app:python3", "app:python3-2"]
        assert await first.cmd("'first'") == "'first'"
        assert await second.cmd("'second'") == "'second'"
    await first.close()
    await first.close()  # closing twice is harmless
    assert app_sessions(host) == []
    with pytest.raises(ConnectionLost, match="closed"):
        await first.cmd("1")


async def test_a_prompt_that_never_matches_is_a_clear_timeout(host: Host) -> None:
    started = time.monotonic()
    with pytest.raises(ExpectTimeout) as info:
        await host.open_app(REPL, r"NEVER> ", timeout=2.0)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert host.name in message
    assert "NEVER> " in message
    assert ">>> " in info.value.received
    assert ">>> " in message
    assert app_sessions(host) == []
    assert (await host.run("echo still")).only.output == "still"


@pytest.mark.parametrize(
    "start",
    ["python3 -c 'print(\"gone\"); raise SystemExit(7)'", "echo gone; exit 7"],
    ids=["program", "shell"],
)
async def test_a_program_that_ends_before_its_prompt_is_a_connect_error(
    host: Host, start: str
) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        await host.open_app(start, PROMPT, timeout=20)
    assert time.monotonic() - started < 10  # seen at once, not at the timeout
    assert host.name in str(info.value)
    assert re.search(r"\b7\b", str(info.value))  # the status, however the shell ended
    assert "gone" in str(info.value)
    assert app_sessions(host) == []


async def test_a_program_that_exits_then_cmd_fails_clearly_and_the_session_works(
    host: Host,
) -> None:
    async with host.open_app(REPL, PROMPT, name="py") as app:
        with pytest.raises(ConnectionLost) as info:
            await app.cmd("import sys; print('bye'); sys.exit(3)")
        message = str(info.value)
        assert host.name in message
        assert "status 3" in message
        assert "bye" in info.value.received
        with pytest.raises(ConnectionLost, match="status 3"):
            await app.cmd("1")
        # The session is a shell again.
        assert (await app.session.run("echo again")).only.output == "again"
    assert "py" not in host.sessions


async def test_an_app_in_a_session_that_was_open_keeps_its_state(host: Host) -> None:
    session = await host.open_session("mine", pty=True)
    await session.run("cd /tmp && export OTTO_APP_TEST=kept")
    async with host.open_app(REPL, PROMPT, name="mine", exit="exit()") as app:
        assert app.session is session
        assert await app.cmd("import os; print(os.getcwd(), os.environ['OTTO_APP_TEST'])") == (
            "/tmp kept"
        )
    assert host.sessions["mine"] is session
    assert (await session.run("echo $OTTO_APP_TEST; pwd")).only.output == "kept\n/tmp"
    await session.close()


async def test_start_none_drives_a_program_already_running(host: Host) -> None:
    session = await host.open_session("running", pty=True)
    await session.send(REPL + "\n")
    await session.expect(PROMPT, timeout=10)
    async with host.open_app(None, PROMPT, name="running", exit="exit()") as app:
        assert await app.cmd("6 * 7") == "42"
    assert (await session.run("echo shell")).only.output == "shell"
    await session.close()


async def test_cmd_timeout_then_the_next_cmd_waits_for_the_missed_prompt(host: Host) -> None:
    async with host.open_app(REPL, PROMPT) as app:
        started = time.monotonic()
        with pytest.raises(ExpectTimeout) as info:
            await app.cmd("import time; time.sleep(1.5); print('late')", timeout=0.2)
        assert time.monotonic() - started < 1.2
        assert host.name in str(info.value)
        assert ">>> " in str(info.value)  # the pattern it waited for
        # The program was not interrupted: its answer is skipped, this one is exact.
        assert await app.cmd("'next'") == "'next'"
        with pytest.raises(ExpectTimeout):
            await app.cmd("time.sleep(5)", timeout=0.2)
        with pytest.raises(ExpectTimeout):  # still busy: this call times out too
            await app.cmd("'x'", timeout=0.2)


async def test_concurrent_cmds_are_serialized(host: Host) -> None:
    async with host.open_app(REPL, PROMPT) as app:
        await app.cmd("import time")
        texts = [f"time.sleep(0.01 * {i % 3}); print('line {i}\\n' * 3, end='')" for i in range(20)]
        answers = await asyncio.gather(*(app.cmd(t) for t in texts))
        assert answers == ["\n".join([f"line {i}"] * 3) for i in range(20)]


async def test_leaving_sends_exit_and_lets_the_program_end(tmp_path: Path) -> None:
    marker = tmp_path / "atexit"
    async with LocalHost() as host:
        async with host.open_app(REPL, PROMPT, exit="exit()") as app:
            await app.cmd(
                f"import atexit; atexit.register(lambda: open({str(marker)!r}, 'w').write('bye'))"
            )
        assert marker.read_text() == "bye"


async def test_cmd_refuses_a_line_break() -> None:
    async with LocalHost() as host, host.open_app(REPL, PROMPT) as app:
        with pytest.raises(ValueError, match="one line"):
            await app.cmd("1\n2")
        assert await app.cmd("3") == "3"


@pytest.mark.parametrize("pty", [True, False], ids=["pty", "pipe"])
async def test_uboot(uboot: UBoot, pty: bool) -> None:
    async with (
        LocalHost() as host,
        host.open_app(f"socat - TCP:{uboot.address}", r"=> ", pty=pty, timeout=20) as app,
    ):
        assert app.echoes == 1  # U-Boot echoes what it reads
        assert "U-Boot 2023.01" in await app.cmd("version")
        assert "bootcmd=" in await app.cmd("printenv")
        assert await app.cmd("echo hi") == "hi"
        assert await app.cmd("echo -n hi") == "hi"
        assert await app.cmd("echo a => b") == "a => b"
        assert await app.cmd("setenv otto_v 42; printenv otto_v") == "otto_v=42"
        with pytest.raises(ExpectTimeout) as info:
            await app.cmd("sleep 2", timeout=0.3)
        assert "local" in str(info.value)
        assert await app.cmd("echo after") == "after"


async def test_uboot_on_a_console_host_with_no_shell(uboot: UBoot) -> None:
    board = RemoteHost(uboot.address, term="console", console_protocol="raw", name="board")
    async with board, board.open_app(None, r"=> ", timeout=20) as app:
        assert app.session.shell is False  # nothing of otto's was written to U-Boot
        assert "U-Boot 2023.01" in await app.cmd("version")
        assert "bootcmd=" in await app.cmd("printenv")
        assert await app.cmd("echo hi") == "hi"
        with pytest.raises(OttoError, match="no shell"):
            await app.session.run("true")


async def test_uboot_reset_is_a_reboot_that_wait_until_up_sees_come_back(uboot: UBoot) -> None:
    board = RemoteHost(uboot.address, term="console", console_protocol="raw", name="board")
    async with board:
        await board.wait_until_up(20, prompt=r"=> ")
        async with board.open_session("boot", raw=True) as console:
            await console.send("reset\r")
            # The board goes away: U-Boot says it resets, then boots again.
            await console.expect(r"resetting", timeout=20)
        await board.wait_until_up(30, prompt=r"=> ")
        async with board.open_app(None, r"=> ", timeout=20) as app:
            assert "U-Boot 2023.01" in await app.cmd("version")
    with pytest.raises(ConnectError, match="board"):
        async with RemoteHost(
            uboot.address, term="console", console_protocol="raw", name="board"
        ) as again:
            await again.wait_until_up(1.5, prompt=r"this prompt never shows")


async def test_an_answer_longer_than_the_buffer_is_marked_and_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    size = DEFAULT_MAX_CHARS + 1024 * 1024
    async with LocalHost() as host, host.open_app(REPL, PROMPT, pty=False) as app:
        with caplog.at_level(logging.WARNING, logger="otto.apps"):
            answer = await app.cmd(f"print('x' * {size} + 'END')", timeout=120)
        first, _, rest = answer.partition("\n")
        assert re.fullmatch(r"\[otto: \d+ characters of output dropped here\]", first)
        assert rest.endswith("xEND") and set(rest[:-3]) == {"x"}
        assert int(first.split()[1]) + len(rest) >= size  # what was dropped, and what was kept
        warned = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert warned and "local" in warned[0]
        assert await app.cmd("'next'") == "'next'"


SLOW_BOARD = r"""
import os, sys, time
out = sys.stdout
glued = sys.argv[1:] == ["glued"]
late = False
pending = b""
while True:
    data = os.read(0, 64)
    if not data:
        break
    pending += data
    while pending:
        if pending.startswith(b"\x03"):
            pending = pending[1:]
            # The answer to a key pressed before otto's, then the late answer to otto's.
            out.write("=> "); out.flush()
            if glued:
                late = True  # sent with the answer to the next line, in one write
            else:
                time.sleep(0.2)
                out.write("<INTERRUPT>\n=> "); out.flush()
            continue
        line, nl, rest = pending.partition(b"\n")
        if not nl:
            break
        pending = rest
        text = line.decode()
        if not text.strip() and late:
            late = False
            out.write("<INTERRUPT>\n=> " + text + "\n=> ")
        elif not text.strip():
            time.sleep(1.5)  # a loaded, emulated board: slower than otto's first patience
            out.write(text + "\n=> ")
        else:
            out.write(text + "\n" + text.removeprefix("echo ") + "\n=> ")
        out.flush()
"""


@pytest.mark.parametrize("mode", ["slow", "glued"])
async def test_a_late_answer_before_the_echo_of_the_blank_line_keeps_the_echo(
    tmp_path: Path, mode: str
) -> None:
    # A board that echoes by itself (as U-Boot does) answers otto's Ctrl-C late, and
    # then: (slow) otto's blank line later than a second, or (glued) in the same write
    # as that late answer, its prompt no longer where the output ends. The echo must
    # still be counted, else every answer would start with the echo of its command.
    program = tmp_path / "board.py"
    program.write_text(SLOW_BOARD)
    async with LocalHost() as host:
        session = await host.open_session("board")
        await session.send(f"exec python3 -u {program} {mode}\n")
        async with host.open_app(None, "=> ", name="board", timeout=20) as app:
            assert app.echoes == 1
            assert await app.cmd("echo hi") == "hi"
