"""Kernel messages taken out of a console's stream: exact at every cut of the stream."""

from __future__ import annotations

import pytest

from otto.transports.kmsg import MAX_RECORD, KernelLines

RECORD = b"[    4.785302] otto-kmsg 1\r\n"
LATE = b"[12345.000001] usb 1-1: new high-speed USB device\r\n"


def through(chunks: list[bytes]) -> tuple[bytes, int]:
    lines = KernelLines()
    out = b"".join(lines.feed(chunk) for chunk in chunks) + lines.flush()
    return out, lines.removed


def every_cut(stream: bytes) -> list[list[bytes]]:
    """The stream as two chunks cut at each place, and one byte at a time."""
    cuts = [[stream[:i], stream[i:]] for i in range(len(stream) + 1)]
    return [*cuts, [stream[i : i + 1] for i in range(len(stream))]]


@pytest.mark.parametrize(
    ("stream", "expected", "removed"),
    [
        # Between two lines of the command's output.
        (b"line-1\n" + RECORD + b"line-2\n", b"line-1\nline-2\n", 1),
        # In the middle of a line still queued in the terminal.
        (b"lin" + RECORD + b"e-1\n" + LATE + b"line-2\n", b"line-1\nline-2\n", 2),
        # Next to otto's markers.
        (b"out\n\x1etok:1:0k" + RECORD + b"\x1f", b"out\n\x1etok:1:0k\x1f", 1),
        # A command's own line that looks like one ends in a bare \n (onlcr is off): kept.
        (b"[    4.785302] printed by cat\n", b"[    4.785302] printed by cat\n", 0),
        # Brackets that are no time stamp.
        (b"[ok] [ 1.5] [x]\n[   12.34567] six digits or none\n", None, 0),
        (b"a[\n[\r\n[    1.000000]\r\n", None, 0),
        (b"tail [    4.78", None, 0),
    ],
)
def test_kernel_records_leave_the_stream_at_every_cut(
    stream: bytes, expected: bytes | None, removed: int
) -> None:
    want = stream if expected is None else expected
    for chunks in every_cut(stream):
        assert through(chunks) == (want, removed), chunks


def test_a_possible_record_is_held_until_the_next_chunk_says() -> None:
    lines = KernelLines()
    assert lines.feed(b"out [    4.7") == b"out "
    assert lines.feed(b"85302] no line end yet") == b""
    assert lines.feed(b"\n") == b"[    4.785302] no line end yet\n"
    assert lines.feed(b"x [  1.000000] k\r\ny") == b"x y"
    assert lines.removed == 1


def test_a_record_longer_than_the_kernel_prints_is_kept() -> None:
    long = b"[    1.000000] " + b"x" * MAX_RECORD
    lines = KernelLines()
    out = lines.feed(long[:100]) + lines.feed(long[100:]) + lines.feed(b"\r\n")
    assert out + lines.flush() == long + b"\r\n"
    assert lines.removed == 0


def test_flush_gives_back_what_was_held() -> None:
    lines = KernelLines()
    assert lines.feed(b"end [   3.1") == b"end "
    assert lines.flush() == b"[   3.1"
    assert lines.flush() == b""


@pytest.mark.parametrize(
    "record",
    [
        b"[    7.347917] reboot: Restarting system\r\n",
        b"[    6.385379] Rebooting in 1 seconds..\r\n",
        b"[   99.000000] reboot: Power down\r\n",
        b"[   99.000000] reboot: System halted\r\n",
    ],
)
def test_a_restarting_kernel_is_told_once(record: bytes) -> None:
    lines = KernelLines()
    assert lines.feed(b"Sent SIGKILL to all processes\n" + record[:9]) == (
        b"Sent SIGKILL to all processes\n"
    )
    assert lines.take_restart() == ""
    assert lines.feed(record[9:] + b"\r\nottovm login: ") == b"\r\nottovm login: "
    assert lines.take_restart() == record.strip().decode()
    assert lines.take_restart() == ""


def test_text_about_a_reboot_is_no_restart() -> None:
    lines = KernelLines()
    lines.feed(b"[    1.000000] reboot: Restarting system\n")  # a command printed it
    lines.feed(b"[    1.000000] usb 1-1: reboot: Restarting system soon\r\n")
    assert lines.take_restart() == ""
