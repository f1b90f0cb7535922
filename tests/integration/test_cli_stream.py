"""``otto.cli.stream``: the shell wrapper on real shells, and the parser on the bytes they send.

The wrapper runs in dash, bash and busybox sh as the session would run it; the
parser is fed the exact stream a session receives (output, GS-marked stderr
lines, otto's markers glued to the last line), cut at every byte.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from otto import Host, LocalHost, framing
from otto.cli.hostcmds import _Progress, _stream_host
from otto.cli.output import HostPrinter
from otto.cli.stream import LiveStream, wrap
from otto.result import CommandStatus, Status
from tests.integration.hosts import remote_host
from tests.lab import Lab

SHELLS = [s for s in (["dash"], ["bash"], ["busybox", "sh"]) if shutil.which(s[0])]


def printers() -> tuple[HostPrinter, HostPrinter, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return (
        HostPrinter(["h"], stream=out, colour=False),
        HostPrinter(["h"], stream=err, colour=False),
        out,
        err,
    )


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_wrapper_keeps_state_and_marks_stderr(shell: list[str]) -> None:
    script = "\n".join(
        [
            wrap("cd /; X=5; echo out; echo err >&2; printf part >&2; sleep 0 & wait", 1),
            'echo "status=$? pwd=$PWD X=$X"',
            wrap("-bogus-command-name", 2),
            'echo "status=$?"',
        ]
    )
    proc = subprocess.run(
        shell, input=script.encode(), capture_output=True, timeout=30, check=False
    )
    lines = proc.stdout.split(b"\n")
    assert lines[0] == b"\x1dotto-start"
    assert b"out" in lines
    assert b"\x1derr" in lines and b"\x1dpart" in lines
    assert lines.count(b"\x1dotto-end") == 2
    assert b"status=0 pwd=/ X=5" in lines
    # A command starting with '-' runs as a command, not as eval's option.
    assert b"status=127" in lines


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_a_command_that_exits_ends_its_stderr_before_the_shells_last_marker(
    shell: list[str],
) -> None:
    # As a session runs it: otto's set-up (its EXIT trap prints the last marker), then
    # wrapped commands; the second one reads the traps, the third ends the shell.
    script = (
        framing.setup_bytes("tok", pty=False)
        + framing.command_bytes(wrap("echo out; echo err >&2", 1), "tok", 1)
        + framing.command_bytes(wrap("trap", 2), "tok", 2)
        + framing.command_bytes(wrap("echo out; echo err >&2; exit 3", 3), "tok", 3)
    )
    proc = subprocess.run(shell, input=script, capture_output=True, timeout=30, check=False)
    assert proc.returncode == 3
    first, second, third = proc.stdout.split(b"\x1dotto-start\n")[1:]
    assert first.split(b"\n")[:3] == [b"out", b"\x1derr", b"\x1dotto-end"]
    assert b"otto-stderr-sync" in second  # the wrapper's own EXIT trap is set ...
    # ... and the session's is kept: it runs after the reader has shown everything.
    assert third == b"out\n\x1derr\n\x1dotto-end\n\x1etok:e3:3\x1f"


STREAM = (
    b"setup echo, ignored\n"
    b"\x1e tok:0:123k\x1f"
    b"\x1dotto-start\n"
    b"first\n"
    b"half"
    b"\x1doops\n"
    b"-line\n"
    b"\n"
    b"last without newline"
    b"\x1etok:1:0k\x1f"
    b"\x1dotto-end\n"
)


@pytest.mark.parametrize("cut", [1, 2, 3, 7, len(STREAM)])
def test_parser_in_pieces(cut: int) -> None:
    out_printer, err_printer, out, err = printers()
    live = LiveStream("h", out_printer, err_printer)
    live.begin()
    for start in range(0, len(STREAM), cut):
        live.tap("h/default", "received", STREAM[start : start + cut])
    assert live.complete
    status = CommandStatus("c", "", Status.Success, 0)
    asyncio.run(asyncio.wait_for(live.finish(status), 5))
    assert out.getvalue().splitlines() == [
        "h | first",
        "h | half-line",
        "h | ",
        "h | last without newline",
    ]
    assert err.getvalue() == "h ! oops\n"


def test_parser_flushes_an_unfinished_line() -> None:
    out_printer, err_printer, out, _ = printers()
    live = LiveStream("h", out_printer, err_printer)
    live.begin()
    live.tap("h/default", "received", b"\x1dotto-start\nso far")
    live.flush()
    assert out.getvalue() == "h | so far\n"


def test_a_shell_that_exits_needs_no_end_line() -> None:
    out_printer, err_printer, out, _ = printers()
    live = LiveStream("h", out_printer, err_printer)
    live.begin()
    live.tap("h/default", "received", b"\x1dotto-start\nbye\n\x1etok:e1")
    assert not live.complete
    # The EXIT trap's marker, with nothing after it: no end line will come.
    live.tap("h/default", "received", b":3\x1f")
    assert live.complete
    live.flush()
    assert out.getvalue() == "h | bye\n"


ROUNDS = 50
ENDS_ITS_SHELL = "echo out; echo err >&2; exit 3"


@pytest.fixture
def busy() -> Iterator[None]:
    """A process that keeps a core busy, as a loaded machine is, for the test's length."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spin.kill()
        spin.wait()


