"""A test's ``transcript.log``: its commands as a session reads, without otto's framing.

Each command the test ran, as the test wrote it, then its output, then how it
ended::

    2024-06-01T12:00:00.123456Z web1/default $ uname -r
    6.1.0
    # exit 0 (0.012 s)

The bytes otto really sent and received (its framing, markers, consoles'
chatter) are in ``transcript.raw.log`` beside it (:mod:`otto.testing.transcript`).
What a stream received after its last command ended, and was never claimed by
another one (a command still running when the test ended, a console printing
by itself), is written at the end with a note, its framing lines left out.

Secrets are masked on the way to the file (:mod:`otto.testing.evidence`). The
file stops growing at ``limit`` bytes, as the raw transcript does.

The file (and its folder) is made at the first write, in few system calls:
each command's entry is written whole when the command ends (the first with
the header), and a stream that received bytes makes the file, with its header,
at the latest ``FLUSH_AFTER`` seconds later (a command still running when the
process is killed leaves a transcript.log to link to). Unclaimed output is
written at :meth:`SessionLog.close`.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Literal

from otto import redact
from otto.result import CommandStatus, Status
from otto.testing.evidence import ENCODING_ERRORS
from otto.testing.transcript import DEFAULT_LIMIT, _Sink, _stamp, flush_later

__all__ = ["RAW_NAME", "SessionLog"]

RAW_NAME = "transcript.raw.log"
"""The raw transcript's file name, beside ``transcript.log``."""

_PENDING_LIMIT = 64 * 1024
"""Bytes of unclaimed output kept per stream (the tail)."""
_FRAMING = re.compile(r"__oc=|__os=|__oi\b|__or\b|__om\b|\x1e[^\x1f]*\x1f?")


def _ending(status: CommandStatus) -> str:
    took = f"{status.duration:.3f} s"
    if status.timed_out:
        why = f": {status.error}" if status.error else ""
        return f"# timed out after {took}, interrupted{why}"
    if status.status is Status.Error:
        return f"# error after {took}: {status.error or 'no exit status'}"
    return f"# exit {status.retcode} ({took})"


def _unframed(data: bytes) -> str:
    """Received bytes without otto's framing lines (echoed set-up, end markers)."""
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    lines = [line for line in text.split("\n") if not _FRAMING.search(line)]
    return "\n".join(lines).strip("\n")


class SessionLog:
    """Writes ``transcript.log``: fed each command's ``CommandStatus`` (``command``) and the
    received bytes of every stream (``tap``, for what no command claimed).

    Args:
        path: the file (created, with its folder, at the first write; replaced if there).
        limit: bytes the file may hold before the rest is only counted.
        title: said on the first line.
    """

    def __init__(self, path: Path, *, limit: int = DEFAULT_LIMIT, title: str = "") -> None:
        self.path = path
        self.limit = limit
        self._lock = threading.Lock()
        self._pending: dict[str, bytes] = {}
        self._written = 0
        self._dropped = 0
        self._closed = False
        self._file = _Sink(path)
        self._buffer = bytearray()
        self._timer = False
        self._write(
            f"# otto transcript{': ' + title if title else ''}\n"
            f"# each command as the test ran it, its output, how it ended; every byte "
            f"sent and received is in {RAW_NAME}\n"
        )

    @property
    def dropped(self) -> int:
        """Bytes not written because the limit was reached."""
        return self._dropped

    def tap(self, where: str, direction: Literal["sent", "received"], data: bytes) -> None:
        """A host tap's chunk: received bytes are kept until a command of the stream ends."""
        if direction != "received" or not data:
            return
        with self._lock:
            if not self._closed:
                kept = self._pending.get(where, b"") + data
                self._pending[where] = kept[-_PENDING_LIMIT:]
                if not self._file.made and not self._timer:
                    self._timer = flush_later(self._make_file)
                    if not self._timer:
                        self._flush()

    def _make_file(self) -> None:
        with self._lock:
            self._timer = False
            if not self._closed:
                self._flush()

    def command(self, status: CommandStatus) -> None:
        """A command ended: write it, its output and how it ended."""
        where = f"{status.host}/{status.session or 'oneshot'}"
        lines = status.command.split("\n")
        text = f"{_stamp(status.started or time.time())} {where} $ {lines[0]}\n"
        text += "".join(f"> {line}\n" for line in lines[1:])
        if status.output:
            text += status.output + ("" if status.output.endswith("\n") else "\n")
        text += _ending(status) + "\n\n"
        with self._lock:
            if self._closed:
                return
            self._pending.pop(where, None)
            self._write(text)
            self._flush()

    def note(self, text: str) -> None:
        """A line of otto's own (``# text``)."""
        with self._lock:
            if not self._closed:
                self._write(f"# {text}\n")
                self._flush()

    def close(self) -> None:
        """Write what no command claimed and the note on the limit; close the file."""
        with self._lock:
            if self._closed:
                return
            for where, data in self._pending.items():
                shown = _unframed(data)
                if shown:
                    self._write(
                        f"{_stamp(time.time())} {where}: received, and no command of it "
                        f"ended after (still running when the test ended?):\n{shown}\n"
                        f"# see {RAW_NAME} for every byte\n\n"
                    )
            self._pending.clear()
            if self._dropped:
                self._buffer += (
                    f"# otto: transcript limit of {self.limit} bytes reached; "
                    f"{self._dropped} more bytes were not kept\n"
                ).encode()
            self._flush()
            self._closed = True
            self._file.close()

    def _flush(self) -> None:
        if self._buffer:
            self._file.write(self._buffer)
            self._buffer = bytearray()

    def _write(self, text: str) -> None:
        """Buffer ``text``, redacted, up to the limit (:meth:`_flush` writes it)."""
        if self._dropped:
            self._dropped += len(text.encode("utf-8", ENCODING_ERRORS))
            return
        size = len(text.encode("utf-8", ENCODING_ERRORS))
        room = self.limit - self._written
        if size <= room:
            self._buffer += redact.redact(text).encode("utf-8", ENCODING_ERRORS)
            self._written += size
            return
        cut = text.rfind("\n", 0, max(0, room)) + 1
        kept = text[:cut].encode("utf-8", ENCODING_ERRORS)
        if cut:
            self._buffer += redact.redact(text[:cut]).encode("utf-8", ENCODING_ERRORS)
            self._written += len(kept)
        self._dropped += size - len(kept)
        self._buffer += (
            f"# otto: transcript limit of {self.limit} bytes reached here; the rest is not kept\n"
        ).encode()
