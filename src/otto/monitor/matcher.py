"""Matching log lines against a regex without letting one line freeze the monitor.

A log's lines come from the device, not from the user, and Python's ``re``
backtracks: ``^(a+)+$`` against 33 bytes runs for minutes, and while it runs
it holds the GIL, so the event loop (rounds, the dashboard, Ctrl-C) and every
other thread stop. A ``BoundedMatcher`` searches the lines in a worker
process of its own instead (one per watch, started on the first lines, a bare
``python -c`` that imports only ``re``), and gives each line ``limit``
seconds: a line still being matched then is skipped (the caller says so),
the worker is killed and a new one goes on with the next line.

The worker reads the pattern, then batches: a line count and the lines
joined by ``\n`` (a watch's lines never hold one), one write for the whole
batch. It keeps one answer byte per line (``1`` a match, ``0`` none) and
writes the answers of the lines done every ``_FLUSH`` seconds while a batch
runs (an interval timer whose handler Python's ``re`` lets run between its
steps, even inside a search that backtracks), and the rest at the batch's
end: a few writes per batch, not one per line. So when no answer arrives
for ``limit`` seconds, every line before the stuck one has been answered,
and the first line without an answer is the one that is stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["MATCH_LIMIT", "BoundedMatcher", "Matched"]

logger = logging.getLogger("otto.monitor.logwatch")

MATCH_LIMIT = 2.0
"""Seconds one line may take to match before it is skipped."""

_START_LIMIT = 30.0  # a worker's start: an interpreter on a busy machine
_HEADER = struct.Struct(">I")

_FLUSH = 0.005  # seconds between the worker's writes of answers while a batch runs

_WORKER = r"""
import os, re, signal, struct, sys
stdin = sys.stdin.buffer
def read(n):
    data = stdin.read(n)
    if len(data) < n:
        sys.exit(0)
    return data
size = struct.Struct(">I")
pattern = read(size.unpack(read(4))[0]).decode("utf-8", "surrogatepass")
flags = size.unpack(read(4))[0]
search = re.compile(pattern, flags).search
out = bytearray()
sent = 0
busy = False
def flush(*_):
    # Runs from the timer too, between two steps of a search: never twice at once.
    global sent, busy
    if busy:
        return
    busy = True
    try:
        end = len(out)
        while sent < end:
            sent += os.write(1, out[sent:end])
    finally:
        busy = False
signal.signal(signal.SIGALRM, flush)
os.write(1, b"+")
while True:
    count, length = struct.unpack(">II", read(8))
    lines = read(length).decode("utf-8", "surrogatepass").split("\n") if count else []
    out = bytearray()
    sent = 0
    append = out.append
    signal.setitimer(signal.ITIMER_REAL, FLUSH, FLUSH)
    for line in lines:
        append(49 if search(line) is not None else 48)
    signal.setitimer(signal.ITIMER_REAL, 0)
    flush()
""".replace("FLUSH", repr(_FLUSH))


@dataclass
class Matched:
    """What ``BoundedMatcher.search`` found in a batch: indexes into it."""

    hits: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    """Lines given up on: they took more than the limit (or killed the worker)."""


def _encode(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return _HEADER.pack(len(data)) + data


_BATCH_HEADER = struct.Struct(">II")  # lines, bytes


class BoundedMatcher:
    """Searches lines for ``pattern`` in a worker process, each within ``limit`` seconds.

    Args:
        pattern: the compiled regex (its flags too are used).
        limit: seconds a line may take.
    """

    def __init__(self, pattern: re.Pattern[str], *, limit: float = MATCH_LIMIT) -> None:
        if not limit > 0:
            raise ValueError(f"the match limit must be above 0 seconds, got {limit!r}")
        self.pattern = pattern
        self.limit = limit
        self._proc: asyncio.subprocess.Process | None = None
        self._abandoned: list[asyncio.subprocess.Process] = []
        self.restarts = 0
        """Workers killed for a line that took too long (or that died)."""

    async def search(self, lines: Sequence[str]) -> Matched:
        """Which of ``lines`` match, and which were skipped; in order, one batch at a time.

        Raises:
            ValueError: a line holds a ``\\n`` (lines are sent joined by it).
        """
        found = Matched()
        if not lines:
            return found
        joined = "\n".join(lines)
        if joined.count("\n") != len(lines) - 1:
            raise ValueError("a line given to the regex worker holds a newline")
        start = 0
        while start < len(lines):
            proc = await self._worker()
            assert proc.stdin is not None and proc.stdout is not None
            batch = lines[start:]
            data = (joined if start == 0 else "\n".join(batch)).encode("utf-8", "surrogatepass")
            proc.stdin.write(_BATCH_HEADER.pack(len(batch), len(data)))
            proc.stdin.write(data)
            del data
            done = 0
            try:
                await proc.stdin.drain()
                while done < len(batch):
                    async with asyncio.timeout(self.limit):
                        answer = await proc.stdout.read(len(batch) - done)
                    if not answer:
                        raise EOFError
                    base = start + done
                    hit = answer.find(49)  # b"1"
                    while hit >= 0:
                        found.hits.append(base + hit)
                        hit = answer.find(49, hit + 1)
                    done += len(answer)
                start += done
            except BaseException as exc:
                if not isinstance(exc, TimeoutError | EOFError | ConnectionError):
                    # Cancelled mid-batch: the worker's answers would be read as the
                    # next batch's. It goes; close() waits for it.
                    self._abandon()
                    raise
                stuck = start + done
                found.skipped.append(stuck)
                why = "took too long" if isinstance(exc, TimeoutError) else "ended the worker"
                logger.info("a line %s to match %r: skipped", why, self.pattern.pattern)
                await self._kill()
                self.restarts += 1
                start = stuck + 1
        return found

    async def _worker(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self._proc.returncode is None:
            return self._proc
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            "-c",
            _WORKER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(_encode(self.pattern.pattern) + _HEADER.pack(self.pattern.flags))
        try:
            async with asyncio.timeout(_START_LIMIT):
                await proc.stdin.drain()
                ready = await proc.stdout.readexactly(1)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            await self._kill()
            raise OSError(f"the regex worker did not start: {type(exc).__name__}") from None
        if ready != b"+":
            await self._kill()
            raise OSError(f"the regex worker said {ready!r} on starting")
        return proc

    def _abandon(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            self._abandoned.append(proc)

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if proc.stdin is not None:
            proc.stdin.close()
        await proc.wait()

    async def close(self) -> None:
        """End the worker (a new one starts if ``search`` is called again)."""
        await self._kill()
        abandoned, self._abandoned = self._abandoned, []
        for proc in abandoned:
            if proc.stdin is not None:
                proc.stdin.close()
            await proc.wait()
