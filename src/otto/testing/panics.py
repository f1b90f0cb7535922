"""Kernel panics and oopses on the consoles a test uses: what they look like, and the watch.

While a test runs, the plugin hands every byte each console host prints (the
whole stream: between commands, and the kernel's messages that never reach a
command's output) to a :class:`PanicWatch` of that host. The first line that
holds a signature is a crash: it fails the test, with the lines around it as
the excerpt shown in the terminal, ``report.html`` and ``junit.xml``. The
excerpt is redacted (:class:`otto.testing.evidence.BytesRedactor`) before it
is kept.

``SIGNATURES`` are the default; ``--crash-pattern`` replaces them.
"""

from __future__ import annotations

import collections
import re
import threading

from otto.testing.evidence import BytesRedactor
from otto.testing.records import Crash

__all__ = ["AFTER_LINES", "BEFORE_LINES", "SIGNATURES", "PanicWatch", "signature_pattern"]

SIGNATURES: tuple[str, ...] = (
    "Kernel panic - not syncing",
    "Oops: ",
    "BUG: ",
    "kernel BUG at ",
    "Call Trace:",
    "general protection fault",
    "Unable to handle kernel",
    "Internal error: Oops",
)
"""What a Linux kernel prints when it panics, oopses or hits a BUG (regular expressions;
these are plain text)."""

BEFORE_LINES = 10
"""Lines before the signature's kept in the excerpt."""
AFTER_LINES = 60
"""Lines after it kept (a panic's register dump and call trace)."""
_LONGEST_LINE = 4096
"""A line that does not end by then is cut (a console printing garbage)."""
_END = re.compile(rb"---\[ end (?:Kernel panic|trace)|Rebooting in \d+ seconds")
_MARKER = re.compile(rb"\x1e[^\x1e\x1f\n]{0,200}\x1f")
"""otto's own framing on the console (the exit marker of a command)."""
_CONTROL = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f]")
"""Terminal escapes and control characters: no text of the excerpt (nor valid XML)."""


def _clean(line: bytes) -> bytes:
    return _CONTROL.sub(b"", _MARKER.sub(b"", line))


def signature_pattern(patterns: list[str] | tuple[str, ...] = SIGNATURES) -> re.Pattern[bytes]:
    """One pattern matching any of ``patterns`` (raises ``re.error`` for a bad one)."""
    return re.compile("|".join(f"(?:{p})" for p in patterns).encode())


class PanicWatch:
    """The lines one console host prints, searched for the first crash.

    ``feed`` may be called from otto's loop thread while ``crash`` is read
    from pytest's: both hold the watch's lock.
    """

    def __init__(
        self,
        host: str,
        pattern: re.Pattern[bytes],
        *,
        before: int = BEFORE_LINES,
        after: int = AFTER_LINES,
    ) -> None:
        self.host = host
        self.pattern = pattern
        self._before: collections.deque[bytes] = collections.deque(maxlen=before)
        self._after = after
        self._partial = b""
        self._redactor = BytesRedactor()
        self._lines: list[bytes] = []
        self._ended = False
        self._crash: Crash | None = None
        self._lock = threading.Lock()

    @property
    def crash(self) -> Crash | None:
        """The first crash seen, its excerpt as complete as what arrived so far."""
        with self._lock:
            return self._crash

    def feed(self, data: bytes) -> None:
        """Bytes the console printed (any cut); ``b""`` says nothing (the stream ended)."""
        if not data:
            return
        with self._lock:
            if self._ended:
                return
            data = self._partial + self._redactor.feed(data)
            *whole, self._partial = data.split(b"\n")
            if len(self._partial) > _LONGEST_LINE:
                whole.append(self._partial)
                self._partial = b""
            for line in whole:
                self._line(_clean(line))
                if self._ended:
                    return

    def close(self) -> None:
        """The stream (or the test) ended: the line still open counts too."""
        with self._lock:
            if self._ended:
                return
            rest = self._partial + self._redactor.flush()
            self._partial = b""
            if rest:
                self._line(_clean(rest))

    def _line(self, line: bytes) -> None:
        if self._crash is None:
            found = self.pattern.search(line)
            if found is None:
                self._before.append(line)
                return
            self._lines = [*self._before, line]
            self._crash = Crash(
                host=self.host,
                pattern=found.group().decode("utf-8", "replace"),
                excerpt="",
            )
        else:
            self._lines.append(line)
        if len(self._lines) - len(self._before) > self._after or _END.search(line):
            self._ended = True
        self._crash.excerpt = b"\n".join(self._lines).decode("utf-8", "replace")
