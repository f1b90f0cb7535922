"""Kernel messages on a Linux console, taken out of what a command printed there.

The kernel writes its messages (``printk``) straight to the console's UART,
whenever they happen: between two lines of a command's output, or in the
middle of one (the line's bytes still queued in the terminal are sent after
the message). On the console they look like::

    [    4.785302] usb 1-1: new high-speed USB device\\r\\n

a time stamp, the text, and ``\\r\\n`` (the kernel's console writer adds the
``\\r`` itself). The shell otto starts on a console turns ``onlcr`` off, so a
command's own lines end in a bare ``\\n``: a line with a time stamp that ends
in ``\\r\\n`` is the kernel's, and :class:`KernelLines` takes it out of the
stream that goes to the command's output and its markers. The console's log
and the host's taps still get every byte.

A message that says the kernel is restarting or stopping (``reboot: Restarting
system``, ``Rebooting in 1 seconds..`` after a panic) is kept in ``restarted``:
whatever shell ran on the console is gone with it.

Bytes that may still become a kernel message (``[    4.78`` at the end of a
chunk) are held until the next chunk says; a record longer than
``MAX_RECORD`` bytes is no kernel message.
"""

from __future__ import annotations

import re

__all__ = ["MAX_RECORD", "KernelLines"]

MAX_RECORD = 4096
"""Bytes a kernel message may take on the console (the kernel's own limit is 1024)."""

_HEAD = re.compile(rb"\[ {0,12}\d{1,10}\.\d{6}\] ")
_HEAD_PREFIX = re.compile(rb"\[ {0,12}(?:\d{1,10}(?:\.\d{0,6}\]?)?)?\Z")
_RECORD = re.compile(rb"\[ {0,12}\d{1,10}\.\d{6}\] [^\r\n]*\r\n")
_RESTART = re.compile(
    rb"\] (?:reboot: (?:Restarting system|Power down|System halted)|Rebooting in \d+ seconds)"
)


class KernelLines:
    """A filter over one console's byte stream: ``feed`` returns the bytes without kernel
    messages (some bytes may be held until the next chunk)."""

    def __init__(self) -> None:
        self._held = b""
        self.removed = 0
        """Kernel messages taken out so far."""
        self.restarted = ""
        """The message that said the kernel restarts or stops, until ``take_restart``."""

    def feed(self, data: bytes) -> bytes:
        buf = self._held + data if self._held else data
        self._held = b""
        if b"[" not in buf:
            return buf
        out = bytearray()
        at = 0
        while True:
            start = buf.find(b"[", at)
            if start < 0:
                out += buf[at:]
                break
            out += buf[at:start]
            record = _RECORD.match(buf, start)
            if record is not None:
                self.removed += 1
                if _RESTART.search(record.group()):
                    self.restarted = record.group().strip().decode("utf-8", "replace")
                at = record.end()
                continue
            if self._may_become_record(buf, start):
                self._held = buf[start:]
                break
            out += b"["
            at = start + 1
        return bytes(out)

    def take_restart(self) -> str:
        """The restart message seen since the last call, or ``""``."""
        restarted, self.restarted = self.restarted, ""
        return restarted

    def flush(self) -> bytes:
        """The bytes held back (the stream ended, or changed hands)."""
        held, self._held = self._held, b""
        return held

    @staticmethod
    def _may_become_record(buf: bytes, start: int) -> bool:
        if len(buf) - start > MAX_RECORD:
            return False
        head = _HEAD.match(buf, start)
        if head is None:
            return _HEAD_PREFIX.match(buf, start) is not None
        rest = buf[head.end() :]
        # A whole record would have matched: a line end here (or a \r not followed by
        # \n) says it is no kernel message.
        return b"\n" not in rest and b"\r" not in rest[:-1]
