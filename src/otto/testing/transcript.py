"""A test's transcript: every byte its hosts' sessions sent and received.

Bytes come from host taps (``Host.add_tap``), chunk by chunk, on otto's loop
thread. Each stream (host/session and direction) keeps its unfinished last
line until the rest arrives, so lines from several hosts never mix; whole
lines are written with a prefix naming the time the chunk arrived, the
host/session and the direction (``>`` sent, ``<`` received)::

    2024-06-01T12:00:00.123456Z web1/default > uname -r
    2024-06-01T12:00:00.131002Z web1/default < 6.1.0

Secrets (those registered with :mod:`otto.redact`, and ``secrets``) are masked
before anything is written, through :mod:`otto.testing.evidence`, one redactor
per stream: a secret cut in two by the longest-line limit is masked all the same. The
file stops growing at ``limit`` bytes; a note says where and, at the end, how
much more there was. Received lines of console hosts are searched for crash
patterns (a kernel panic, an oops): the first match per host is kept with the
lines around it.

The file and its folder are made with the first write, so a transcript nothing
reached leaves no file. What is written is buffered in memory and reaches the
file (one ``write`` per flush) when the buffer holds ``FLUSH_SIZE`` bytes, when
a command ends (:meth:`Transcript.command_ended`, which otto's plugin calls with each
command's result), at a note, at :meth:`Transcript.close`, and at the latest
``FLUSH_AFTER`` seconds after the first byte was buffered (a timer on the loop
the bytes came from; bytes tapped outside a running loop are written at once).
So a process killed mid-test (``kill -9``, a timeout that exits at once) leaves
every line of each finished command, and of a command still running all but at
most the last ``FLUSH_AFTER`` seconds of it.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from otto import redact
from otto.result import CommandStatus
from otto.testing.evidence import BytesRedactor, register_secrets
from otto.testing.records import Crash

__all__ = [
    "DEFAULT_CRASH_PATTERNS",
    "DEFAULT_LIMIT",
    "FLUSH_AFTER",
    "FLUSH_SIZE",
    "REDACTED",
    "Transcript",
    "after_timed_flush",
    "flush_later",
]

DEFAULT_LIMIT = 50 * 1024 * 1024
DEFAULT_CRASH_PATTERNS = ("Kernel panic", "Oops", "BUG:", "Call Trace")
REDACTED = redact.MASK.encode()

_LONGEST_LINE = 64 * 1024
"""A stream that sends no newline for this long is written anyway (as a line)."""
FLUSH_SIZE = 16 * 1024
"""Bytes a transcript buffers in memory before they are written."""
FLUSH_AFTER = 0.2
"""Seconds at most between a byte's arrival and its write, while the loop runs."""
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
_EXCERPT_BEFORE = 2048
_EXCERPT_AFTER = 4096


_second: tuple[int, str] = (-1, "")
"""The last whole second stamped, and its text (lines come many to a second)."""


def _stamp(t: float) -> str:
    """``t`` as ``2024-06-01T12:00:00.123456Z``."""
    global _second
    whole = int(t)
    second, text = _second
    if whole != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    return f"{text}.{int((t % 1) * 1_000_000):06d}Z"


after_timed_flush: list[Callable[[], object]] = []
"""Called, in order, each time a flush that ``flush_later`` put on the loop has run
(a test waits on it rather than sleeping ``FLUSH_AFTER``)."""

_due: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Callable[[], object]]] = (
    weakref.WeakKeyDictionary()
)
"""Per loop, the flushes its one pending timer will call."""


def flush_later(flush: Callable[[], object]) -> bool:
    """Call ``flush`` at the latest ``FLUSH_AFTER`` seconds from now on the running loop;
    False if no loop runs in this thread (the caller writes at once).

    A loop has one timer for all the flushes asked for while it is pending (one per
    test's transcript, often several tests in ``FLUSH_AFTER``), not one each."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    due = _due.get(loop)
    if due is None:
        due = _due[loop] = []
        loop.call_later(FLUSH_AFTER, _timed_flush, loop)
    due.append(flush)
    return True


def _timed_flush(loop: asyncio.AbstractEventLoop) -> None:
    for flush in _due.pop(loop, ()):
        try:
            flush()
        except Exception as exc:  # one transcript's failure does not stop the others'
            loop.call_exception_handler(
                {"message": "a transcript's flush failed", "exception": exc}
            )
        finally:
            for hook in tuple(after_timed_flush):
                hook()


class _Sink:
    """A file written in few system calls: made (with its folder) at the first write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    def write(self, data: bytes | bytearray) -> None:
        if self._fd < 0:
            try:
                self._fd = os.open(self.path, _OPEN_FLAGS, 0o666)
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, _OPEN_FLAGS, 0o666)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    @property
    def made(self) -> bool:
        return self._fd >= 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -2


