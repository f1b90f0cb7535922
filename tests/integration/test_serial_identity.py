"""A serial line by a stable name whose device comes and goes (a USB re-enumeration).

The device is a socat pty (tests/lab/console.py) behind a link made as udev
makes ``/dev/serial/by-id/...``; unplugging ends that socat (the pty goes), and
a new socat with the link pointed at its pty is the adapter coming back.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from otto import RemoteHost, Status
from otto.errors import ConnectionLost
from otto.hosts.console import ConsoleConnection
from tests.integration.hosts import eventually
from tests.lab.console import ConsoleLab

pytestmark = pytest.mark.integration


def by_id(tmp_path: Path) -> Path:
    folder = tmp_path / "serial" / "by-id"
    folder.mkdir(parents=True)
    return folder / "usb-otto_Test_Adapter_A1B2-if00-port0"


def plug(link: Path, device: str) -> None:
    """Point ``link`` at the pty behind ``device`` (udev making a by-id link)."""
    tmp = link.with_name(link.name + ".new")
    tmp.symlink_to(os.path.realpath(device))
    tmp.replace(link)


def serial_host(link: Path, log: Path, timeout: float) -> RemoteHost:
    return RemoteHost(
        str(link), term="serial", name="by-id", console_log=log, connect_timeout=timeout
    )


async def test_a_device_that_comes_back_is_reopened_at_the_next_verb(
    consoles: ConsoleLab, tmp_path: Path
) -> None:
    link, log = by_id(tmp_path), tmp_path / "console.log"
    first = await consoles.add("ident-a", login=False, protocol="")
    plug(link, first.device)
    host = serial_host(link, log, 10.0)
    try:
        assert (await host.run("echo before")).only.output == "before"
        await consoles.unplug(first)
        link.unlink()
        connection = host.connection
        assert isinstance(connection, ConsoleConnection)
        # Re-enumerated: a new pty (the kernel may give it the old number, as it
        # may give ttyUSB0 again), the link made again to it.
        second = await consoles.add("ident-b", login=False, protocol="")
        plug(link, second.device)
        out = (await host.run("printf 'a\\nb'; echo; echo after")).only
        assert out.output == "a\nb\nafter"
        assert (await host.run("echo again")).only.output == "again"
    finally:
        await host.close()
    text = log.read_text()
    gap = re.findall(r"\[otto: (.*) disappeared at (.*), reopened at (.*)\]", text)
    assert len(gap) == 1, text
    assert gap[0][0] == f"{link} (-> {os.path.realpath(second.device)})"
    assert gap[0][1] <= gap[0][2]
    # Before the gap the old shell's output; after it the new one's.
    assert text.index("before") < text.index("[otto: ") < text.index("after")


async def test_a_verb_waits_for_the_device_to_come_back(
    consoles: ConsoleLab, tmp_path: Path
) -> None:
    link, log = by_id(tmp_path), tmp_path / "console.log"
    first = await consoles.add("ident-c", login=False, protocol="")
    plug(link, first.device)
    host = serial_host(link, log, 20.0)
    try:
        assert (await host.run("echo before")).only.output == "before"
        await consoles.unplug(first)
        link.unlink()
        connection = host.connection
        assert isinstance(connection, ConsoleConnection)
        line = connection.serial_line
        assert line is not None
        run = asyncio.create_task(host.run("echo during"))
        # The verb is waiting for the device (its stream was lost, the link is gone).
        assert await eventually(lambda: line.waiting, timeout=15.0)
        second = await consoles.add("ident-d", login=False, protocol="")
        plug(link, second.device)
        assert (await asyncio.wait_for(run, 20.0)).only.output == "during"
    finally:
        await host.close()
    assert "disappeared at" in log.read_text()


async def test_a_verb_while_the_device_is_gone_says_so(
    consoles: ConsoleLab, tmp_path: Path
) -> None:
    link, log = by_id(tmp_path), tmp_path / "console.log"
    first = await consoles.add("ident-e", login=False, protocol="")
    plug(link, first.device)
    host = serial_host(link, log, 1.5)
    try:
        assert (await host.run("echo before")).only.output == "before"
        await consoles.unplug(first)
        link.unlink()
        with pytest.raises(ConnectionLost) as info:
            await host.run("echo gone")
        message = str(info.value)
        assert message.startswith("by-id: ")
        assert f"the serial device {link} disappeared at " in message
        assert "did not come back within 1.5s" in message
    finally:
        await host.close()


async def test_a_command_running_when_the_device_disappears_names_it(
    consoles: ConsoleLab, tmp_path: Path
) -> None:
    link, log = by_id(tmp_path), tmp_path / "console.log"
    first = await consoles.add("ident-f", login=False, protocol="")
    plug(link, first.device)
    host = serial_host(link, log, 10.0)
    try:
        assert (await host.run("echo before")).only.output == "before"
        run = asyncio.create_task(host.run("echo started; sleep 60"))
        # Its output printed (a line of its own, not the echo of the command).
        printed = re.compile(r"(?<!echo )started\r?\n")
        assert await eventually(lambda: bool(printed.search(log.read_text())), timeout=10.0)
        await consoles.unplug(first)
        link.unlink()
        out = (await asyncio.wait_for(run, 10.0)).only
        assert (out.status, out.output) == (Status.Error, "started")
        assert f"connection lost: the serial device {link} disappeared (" in str(out.error)
    finally:
        await host.close()
