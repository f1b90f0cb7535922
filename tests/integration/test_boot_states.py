"""Boot states on a real board: Debian's qemu_arm U-Boot in QEMU, its power switched
through QEMU's monitor (tests/lab/qemu_power.py), its console on a TCP port.

Its U-Boot counts down two seconds ("Hit any key to stop autoboot"), then
tries to boot, finds nothing, and stops at its ``=> `` prompt: a countdown
otto missed shows in the console log as that autoboot's output ("starting
USB...", "scanning bus"). The board has no system to boot: ``goto("shell")``
fails at the step that waits for one, which is its error test.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from otto import ConnectError, PowerSpec, RemoteHost, redact
from otto.hosts.lifecycle import BootSpec
from tests.lab.linuxvm import VM_PASSWORD, VM_USER, linuxvm_missing
from tests.lab.qemu_power import PoweredBoard, PoweredLinux, monitor
from tests.lab.uboot import uboot_missing

pytestmark = pytest.mark.integration

PROMPT = "=> "
COUNTDOWN = "Hit any key to stop autoboot"
AUTOBOOT_RAN = "scanning bus"
"""What U-Boot prints only when its countdown ran out and it tried to boot."""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def board(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PoweredBoard]:
    missing = uboot_missing()
    if missing:
        pytest.skip(missing)
    async with PoweredBoard(tmp_path_factory.mktemp("board")) as running:
        yield running


def board_host(
    board: PoweredBoard, log: Path, *, status: bool = False, **boot: object
) -> RemoteHost:
    """A console host on the board; its power read back with ``status`` only."""
    power = board.power_fields()
    if not status:
        for key in ("status", "on_pattern", "off_pattern"):
            del power[key]
    host = RemoteHost(
        board.address,
        term="console",
        console_protocol="raw",
        name="board",
        connect_timeout=5.0,
        console_log=str(log),
        power=PowerSpec(**power),  # type: ignore[arg-type]
    )
    fields = {"bootloader_prompt": PROMPT, "autoboot": COUNTDOWN, **boot}
    host.boot_spec = BootSpec.from_lab(fields)
    return host


FIRST_TICK = re.compile(r"autoboot:\s+2 \x08+ 0")
"""The countdown stopped in its first tick: from 2 straight to 0, no 1 printed."""


def boots(log: Path) -> list[str]:
    """The console log cut into boots: each from U-Boot's banner on."""
    return log.read_text(errors="replace").split("U-Boot 20")[1:]


async def test_every_power_on_is_caught_at_the_countdown(
    board: PoweredBoard, tmp_path: Path
) -> None:
    log = tmp_path / "console.log"
    host = board_host(board, log)
    sent: list[bytes] = []
    host.add_tap(lambda where, way, data: sent.append(data) if way == "sent" else None)
    async with host:
        await host.goto("off")
        assert board.status() == "paused"
        for _ in range(3):
            sent.clear()
            assert await host.goto("bootloader") == "bootloader"
            # Nothing typed into the board otto switched off; one key once the countdown showed.
            assert sent == [b"\x03"]
            await host.goto("off")
    seen = boots(log)
    assert len(seen) == 3
    for one in seen:
        assert COUNTDOWN in one
        assert AUTOBOOT_RAN not in one  # stopped within the countdown, every time
        assert FIRST_TICK.search(one), one
        assert "<INTERRUPT>" not in one  # no second key reached the prompt
        assert PROMPT in one


