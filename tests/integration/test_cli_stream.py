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

import pytest

from otto.cli.output import HostPrinter
from otto.cli.stream import LiveStream, wrap
from otto.result import CommandStatus, Status

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