class _CrashWatch:
    """The received lines of one console host, searched for a crash."""

    def __init__(self) -> None:
        self.recent = b""
        self.crash: Crash | None = None
        self.excerpt = b""

    def feed(self, host: str, lines: bytes, pattern: re.Pattern[bytes]) -> None:
        if self.crash is not None:
            if len(self.excerpt) < _EXCERPT_BEFORE + _EXCERPT_AFTER:
                self.excerpt += lines[: _EXCERPT_BEFORE + _EXCERPT_AFTER - len(self.excerpt)]
                self.crash.excerpt = self.excerpt.decode("utf-8", "replace")
            return
        found = pattern.search(lines)
        if found is None:
            self.recent = (self.recent + lines)[-_EXCERPT_BEFORE:]
            return
        before = self.recent + lines[: found.start()]
        start = before.rfind(b"\n", 0, max(0, len(before) - _EXCERPT_BEFORE // 2)) + 1
        self.excerpt = before[start:] + lines[found.start() : found.start() + _EXCERPT_AFTER]
        self.crash = Crash(
            host=host,
            pattern=found.group().decode("utf-8", "replace"),
            excerpt=self.excerpt.decode("utf-8", "replace"),
        )


class Transcript:
    """Writes the bytes handed to ``tap`` to ``path``, line-intact per stream.

    Args:
        path: the file (created, with its folder, at the first write; replaced if there).
        limit: bytes the file may hold before the rest is only counted.
        secrets: strings never written (registered with :mod:`otto.redact` while the
            transcript is open).
        crash_pattern: searched in what ``crash_hosts`` send back.
        crash_hosts: names of the hosts whose received lines are searched.
        title: the first line of the file.
    """

    def __init__(
        self,
        path: Path,
        *,
        limit: int = DEFAULT_LIMIT,
        secrets: Iterable[str] = (),
        crash_pattern: re.Pattern[bytes] | None = None,
        crash_hosts: Iterable[str] = (),
        title: str = "",
    ) -> None:
        self.path = path
        self.limit = limit
        self._secrets = register_secrets(secrets)
        self._redactors: dict[tuple[str, str], BytesRedactor] = {}
        self._crash_pattern = crash_pattern
        self._crash_hosts = frozenset(crash_hosts)
        self._watches: dict[str, _CrashWatch] = {}
        self._pending: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()
        self._written = 0
        self._dropped = 0
        self._closed = False
        self.hosts: set[str] = set()
        """Hosts whose sessions sent or received anything."""
        self._file = _Sink(path)
        self._buffer = bytearray()
        self._timer = False
        """A flush is due on the loop (``flush_later``)."""
        # Written with the first block: one write fewer per test.
        self._header = (
            f"# otto transcript{': ' + title if title else ''}\n"
            "# time (UTC) host/session, '>' sent to it, '<' received from it\n"
        ).encode()
        self._written = len(self._header)

    @property
    def crashes(self) -> list[Crash]:
        """Crashes seen, the first per host, in the order the hosts were watched."""
        if not self._watches:
            return []
        return [w.crash for w in self._watches.values() if w.crash is not None]

    @property
    def dropped(self) -> int:
        """Bytes not written because the limit was reached."""
        return self._dropped

    def tap(self, where: str, direction: Literal["sent", "received"], data: bytes) -> None:
        """What ``Host.add_tap`` calls: one chunk of one stream."""
        if not data:
            return
        with self._lock:
            if self._closed:
                return
            self.hosts.add(where.partition("/")[0])
            key = (where, direction)
            pending = self._pending.get(key)
            if pending:
                data = pending + data
            end = data.rfind(b"\n") + 1
            if end == 0:
                if len(data) < _LONGEST_LINE:
                    self._pending[key] = data
                    return
                end = len(data)
            if end < len(data):
                self._pending[key] = data[end:]
                data = data[:end]
            elif pending is not None:
                del self._pending[key]
            self._lines(where, direction, data)
            if self._buffer and not self._timer:
                self._timer = flush_later(self._flush_due)
                if not self._timer:
                    self._write_out()

    def flush(self) -> None:
        """Write what is buffered now (whole lines; a stream's unfinished line waits)."""
        with self._lock:
            if not self._closed:
                self._write_out()

    def command_ended(self, status: CommandStatus) -> None:
        """A command of one session ended: its streams' unfinished lines (the end marker,
        which has no newline) end here too, and everything buffered is written.

        What could be the start of a secret stays in the stream's redactor, to be
        masked with the rest of it, or written when the stream next ends a line."""
        where = f"{status.host}/{status.session or 'oneshot'}"
        with self._lock:
            if not self._closed:
                for direction in ("sent", "received"):
                    data = self._pending.pop((where, direction), None)
                    if data:
                        self._lines(where, direction, data)
                self._write_out()

    def _flush_due(self) -> None:
        with self._lock:
            self._timer = False
            if not self._closed:
                self._write_out()

    def note(self, text: str) -> None:
        """Write a line of otto's own (``# text``), after what each stream has so far."""
        with self._lock:
            if not self._closed:
                self._flush_pending()
                self._emit(f"# {text}\n".encode())
                self._write_out()

    def close(self) -> None:
        """Write what each stream still holds and the note on the limit; close the file."""
        with self._lock:
            if self._closed:
                return
            self._flush_pending()
            if self._header:
                self._buffer += self._header
            if self._dropped:
                self._buffer += (
                    f"# otto: transcript limit of {self.limit} bytes reached; "
                    f"{self._dropped} more bytes were not kept\n".encode()
                )
            self._write_out()
            self._closed = True
            self._file.close()
            redact.forget(*self._secrets)

    # --- inside the lock ----------------------------------------------------------------

    def _write_out(self) -> None:
        if self._buffer:
            self._file.write(self._buffer)
            self._buffer = bytearray()

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, {}
        redactors, self._redactors = self._redactors, {}
        for key in [*pending, *(k for k in redactors if k not in pending)]:
            where, direction = key
            data = pending.get(key, b"")
            redactor = redactors.get(key)
            if redactor is not None:
                data = redactor.finish(data)
            if data:
                self._lines(where, direction, data + b"\n", redacted=True)

    def _lines(self, where: str, direction: str, lines: bytes, *, redacted: bool = False) -> None:
        """Write whole lines (``lines`` ends with a newline) of one stream."""
        if self._dropped:
            self._dropped += len(lines)
            return
        if not redacted:
            key = (where, direction)
            redactor = self._redactors.get(key)
            if redactor is None:
                redactor = self._redactors[key] = BytesRedactor()
            lines = redactor.feed(lines)
            if not lines:
                return
        if self._crash_pattern is not None and direction == "received":
            host = where.partition("/")[0]
            if host in self._crash_hosts:
                watch = self._watches.get(host)
                if watch is None:
                    watch = self._watches[host] = _CrashWatch()
                watch.feed(host, lines, self._crash_pattern)
        prefix = f"{_stamp(time.time())} {where} {'>' if direction == 'sent' else '<'} ".encode()
        if not lines.endswith(b"\n"):
            lines += b"\n"
        block = prefix + lines[:-1].replace(b"\n", b"\n" + prefix) + b"\n"
        self._emit(block)

    def _emit(self, block: bytes) -> None:
        if self._header:
            self._written -= len(self._header)
            block, self._header = self._header + block, b""
        room = self.limit - self._written
        if len(block) <= room:
            self._written += len(block)
            if not self._buffer and len(block) >= FLUSH_SIZE:
                self._file.write(block)  # a big chunk: no copy
                return
            self._buffer += block
        else:
            cut = block.rfind(b"\n", 0, room) + 1
            if cut:
                self._buffer += block[:cut]
                self._written += cut
            self._dropped += len(block) - cut
            self._buffer += (
                f"# otto: transcript limit of {self.limit} bytes reached here; "
                "the rest is not kept\n".encode()
            )
        if len(self._buffer) >= FLUSH_SIZE:
            self._write_out()