@pytest.fixture(params=["local", "ssh"])
def shell_host(request: pytest.FixtureRequest) -> Host:
    """This machine, or the lab's SSH host (a sync fixture: the lab is an async one)."""
    if request.param == "local":
        return LocalHost()
    lab = request.getfixturevalue("lab")
    assert isinstance(lab, Lab)
    return remote_host(lab, "ssh1")


async def test_a_command_that_ends_the_shell_shows_all_its_stderr(
    shell_host: Host, busy: None
) -> None:
    """The shell's last marker came before the stderr reader's last line, which a local
    shell's end then killed: the wrapper's EXIT trap ends the reader first."""
    host = shell_host
    try:
        for _ in range(ROUNDS):
            out, err = io.StringIO(), io.StringIO()
            code = await asyncio.wait_for(
                _stream_host(
                    host,
                    [ENDS_ITS_SHELL],
                    30.0,
                    out=HostPrinter([host.name], stream=out, colour=False),
                    err=HostPrinter([host.name], stream=err, colour=False),
                    progress=_Progress(),
                ),
                60,
            )
            assert code == 3
            assert f"{host.name} | out" in out.getvalue().splitlines()
            assert err.getvalue().splitlines() == [f"{host.name} ! err"], out.getvalue()
    finally:
        await host.close()


async def test_a_command_that_ends_the_shell_keeps_all_its_output(
    shell_host: Host, busy: None
) -> None:
    """The library (and ``--json``): the result holds every byte, stderr's last line too."""
    host = shell_host
    try:
        for _ in range(ROUNDS):
            result = await asyncio.wait_for(host.run(ENDS_ITS_SHELL), 60)
            status = result.statuses[0]
            assert (status.retcode, status.output) == (3, "out\nerr")
    finally:
        await host.close()


@pytest.mark.parametrize(
    "command",
    [
        "echo 1; echo 2 >&2; echo 3",
        "printf out; printf err >&2",
        "seq 1 2000 >&2; seq 1 2000",
        "(sleep 30 >&2 &) ; echo bg",
        ENDS_ITS_SHELL,
    ],
)
async def test_the_commands_end_is_seen_before_its_result(
    shell_host: Host, busy: None, command: str
) -> None:
    """``LiveStream.finish`` waits on an event (the end line, or the shell's last marker)
    bounded by ``END_WAIT``: the end always comes before otto's marker, so the event is
    already set when ``run`` returns and the bound is never what ends the wait, however
    loaded the machine (a background job holding the stderr pipe included)."""
    host = shell_host
    out, err, _, _ = printers()
    live = LiveStream(host.name, out, err)
    remove = host.add_tap(live.tap)
    try:
        for number in range(1, 21):
            live.begin()
            result = await asyncio.wait_for(host.run(wrap(command, number)), 60)
            assert live.complete, (number, result.statuses[0])
            live.flush()
    finally:
        remove()
        await host.close()
