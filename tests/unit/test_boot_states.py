"""Boot states: the steps as data and the shortest way, the lab field ``boot``, the mark."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from otto import ConnectError, LocalHost, PowerSpec
from otto.errors import LabError
from otto.expect import ExpectBuffer, ExpectMatch
from otto.hosts.lifecycle import BootSpec, capabilities
from otto.hosts.lifecycle.spec import control_keys
from otto.hosts.lifecycle.states import STEPS, way
from otto.hosts.lifecycle.watch import visible
from otto.lab import Lab
from otto.lab.schema import lab_schema

BOARD = {"power on", "power off", "power cycle", "console", "bootloader", "countdown"}
SERVER = {"power on", "power off", "power cycle", "shell"}


def names(source: str, target: str, able: set[str]) -> list[str] | None:
    steps = way(source, target, able)
    return None if steps is None else [s.name for s in steps]


# --- the shortest way ---------------------------------------------------------------------


def test_a_board_is_caught_at_its_bootloader_from_every_state() -> None:
    assert names("off", "bootloader", BOARD) == ["power on", "interrupt the autoboot"]
    assert names("powered", "bootloader", BOARD) == ["interrupt the autoboot"]
    assert names("bootloader", "bootloader", BOARD) == []
    for state in ("shell", "login", "loading", "unknown"):
        assert names(state, "bootloader", BOARD) == ["power cycle", "interrupt the autoboot"]


def test_a_board_reaches_its_shell_without_typing_into_the_countdown() -> None:
    assert names("off", "shell", BOARD) == ["power on", "wait for the shell", "log in"]
    assert names("powered", "shell", BOARD) == ["wait for the shell", "log in"]
    assert names("bootloader", "shell", BOARD) == ["boot command", "wait for the shell", "log in"]
    assert names("login", "shell", BOARD) == ["log in"]
    assert names("shell", "shell", BOARD) == []


def test_off_is_a_power_command_from_anywhere() -> None:
    for state in ("powered", "bootloader", "loading", "login", "shell", "unknown"):
        assert names(state, "off", BOARD) == ["power off"]
    assert names("off", "off", set()) == []


def test_a_server_without_a_console_waits_for_its_shell_and_has_no_bootloader() -> None:
    assert names("off", "shell", SERVER) == ["power on", "wait for the shell"]
    assert names("unknown", "shell", SERVER) == ["power cycle", "wait for the shell"]
    assert way("shell", "bootloader", SERVER) is None


def test_no_way_without_the_capability_it_needs() -> None:
    assert way("shell", "off", {"console", "shell"}) is None
    assert way("off", "bootloader", BOARD - {"power on"}) is None
    # Without a countdown to catch, a running board is power-cycled... and still not caught.
    assert way("shell", "bootloader", BOARD - {"countdown"}) is None


def test_every_step_names_a_known_capability() -> None:
    from otto.hosts.lifecycle.states import NEEDS, PASSING, STATES

    for step in STEPS:
        assert step.needs in NEEDS
        assert step.source in (*STATES, *PASSING)
        assert step.target in (*STATES, *PASSING)


def test_capabilities_come_from_power_and_boot() -> None:
    host = LocalHost(power=PowerSpec(on="true", off="true"))
    assert capabilities(host) == {"power on", "power off", "power cycle", "shell"}
    assert capabilities(LocalHost(power=PowerSpec(cycle="true"))) == {"power cycle", "shell"}
    assert capabilities(LocalHost()) == {"shell"}


# --- goto on a host that cannot -----------------------------------------------------------


async def test_goto_shell_on_a_local_shell_is_one_look() -> None:
    async with LocalHost() as host:
        assert await host.goto("shell") == "shell"
        assert await host.goto("shell") == "shell"


async def test_goto_says_what_the_host_lacks() -> None:
    async with LocalHost() as host:
        with pytest.raises(ConnectError) as off:
            await host.goto("off")
        assert "power 'off' command" in str(off.value)
        assert off.value.step == "plan"
        with pytest.raises(ConnectError, match="a console"):
            await host.goto("bootloader")
        with pytest.raises(ValueError, match="sideways"):
            await host.goto("sideways")


async def test_a_failing_power_command_is_the_step_error(tmp_path: Path) -> None:
    host = LocalHost(power=PowerSpec(off="echo relay stuck >&2; exit 3", on="true"))
    async with host:
        with pytest.raises(ConnectError) as failed:
            await host.goto("off")
    assert failed.value.step == "power off"
    assert "goto off: power off failed" in str(failed.value)
    assert "relay stuck" in str(failed.value)


# --- the lab field -------------------------------------------------------------------------


def test_boot_spec_checks_its_values() -> None:
    assert control_keys("^C") == "\x03"
    assert control_keys("stop^[") == "stop\x1b"
    assert BootSpec.from_lab({"interrupt": "^C"}).interrupt == "\x03"
    assert BootSpec.from_lab({}) == BootSpec()
    with pytest.raises(ValueError, match="regex"):
        BootSpec(bootloader_prompt="=> (")
    with pytest.raises(ValueError, match="empty"):
        BootSpec(interrupt="")
    with pytest.raises(ValueError, match="one non-empty line"):
        BootSpec(boot_command="run a\nrun b")
    with pytest.raises(ValueError, match="unknown"):
        BootSpec.from_lab({"prompt": "=> "})


def _lab(tmp_path: Path, entry: dict[str, object]) -> Path:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": [entry]}))
    return path


def test_the_lab_field_boot_reaches_the_host(tmp_path: Path) -> None:
    boot = {
        "bootloader_prompt": "=> ",
        "autoboot": "Hit any key",
        "interrupt": "^C",
        "boot_command": "run bootcmd_mmc0",
        "shell_timeout": 90,
    }
    path = _lab(tmp_path, {"name": "b", "term": "console", "address": "h:7001", "boot": boot})
    lab = Lab.load(path)
    assert lab.host("b").boot_spec == BootSpec(
        bootloader_prompt="=> ",
        autoboot="Hit any key",
        interrupt="\x03",
        boot_command="run bootcmd_mmc0",
        shell_timeout=90.0,
    )
    assert "boot" in lab_schema()["properties"]["hosts"]["items"]["properties"]  # type: ignore[index]


def test_the_lab_field_boot_reports_each_problem(tmp_path: Path) -> None:
    entry = {
        "name": "b",
        "term": "console",
        "address": "h:7001",
        "boot": {"prompt": "=> ", "autoboot": "Hit (", "shell_timeout": 0},
    }
    with pytest.raises(LabError) as bad:
        Lab.load(_lab(tmp_path, entry))
    message = str(bad.value)
    assert "unknown key 'prompt'" in message
    assert "'shell_timeout' must be a positive number" in message
    with pytest.raises(LabError, match="'autoboot' is not a valid regex"):
        Lab.load(_lab(tmp_path, {**entry, "boot": {"autoboot": "Hit ("}}))
    with pytest.raises(LabError, match="not used by term 'local'"):
        Lab.load(_lab(tmp_path, {"name": "l", "term": "local", "boot": {}}))


# --- what the console printed, for errors --------------------------------------------------


def test_a_countdown_reads_as_it_showed() -> None:
    shown = visible("Hit any key to stop autoboot:  2 \b\b\b 1 \b\b\b 0 \r\n\x1b[1m=> \x1b[0m")
    assert shown == "Hit any key to stop autoboot:  0 \n=> "


def test_every_step_has_an_action_and_every_action_a_step() -> None:
    from otto.hosts.lifecycle.goto import _Lifecycle

    actions = _Lifecycle(LocalHost()).actions
    assert {(s.name, s.needs) for s in STEPS} == set(actions)


async def test_goto_off_on_a_host_whose_power_reads_off_runs_no_command() -> None:
    host = LocalHost(power=PowerSpec(off="echo relay stuck; exit 3", status="echo off"))
    async with host:
        assert await host.goto("off") == "off"
    # It reads on: the off command runs (and fails here, named).
    host = LocalHost(power=PowerSpec(off="echo relay stuck; exit 3", status="echo on"))
    async with host:
        with pytest.raises(ConnectError, match="relay stuck"):
            await host.goto("off")


class _Node:
    """What mark_state reads of a test item."""

    nodeid = "test_x.py::test_x"

    def __init__(self, mark: pytest.Mark | None) -> None:
        self.mark = mark

    def get_closest_marker(self, name: str) -> pytest.Mark | None:
        return self.mark if name == "state" else None


def test_the_state_mark_takes_a_state() -> None:
    from otto.testing.marks import mark_state

    assert mark_state(_Node(pytest.mark.state("bootloader").mark)) == "bootloader"  # type: ignore[arg-type]
    assert mark_state(_Node(None)) is None  # type: ignore[arg-type]
    with pytest.raises(pytest.UsageError, match="not 'sideways'"):
        mark_state(_Node(pytest.mark.state("sideways").mark))  # type: ignore[arg-type]


class ScriptedConsole:
    """A console watch that prints ``chunks`` one read at a time (a test double):
    ``wait`` reads until a pattern ends what was printed, as a session's expect does;
    ``quiet`` is true once nothing is left to print."""

    def __init__(self, chunks: list[str]) -> None:
        self.chunks = list(chunks)
        self.buffer = ExpectBuffer()
        self.host = LocalHost()

    async def wait(self, patterns: list[re.Pattern[str]], timeout: float) -> ExpectMatch | None:
        del timeout
        while True:
            found = self.buffer.search_any(patterns)
            if found is not None or not self.chunks:
                return found
            self.buffer.feed(self.chunks.pop(0).encode())

    async def quiet(self, seconds: float) -> bool:
        del seconds
        if not self.chunks:
            return True
        self.buffer.feed(self.chunks.pop(0).encode())
        return False


@pytest.mark.parametrize(
    ("chunks", "outcome"),
    [
        # U-Boot's script output cut by a read right after "## ", then its prompt.
        (["boot\r\n", "## ", "Executing script at 40200000\r\n=> "], "boot failed"),
        (["boot\r\nStarting kernel ...\r\n", "Welcome\r\n# "], "shell"),
        (["boot\r\n", "Debian login: "], "login"),
    ],
    ids=["bootloader-output-cut-after-##", "a-root-shell", "a-login-prompt"],
)
async def test_a_shell_prompt_on_a_board_is_one_only_if_the_console_then_stays_quiet(
    chunks: list[str], outcome: str
) -> None:
    from otto.hosts.lifecycle.bootloader import ConsolePatterns, StepFailed, wait_for_system

    patterns = ConsolePatterns.of(BootSpec(bootloader_prompt="=> ", autoboot="Hit any key"))
    console = ScriptedConsole(chunks)
    if outcome == "boot failed":
        with pytest.raises(StepFailed, match="the bootloader's prompt showed instead"):
            await wait_for_system(console, patterns, 10)  # type: ignore[arg-type]
    else:
        await wait_for_system(console, patterns, 10)  # type: ignore[arg-type]
        assert not console.chunks and not len(console.buffer)
