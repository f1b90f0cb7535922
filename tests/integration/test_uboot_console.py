"""A real U-Boot (QEMU) on a console host: what otto types into a bootloader, what it never does.

U-Boot runs its last command again on an empty line, so a stray Enter from
otto could repeat ``md``, ``mmc write`` or ``nand erase``. Here the last
command before each step is ``echo tick`` (repeatable, as those are: U-Boot
repeats no ``setexpr``, ``run`` or list of commands), and every ``tick`` the
console printed is counted.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from otto import ConnectError, ExpectTimeout, LocalHost, RemoteHost
from tests.lab.uboot import UBoot, uboot_missing

pytestmark = pytest.mark.integration

PROMPT = r"=> "


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def uboot() -> AsyncIterator[UBoot]:
    missing = uboot_missing()
    if missing:
        pytest.skip(missing)
    async with UBoot() as board:
        yield board


def board_host(uboot: UBoot, **options: object) -> RemoteHost:
    base: dict[str, object] = {"term": "console", "console_protocol": "raw", "name": "board"}
    base.update(options)
    return RemoteHost(uboot.address, **base)  # type: ignore[arg-type]


async def _type(board: RemoteHost, line: str) -> str:
    """Type one command into U-Boot on a raw session; what it printed up to its next prompt."""
    async with board.open_session("typing", raw=True) as console:
        await console.send(line + "\r")
        return await console.expect(re.compile(r"\n=> \Z"), timeout=20)


def _ticks(printed: str) -> int:
    """How many times ``echo tick`` ran: its output lines (its echo reads ``echo tick``)."""
    return len(re.findall(r"(?m)^(?:\[[^]]*\] )?tick\r?$", printed))


async def test_nothing_otto_does_on_opening_uboot_runs_a_command_again(
    uboot: UBoot, tmp_path: Path
) -> None:
    log_path = tmp_path / "console.log"
    board = board_host(uboot, connect_timeout=3.0, console_log=str(log_path))
    armed = 0

    async def arm() -> None:
        nonlocal armed
        await _type(board, "echo tick")
        armed += 1

    async with board:
        await arm()
        async with board.open_app(None, PROMPT, timeout=20) as app:
            assert app.echoes == 1
        await arm()
        await board.wait_until_up(10, prompt=PROMPT)
        await arm()
        # Looking for a shell on it: the console shows U-Boot, so nothing is typed.
        with pytest.raises(ConnectError) as no_shell:
            await board.run("true")
        await arm()
        with pytest.raises(ConnectError, match="board"):
            await board.wait_until_up(1.0)
        await arm()
        async with board.open_app(None, PROMPT, timeout=20) as app:
            assert await app.cmd("echo tick") == "tick"
        armed += 1
    assert _ticks(log_path.read_text()) == armed
    assert "U-Boot" in str(no_shell.value)
    # A program on this machine that reaches U-Boot (on a terminal, or a pipe).
    for pty in (True, False):
        async with board:
            await arm()
        received = bytearray()

        def tap(where: str, way: str, data: bytes, into: bytearray = received) -> None:
            if way == "received":
                into.extend(data)

        async with LocalHost() as local:
            local.add_tap(tap)
            async with local.open_app(f"socat - TCP:{uboot.address}", PROMPT, pty=pty) as app:
                assert app.echoes == 1
        assert _ticks(received.decode(errors="replace")) == 0


async def test_an_app_stays_exact_while_the_board_is_waited_for(uboot: UBoot) -> None:
    board = board_host(uboot, connect_timeout=3.0)
    async with board, board.open_app(None, PROMPT, timeout=20) as app:
        assert await app.cmd("echo one") == "one"
        # Waiting for the prompt on another view of the same console: its keys'
        # answers are no answer of the app's.
        await board.wait_until_up(10, prompt=PROMPT)
        assert await app.cmd("echo two") == "two"
        # Waiting for a shell: none is probed for on a console driven raw, and
        # the app's session survives the reconnects in between.
        with pytest.raises(ConnectError, match="board"):
            await board.wait_until_up(1.0)
        assert await app.cmd("echo three") == "three"
        assert await app.cmd("version") != ""
        assert await app.cmd("echo four") == "four"


async def test_a_raw_session_hears_of_a_disconnect_and_works_again(uboot: UBoot) -> None:
    board = board_host(uboot)
    async with board, board.open_session("boot", raw=True) as console:
        await console.send("echo before\r")
        await console.expect(re.compile(r"(?m)^before$"), timeout=20)
        await board.disconnect()
        # The session was told its stream closed: the next use opens it again
        # (before, the write went nowhere and this expect timed out).
        await console.send("echo after\r")
        await console.expect(re.compile(r"(?m)^after$"), timeout=20)


async def test_reopening_after_a_timed_out_command_interrupts_it(uboot: UBoot) -> None:
    board = board_host(uboot)
    async with board:
        async with board.open_app(None, PROMPT, timeout=20) as app:
            with pytest.raises(ExpectTimeout):
                await app.cmd("sleep 8", timeout=0.3)
        started = time.monotonic()
        async with board.open_app(None, PROMPT, timeout=20) as app:
            # Ctrl-C, not Enter: the sleep is cut short, and not run a second time.
            assert time.monotonic() - started < 7
            assert await app.cmd("echo quick") == "quick"


async def test_a_late_answer_to_an_earlier_key_is_not_taken_for_the_echo(uboot: UBoot) -> None:
    board = board_host(uboot)
    async with board, board.open_session("boot", raw=True) as console:
        # Ctrl-C, its answer still on its way when the app starts on this session.
        await console.send("\x03")
        async with board.open_app(None, PROMPT, name="boot", timeout=20) as app:
            assert app.echoes == 1
            assert await app.cmd("echo hi") == "hi"


async def test_a_prompt_already_received_is_used_as_it_is(uboot: UBoot) -> None:
    board = board_host(uboot)
    async with board, board.open_session("boot", raw=True) as console:
        arrived = asyncio.Event()
        seen = bytearray()

        def hear(data: bytes) -> None:
            seen.extend(data)
            if seen.endswith(b"\n=> "):
                arrived.set()

        remove = console.add_listener(hear)
        await console.send("\x03")
        await asyncio.wait_for(arrived.wait(), 20)  # in the session's buffer, not read
        remove()
        async with board.open_app(None, PROMPT, name="boot", timeout=20) as app:
            assert app.echoes == 1
            assert await app.cmd("echo hi") == "hi"


def test_joining_uboot_with_otto_host_login_types_nothing(uboot: UBoot, tmp_path: Path) -> None:
    """``otto host NAME login`` on a bootloader sends no key the person did not type."""
    import json
    import os
    import sys

    from tests.integration.test_login import Terminal

    log_path = tmp_path / "console.log"
    board = board_host(uboot, connect_timeout=3.0)

    async def arm() -> None:
        async with board:
            await _type(board, "echo tick")

    asyncio.run(arm())
    lab_file = tmp_path / "lab.json"
    lab_file.write_text(
        json.dumps(
            {"hosts": [{"name": "board", "term": "console", "console_protocol": "raw",
                        "address": uboot.address, "console_log": str(log_path)}]}
        )
    )  # fmt: skip
    env = {**os.environ, "TERM": "xterm", "NO_COLOR": "1"}
    env.pop("OTTO_LAB", None)
    argv = [sys.executable, "-m", "otto", "--lab", str(lab_file), "host", "board", "login"]
    term = Terminal(argv, env, 30, 120)
    try:
        term.wait_for(rb"console of board .*Ctrl-\] leaves")
        # What the person types reaches U-Boot, and only that: U-Boot's
        # answer to it comes after anything an Enter from otto would repeat.
        term.type(b"echo tock\r")
        term.wait_for(rb"\ntock\r?\n")
        term.type(b"\x1d")
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert _ticks(term.seen.decode(errors="replace")) == 0
    assert _ticks(log_path.read_text()) == 0