async def test_a_board_whose_power_reads_off_is_typed_nothing_into(
    board: PoweredBoard, tmp_path: Path
) -> None:
    log = tmp_path / "console.log"
    async with board_host(board, log) as first:
        await first.goto("off")
    # Another host object (another process): it has not watched the console.
    host = board_host(board, log, status=True)
    sent: list[bytes] = []
    host.add_tap(lambda where, way, data: sent.append(data) if way == "sent" else None)
    async with host:
        assert await host.goto("bootloader") == "bootloader"
        assert sent == [b"\x03"]  # none into the board while off; one at its countdown
    last = boots(log)[-1]
    assert FIRST_TICK.search(last), last
    assert "<INTERRUPT>" not in last
    # Off already, as its power reads: the off command (failing here) is not run.
    power = {**board.power_fields(), "off": "echo relay stuck; exit 1"}
    async with board_host(board, log, status=True) as host:
        await host.goto("bootloader")
        host.power_spec = PowerSpec(**power)  # type: ignore[arg-type]
        with pytest.raises(ConnectError, match="relay stuck"):
            await host.goto("off")  # on: the command runs
        monitor(board.monitor_path, ("stop",))  # someone else switches it off
        assert await host.goto("off") == "off"


async def test_a_countdown_already_running_is_stopped(board: PoweredBoard, tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    host = board_host(board, log)
    async with host:
        await host.goto("bootloader")
        async with host.open_session("reset-seen", raw=True) as seen:
            # Someone presses reset: otto is not told, and sees it on the console.
            await asyncio.get_running_loop().run_in_executor(
                None, monitor, board.monitor_path, ("system_reset",)
            )
            await seen.expect(COUNTDOWN, timeout=20)
        sent: list[bytes] = []
        host.add_tap(lambda where, way, data: sent.append(data) if way == "sent" else None)
        assert await host.goto("bootloader") == "bootloader"
        assert sent == [b"\x03"]  # one key, once the countdown showed, stopped it
        async with host.open_app(None, PROMPT, timeout=10) as app:
            assert await app.cmd("echo caught") == "caught"
    last = boots(log)[-1]
    assert COUNTDOWN in last
    assert AUTOBOOT_RAN not in last
    assert FIRST_TICK.search(last), last


async def test_at_the_bootloader_already_nothing_is_typed(
    board: PoweredBoard, tmp_path: Path
) -> None:
    log = tmp_path / "console.log"
    host = board_host(board, log)
    sent: list[bytes] = []

    def tap(where: str, way: str, data: bytes) -> None:
        if way == "sent":
            sent.append(data)

    async with host:
        await host.goto("bootloader")
        printed = log.read_bytes()
        host.add_tap(tap)
        assert await host.goto("bootloader") == "bootloader"
        assert sent == []
        assert log.read_bytes() == printed
        # The user's own typing at the prompt leaves it at the prompt: still nothing typed.
        async with host.open_app(None, PROMPT, timeout=10) as app:
            assert await app.cmd("echo mine") == "mine"
        sent.clear()
        printed = log.read_bytes()
        assert await host.goto("bootloader") == "bootloader"
        assert sent == []
        assert log.read_bytes() == printed


async def test_goto_off_runs_the_power_off_command(board: PoweredBoard, tmp_path: Path) -> None:
    host = board_host(board, tmp_path / "console.log")
    async with host:
        await host.goto("bootloader")
        assert board.status() == "running"
        assert await host.goto("off") == "off"
        assert board.status() == "paused"


async def test_a_failed_boot_names_the_step_and_shows_the_console(
    board: PoweredBoard, tmp_path: Path
) -> None:
    host = board_host(board, tmp_path / "console.log")
    secret = "No working controllers found"  # printed by U-Boot's autoboot; masked here
    redact.register(secret)
    try:
        async with host:
            await host.goto("bootloader")
            with pytest.raises(ConnectError) as failed:
                await host.goto("shell", timeout=60)
    finally:
        redact.forget(secret)
    error = failed.value
    assert error.step == "wait for the shell"
    assert "goto shell: wait for the shell failed" in str(error)
    assert "the bootloader's prompt showed instead" in str(error)
    assert "No ethernet found" in str(error)  # the console's last output
    assert secret not in str(error)
    assert "***" in str(error)


async def test_a_prompt_that_never_shows_fails_at_the_interrupt(
    board: PoweredBoard, tmp_path: Path
) -> None:
    host = board_host(board, tmp_path / "console.log", bootloader_prompt="U-Boot> ")
    async with host:
        await host.goto("off")
        with pytest.raises(ConnectError) as failed:
            await host.goto("bootloader", timeout=6)
    assert failed.value.step == "interrupt the autoboot"
    assert COUNTDOWN in str(failed.value) or "=>" in str(failed.value)


# --- the CLI and the test mark ----------------------------------------------------------------


def write_lab(tmp_path: Path, board: PoweredBoard) -> Path:
    entry = {
        "name": "board",
        "term": "console",
        "address": board.address,
        "console_protocol": "raw",
        "connect_timeout": 5,
        "power": board.power_fields(),
        "boot": {"bootloader_prompt": PROMPT, "autoboot": COUNTDOWN, "interrupt": "^C"},
    }
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": [entry]}))
    return path


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def test_cli_goto_exit_statuses(board: PoweredBoard, tmp_path: Path) -> None:
    lab = str(write_lab(tmp_path, board))
    done = run(["-m", "otto", "--lab", lab, "host", "board", "goto", "bootloader"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "board: bootloader\n"
    failed = run(
        ["-m", "otto", "--lab", lab, "host", "board", "goto", "shell", "-t", "60"], tmp_path
    )
    assert failed.returncode == 255
    assert "wait for the shell failed" in failed.stderr
    assert "No ethernet found" in failed.stderr
    off = run(["-m", "otto", "--lab", lab, "host", "board", "goto", "off"], tmp_path)
    assert off.returncode == 0, off.stderr
    assert board.status() == "paused"
    wrong = run(["-m", "otto", "--lab", lab, "host", "board", "goto", "sideways"], tmp_path)
    assert wrong.returncode == 2
    assert "sideways" in wrong.stderr


def test_the_state_mark_brings_the_host_there_first(board: PoweredBoard, tmp_path: Path) -> None:
    lab = str(write_lab(tmp_path, board))
    tests = tmp_path / "test_marked.py"
    tests.write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.state("bootloader")
            async def test_at_the_prompt(host):
                async with host.open_app(None, "=> ") as app:
                    assert await app.cmd("echo marked") == "marked"

            @pytest.mark.state("shell")
            def test_needs_a_system(host):
                pass
            """
        )
    )
    # At its prompt already: a new process finds it there with Ctrl-C (the stopped QEMU
    # board would keep that key for its next power-on, which no real board does).
    ready = run(["-m", "otto", "--lab", lab, "host", "board", "goto", "bootloader"], tmp_path)
    assert ready.returncode == 0, ready.stderr
    done = run(["-m", "pytest", "-p", "no:cacheprovider", "--lab", lab, "-q", str(tests)], tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert re.search(r"1 passed, 1 error", output), output
    assert "wait for the shell failed" in output


# --- a Linux target: from power-off to a shell ----------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def linux(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PoweredLinux]:
    missing = linuxvm_missing()
    if missing:
        pytest.skip(missing)
    async with PoweredLinux(tmp_path_factory.mktemp("linux")) as running:
        yield running


async def test_linux_from_power_off_to_a_shell(linux: PoweredLinux, tmp_path: Path) -> None:
    power = linux.power_fields()
    host = RemoteHost(
        linux.address,
        term="console",
        console_protocol="raw",
        name="vm",
        user=VM_USER,
        password=VM_PASSWORD,
        connect_timeout=10.0,
        console_log=str(tmp_path / "console.log"),
        power=PowerSpec(on=power["on"], off=power["off"], cycle=power["cycle"]),
    )
    async with host:
        assert await host.goto("off") == "off"
        assert linux.status() == "paused"
        assert await host.goto("shell", timeout=240) == "shell"
        assert (await host.run("cat /proc/uptime")).is_ok
        # At its shell: one look, through the shell otto has.
        sent: list[bytes] = []
        host.add_tap(lambda where, way, data: sent.append(data) if way == "sent" else None)
        assert await host.goto("shell") == "shell"
        assert len(sent) == 1
        assert await host.goto("off") == "off"
        assert linux.status() == "paused"
    assert "login:" in (tmp_path / "console.log").read_text()
