"""Log events: each new line of a file on a host that matches a regex, on the timeline.

A ``LogWatch`` follows one file on one host (``Collector.watch_log`` makes one
and starts and stops it with the collector; ``otto monitor --watch`` too):

- **How.** The watch opens a session of its own on the host (never the one
  the metric rounds use), asks ``stat`` which file the path is and how long,
  then runs ``tail -F -c +N -- PATH`` there: three processes for the life of
  the watch (the session's shell, ``tail``, and a subshell whose loop of
  builtins marks tail's own messages), nothing started per line or per
  round. Closing the watch closes that session, which ends ``tail`` and
  everything else the session started. A host with a single stream (a
  console) is refused: the watch would hold the console forever.
- **The path** is taken as it is (quoted for the shell: no ``~`` or glob
  expansion; a relative path starts at the login directory), and may start
  with ``-``.
- **Matching.** Lines are matched in otto (``re.search``, Python's dialect),
  never on the target. A line is what ends in ``\\n``; a trailing ``\\r`` is
  dropped, invalid UTF-8 is replaced. The matching runs in a worker process
  of the watch's own (``otto.monitor.matcher``), ``match_limit`` seconds at
  most per line: a line that takes longer (a regex that backtracks without
  end on what the device wrote) is skipped, with an event that says so, and
  the monitor goes on. Lines waiting to be matched are bounded too
  (``MAX_WAITING`` characters): past that they are counted in one event, not
  matched.
- **Rotation.** ``tail -F`` follows the name: a file renamed away and created
  again, deleted and created again, or truncated is read from its start
  (GNU coreutils). BusyBox's ``tail -F`` follows renamed and recreated files
  but does not notice a truncation: it reads on from its old offset.
- **Reconnects.** When the session drops (the link was cut, sshd died, tail was
  killed) the watch starts over on a fresh session, retrying with a back-off
  from ``retry[0]`` to ``retry[1]`` seconds. It resumes where it stopped when it
  can be sure where that is: the file is the same one (same device and
  inode), at least as long as what was read, and no rotation or truncation
  happened since the watch last (re)started. Then lines written during the
  outage become events too. A file replaced or truncated during the outage is
  read from its start (lines appended to the old file after the cut are lost;
  a file truncated and grown past the old offset again looks unchanged, and
  is resumed at the old offset).
  When the position is not known for sure (tail reported a rotation or
  truncation earlier, or the host has no ``stat``), the watch resumes at the
  current end of the file, like ``tail -n 0``: lines of the outage are lost,
  never duplicated.
- **Rate limit.** Matches pass a token bucket per watch (``burst`` events at
  once, ``rate`` per second after that). A match over the limit is counted,
  not stored; within ``summary_interval`` seconds of the first such match one
  event "N more matches of LABEL suppressed" (with the last suppressed line)
  says how many, and stopping the watch says the rest. So while a log storms,
  a watch adds at most ``burst + rate * t + t / summary_interval + 1`` events
  in ``t`` seconds, and every match is either an event or counted in one.
  The defaults (20 at once, then one each 2 s, a summary each 10 s) keep a
  storm that lasts a day under 52,000 events.
- **Long lines.** The first ``line_cap`` bytes (4 KiB) of a line are kept and
  matched; the rest is read past and counted, and the event's line ends with
  ``[cut: N more bytes]``. A 10 MB line costs 4 KiB of memory.

``parse_watch`` reads the ``HOST:PATH:REGEX`` form of ``otto monitor --watch``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import importlib
import logging
import re
import secrets
import shlex
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress, repeat
from operator import contains
from pathlib import PurePosixPath
from typing import Any, Protocol, runtime_checkable

from otto.errors import OttoError
from otto.loop import cancel_and_wait
from otto.monitor.matcher import MATCH_LIMIT, BoundedMatcher, Matched
from otto.periodic import Clock, SystemClock
from otto.session import Session

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_RATE",
    "DEFAULT_SUMMARY_INTERVAL",
    "LINE_CAP",
    "MAX_WAITING",
    "Fed",
    "LineSplitter",
    "LogWatch",
    "Position",
    "RateLimiter",
    "WatchHost",
    "WatchSpec",
    "follow_command",
    "parse_watch",
    "plan_start",
    "required_literal",
    "shown",
    "stat_command",
]

logger = logging.getLogger("otto.monitor.logwatch")

LINE_CAP = 4096
"""Bytes of a line kept (and matched); the rest is read past and counted."""

DEFAULT_BURST = 20
"""Events a watch may add at once before the rate limit holds them back."""

DEFAULT_RATE = 0.5
"""Events per second a watch may add in a long run of matches."""

DEFAULT_SUMMARY_INTERVAL = 10.0
"""Seconds between the first suppressed match and the event that counts them."""

DEFAULT_RETRY = (0.5, 5.0)
"""First and longest wait, in seconds, before following the file again after a drop."""

MAX_WAITING = 16 << 20
"""Characters of lines read and not yet matched a watch keeps; more are counted, not matched."""

_MATCH_BATCH = 50_000  # lines sent to the worker at once

_GATHER = 0.002
"""Seconds the matching waits for more lines when few are waiting: a burst comes in reads
of a few KiB, and a batch per read cost a round trip to the worker each."""

_DRAIN_LIMIT = 5.0  # seconds stop() lets the lines already read be matched

_NOTE_CAP = 1024


@runtime_checkable
class WatchHost(Protocol):
    """What a watch needs of a host: its name, and a session nobody else uses."""

    @property
    def name(self) -> str:
        """The host's name, for events and messages."""
        ...

    def private_session(self, purpose: str, *, raw: bool = False) -> Session:
        """A new session that the caller owns and closes."""
        ...


# --- the --watch argument ------------------------------------------------------------------


@dataclass(frozen=True)
class WatchSpec:
    """One ``--watch HOST:PATH:REGEX``: which file on which host, and which lines."""

    host: str
    path: str
    pattern: str


def parse_watch(text: str) -> WatchSpec:
    """Read ``HOST:PATH:REGEX``.

    HOST ends at the first ``:`` (host names hold none). PATH ends at the next
    ``:`` that is not written ``\\:``; ``\\:`` in PATH stands for a ``:`` of the
    file's name, and every other backslash is kept. REGEX is all the rest, as
    it is: it may hold any number of ``:`` (``ERROR: (?:disk|net)``). An empty
    REGEX matches every line.

    Raises:
        ValueError: a part is missing or empty, or REGEX is not a valid
            Python regular expression; the message says which and shows ``text``.
    """
    host, sep, rest = text.partition(":")
    if not sep:
        raise ValueError(f"--watch {text!r}: expected HOST:PATH:REGEX (no ':' in it)")
    if not host:
        raise ValueError(f"--watch {text!r}: expected HOST:PATH:REGEX (no HOST before ':')")
    path_chars: list[str] = []
    index = 0
    found = False
    while index < len(rest):
        char = rest[index]
        if char == "\\" and rest.startswith(":", index + 1):
            path_chars.append(":")
            index += 2
            continue
        if char == ":":
            found = True
            break
        path_chars.append(char)
        index += 1
    path = "".join(path_chars)
    if not found:
        raise ValueError(
            f"--watch {text!r}: expected HOST:PATH:REGEX (no ':' between PATH and REGEX)"
        )
    if not path:
        raise ValueError(f"--watch {text!r}: the PATH is empty")
    pattern = rest[index + 1 :]
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"--watch {text!r}: REGEX {pattern!r} is not valid: {exc}") from None
    return WatchSpec(host, path, pattern)


# --- what every match holds ---------------------------------------------------------------

_parser: Any = importlib.import_module("re._parser")
_LITERAL: Any = importlib.import_module("re._constants").LITERAL


def required_literal(pattern: re.Pattern[str]) -> str:
    """The longest text that every match of ``pattern`` holds ("" if none is known).

    Read from the pattern's top level only (a sequence every match goes
    through in order), where a run of plain characters is needed as it is:
    ``ERROR \\d+`` gives ``"ERROR "``; an alternation, a group, a repeat or a
    class ends a run. Never for a pattern matched regardless of case.
    """
    if pattern.flags & re.IGNORECASE:
        return ""
    try:
        items = list(_parser.parse(pattern.pattern, pattern.flags))
    except Exception:  # a pattern this parser reads otherwise: no shortcut
        return ""
    best = run = ""
    for op, value in items:
        if op is _LITERAL and isinstance(value, int):
            run += chr(value)
            if len(run) > len(best):
                best = run
        else:
            run = ""
    return best


# --- reading the stream --------------------------------------------------------------------


def shown(text: str, cut: int) -> str:
    """A line as an event shows it: its kept text, marked when ``cut`` bytes were dropped."""
    return text if not cut else f"{text} [cut: {cut} more bytes]"


@dataclass
class Fed:
    """What one read of the stream held, once split."""

    lines: list[str]
    """The file's lines that ended in this read (kept text, no ``\\n``)."""
    cut: dict[int, int]
    """``{index in lines: bytes dropped past the cap}`` for the lines that were cut."""
    notes: list[str]
    """tail's own messages (and the watch's ``end``)."""
    size: int = 0
    """Characters of ``lines``, each counted with one more for its end."""


class LineSplitter:
    """Splits what ``tail`` sends into the file's lines and tail's own messages.

    The remote shell prints each of tail's messages (stderr) as a line that
    starts with ``marker``; such a line may land in the middle of a line of
    the file (both share one stream), so it is cut out wherever it starts.
    Memory stays bounded: a line keeps its first ``cap`` bytes, a message its
    first 1 KiB. ``content_bytes`` counts the bytes of the file seen so far.
    Lines are decoded as UTF-8 (invalid bytes replaced) and lose a trailing ``\\r``.
    """

    def __init__(self, marker: bytes, cap: int = LINE_CAP) -> None:
        if not marker or cap < 1:
            raise ValueError("a splitter needs a marker and a cap of at least 1 byte")
        self._marker = marker
        self._cap = cap
        self._carry = b""
        self._kept = bytearray()
        self._dropped = 0
        self._in_note = False
        self._note = bytearray()
        self.content_bytes = 0

    @property
    def partial(self) -> int:
        """Bytes of the line not yet ended (read past, kept or not)."""
        return len(self._kept) + self._dropped

    def feed(self, data: bytes) -> Fed:
        """The complete lines and messages in ``data`` (with what came before it)."""
        fed = Fed([], {}, [])
        buf = self._carry + data if self._carry else data
        self._carry = b""
        pos = 0
        size = len(buf)
        marker = self._marker
        while pos < size:
            if self._in_note:
                end = buf.find(b"\n", pos)
                stop = size if end < 0 else end
                room = _NOTE_CAP - len(self._note)
                if room > 0:
                    self._note += buf[pos : min(stop, pos + room)]
                if end < 0:
                    break
                fed.notes.append(self._note.decode("utf-8", "replace").rstrip("\r"))
                self._note.clear()
                self._in_note = False
                pos = end + 1
                continue
            found = buf.find(marker, pos)
            if found < 0:
                held = self._marker_start(buf, pos)
                self._content(buf, pos, size - held, fed)
                self._carry = buf[size - held :]
                break
            self._content(buf, pos, found, fed)
            self._in_note = True
            pos = found + len(marker)
        return fed

    def _marker_start(self, buf: bytes, pos: int) -> int:
        """How many bytes at the end of ``buf`` could begin a marker cut by the read."""
        size = len(buf)
        longest = min(len(self._marker) - 1, size - pos)
        if longest <= 0 or buf.find(self._marker[:1], size - longest) < 0:
            return 0
        for length in range(longest, 0, -1):
            if self._marker.startswith(buf[size - length :]):
                return length
        return 0

    def _content(self, buf: bytes, start: int, stop: int, fed: Fed) -> None:
        if stop <= start:
            return
        self.content_bytes += stop - start
        last = buf.rfind(b"\n", start, stop)
        if last < 0:
            self._keep(buf, start, stop)
            return
        if self._kept or self._dropped:
            first = buf.find(b"\n", start, last + 1)
            self._keep(buf, start, first)
            self._finish(fed)
            start = first + 1
        if start <= last:
            # The lines between here and the last newline, in a few calls into C;
            # only a block holding a line over the cap is taken line by line.
            block = buf[start:last]
            if b"\r" in block:
                block = block.replace(b"\r\n", b"\n")
                if block.endswith(b"\r"):
                    block = block[:-1]
            decoded = block.decode("utf-8", "replace")
            text = decoded.split("\n")
            # A line of at most cap / 4 characters has at most cap bytes: the
            # usual case needs no split of the bytes to know no line is too long.
            if (
                len(block) <= self._cap
                or max(map(len, text)) <= self._cap // 4
                or max(map(len, block.split(b"\n"))) <= self._cap
            ):
                fed.lines.extend(text)
                fed.size += len(decoded) + 1
            else:
                for raw in block.split(b"\n"):
                    if len(raw) <= self._cap:
                        line = raw.decode("utf-8", "replace")
                        fed.lines.append(line)
                        fed.size += len(line) + 1
                    else:
                        self._kept += raw[: self._cap]
                        self._dropped = len(raw) - self._cap
                        self._finish(fed)
        self._keep(buf, last + 1, stop)

    def _keep(self, buf: bytes, start: int, stop: int) -> None:
        take = min(self._cap - len(self._kept), stop - start)
        if take > 0:
            self._kept += buf[start : start + take]
        self._dropped += stop - start - max(take, 0)

    def _finish(self, fed: Fed) -> None:
        """End the line being kept."""
        raw, dropped = bytes(self._kept), self._dropped
        self._kept.clear()
        self._dropped = 0
        if dropped:
            # The cut may split a character: an incremental decoder leaves the half out.
            text = codecs.getincrementaldecoder("utf-8")("replace").decode(raw, final=False)
            fed.cut[len(fed.lines)] = dropped + len(raw) - len(text.encode("utf-8", "replace"))
            fed.lines.append(text)
            fed.size += len(text) + 1
            return
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        line = raw.decode("utf-8", "replace")
        fed.lines.append(line)
        fed.size += len(line) + 1


# --- the rate limit ------------------------------------------------------------------------


class RateLimiter:
    """A token bucket: ``burst`` tokens, refilled at ``rate`` per second; a match takes one.

    Raises:
        ValueError: ``rate`` not above 0 or ``burst`` below 1.
    """

    def __init__(self, *, rate: float, burst: int, clock: Clock) -> None:
        if not rate > 0:
            raise ValueError(f"a log watch's rate must be above 0 per second, got {rate!r}")
        if burst < 1:
            raise ValueError(f"a log watch's burst must be at least 1, got {burst!r}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()

    def admit(self) -> bool:
        """Take a token if there is one."""
        return self.take(1) == 1

    def take(self, wanted: int) -> int:
        """Take up to ``wanted`` tokens; return how many there were."""
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        taken = min(wanted, int(self._tokens))
        self._tokens -= taken
        return taken


# --- what runs on the host -----------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where the watch is in the file: which file (``device:inode``) and the byte offset."""

    file_id: str
    offset: int


def stat_command(path: str) -> str:
    """Prints ``device:inode size`` of ``path``, ``missing``, or ``unknown`` (no usable stat)."""
    quoted = shlex.quote(path)
    return (
        f'p={quoted}; if [ -e "$p" ]; then '
        f"stat -L -c '%d:%i %s' -- \"$p\" 2>/dev/null || echo unknown; "
        "else echo missing; fi"
    )


def plan_start(answer: str, previous: Position | None) -> tuple[str, Position | None, str]:
    """Where ``tail`` starts, from ``stat_command``'s ``answer`` and the last sure position.

    Returns ``(tail's start option, the position at that start or None when
    it is not known, why)``.
    """
    words = answer.strip().splitlines()[-1].split() if answer.strip() else []
    current: tuple[str, int] | None = None
    if len(words) == 2 and words[1].isdigit() and ":" in words[0]:
        current = (words[0], int(words[1]))
    missing = words == ["missing"]
    if previous is not None:
        if missing:
            return "-c +1", None, "the file is gone: following it from its start once it is back"
        if current is not None and current[0] == previous.file_id:
            if current[1] >= previous.offset:
                return (
                    f"-c +{previous.offset + 1}",
                    previous,
                    f"resuming at byte {previous.offset}",
                )
            return (
                "-c +1",
                Position(current[0], 0),
                "the file was truncated: reading from its start",
            )
        if current is not None:
            return "-c +1", Position(current[0], 0), "the file was replaced: reading the new one"
    if missing:
        return "-c +1", None, "the file does not exist yet: following it from its start"
    if current is not None:
        return f"-c +{current[1] + 1}", Position(*current), f"following from byte {current[1]}"
    return "-n 0", None, "no usable stat on the host: following from the end"


def follow_command(path: str, start: str, token: str) -> str:
    """``tail -F`` of ``path`` from ``start``, its messages marked, and an end mark after it.

    tail's stderr goes through a loop of shell builtins that prints each
    message as ``\\037lw-TOKEN:message``; tail's stdout (the file) goes straight
    to the stream. When tail ends, ``\\037lw-TOKEN:end`` follows.
    """
    quoted = shlex.quote(path)
    mark = f"\\037lw-{token}:"
    return (
        f"{{ tail -F {start} -- {quoted} 2>&1 >&3 3>&- | "
        f"while IFS= read -r l; do printf '{mark}%s\\n' \"$l\"; done; }} 3>&1; "
        f"printf '{mark}end\\n'\n"
    )


# --- the watch -----------------------------------------------------------------------------

Emit = Callable[[str, str], None]
"""Called with ``(label, line)`` for each event the watch adds."""


class LogWatch:
    """Follows ``path`` on ``host`` and calls ``emit`` for each new line ``pattern`` matches.

    ``start`` and ``stop`` it on the event loop (a ``Collector`` does). See the
    module's docstring for rotation, reconnects, the rate limit and long lines.

    Args:
        host: the host (a ``Host``: anything with ``name`` and ``private_session``).
        path: the file on the host.
        pattern: a Python regex, searched in each line.
        label: the events' label (default ``"NAME ~ PATTERN"``, NAME the
            file's last component).
        emit: called with ``(label, line)`` for each event.
        clock: for the rate limit, the summaries and the back-off.
        rate, burst, summary_interval: the rate limit (see the module's docstring).
        line_cap: bytes of a line kept and matched.
        retry: first and longest wait before following the file again after a drop.
        match_limit: seconds one line may take to match before it is skipped.

    Raises:
        ValueError: a bad pattern, path, rate limit or cap, or a one-stream host.
    """

    def __init__(
        self,
        host: WatchHost,
        path: str,
        pattern: str | re.Pattern[str],
        *,
        emit: Emit,
        label: str | None = None,
        clock: Clock | None = None,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        summary_interval: float = DEFAULT_SUMMARY_INTERVAL,
        line_cap: int = LINE_CAP,
        retry: tuple[float, float] = DEFAULT_RETRY,
        match_limit: float = MATCH_LIMIT,
    ) -> None:
        if not path:
            raise ValueError(f"{host.name}: a log watch needs a file path")
        if "\0" in path or "\n" in path:
            raise ValueError(f"{host.name}: a log watch's path {path!r} holds a NUL or a newline")
        if getattr(host, "one_stream", False):
            raise ValueError(
                f"{host.name}: has a single stream (a console); a log watch would hold "
                "it for good and starve the metric rounds: watch the log over SSH instead"
            )
        try:
            self._regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        except re.error as exc:
            raise ValueError(f"{host.name}: bad log watch regex {pattern!r}: {exc}") from None
        if line_cap < 1:
            raise ValueError(f"line_cap must be at least 1 byte, got {line_cap!r}")
        if not summary_interval > 0:
            raise ValueError(f"summary_interval must be above 0, got {summary_interval!r}")
        if not 0 < retry[0] <= retry[1]:
            raise ValueError(f"retry must be (first, longest) with 0 < first <= longest: {retry!r}")
        self._host = host
        self.path = path
        self.label = (
            label if label else f"{PurePosixPath(path).name or path} ~ {self._regex.pattern}"
        )
        self._emit = emit
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._limiter = RateLimiter(rate=rate, burst=burst, clock=self._clock)
        self._summary_interval = float(summary_interval)
        self._line_cap = line_cap
        self._retry = retry
        self._matcher = BoundedMatcher(self._regex, limit=match_limit)
        self._literal = required_literal(self._regex)
        self._waiting: deque[tuple[list[str], dict[int, int], int]] = deque()
        self._waiting_lines = 0
        self._waiting_size = 0
        self._behind = 0
        self._behind_line = ""
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._matching: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._summary: asyncio.Task[None] | None = None
        self._pending = 0
        self._pending_line = ""
        self._position: Position | None = None
        self._sure = False
        self._splitter: LineSplitter | None = None
        self._following = False
        self._follows = 0
        self._follow_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.lines = 0
        """Lines of the file read so far."""
        self.matched = 0
        """Lines that matched, whether they became events or were suppressed."""
        self.suppressed = 0
        """Matches over the rate limit (each counted in a summary event)."""
        self.skipped = 0
        """Lines not matched: too slow to match, or read while too many waited."""
        self.restarts = 0
        """Times the watch started following the file again after a drop."""
        self.last_note = ""
        """tail's latest message, or why the watch last had to start over."""

    @property
    def host_name(self) -> str:
        return self._host.name

    @property
    def pattern(self) -> str:
        return self._regex.pattern

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._task is not None and not self._task.done()

    @property
    def following(self) -> bool:
        """True while ``tail`` runs on the host and its output reaches the watch."""
        return self._following

    @property
    def follows(self) -> int:
        """Times ``tail`` was started on the host (1 + the restarts that got that far)."""
        return self._follows

    async def wait_following(self, count: int = 1) -> None:
        """Return once ``tail`` has been started ``count`` times and still runs.

        Lines written to the file from then on are seen (``tail`` starts at the
        size ``stat`` gave; on a host without ``stat``, at the end of the file
        when tail opens it, a moment later). Wrap it in a timeout: it waits for
        as long as the host cannot be reached.
        """
        while not (self._following and self._follows >= count):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._follow_waiters.append((count, waiter))
            try:
                await waiter
            finally:
                self._follow_waiters = [w for w in self._follow_waiters if w[1] is not waiter]

    async def wait_matched(self) -> None:
        """Return once every line read so far has been matched (and its event added).

        The lines are matched in a worker process, a moment after they are read.
        """
        if self._idle is not None and self._matching is not None:
            await self._idle.wait()

    def _set_following(self, following: bool) -> None:
        self._following = following
        if not following:
            return
        self._follows += 1
        for count, waiter in self._follow_waiters:
            if count <= self._follows and not waiter.done():
                waiter.set_result(None)

    def __repr__(self) -> str:
        return f"<LogWatch {self.host_name}:{self.path} ~ {self.pattern!r}>"

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start following the file (on the running event loop).

        Raises:
            RuntimeError: already running.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        # Started again after a stop: new lines from now on, not the gap's.
        self._sure = False
        loop = asyncio.get_running_loop()
        self._wake, self._idle = asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._matching = loop.create_task(
            self._match_lines(), name=f"otto logwatch matching {self.host_name}:{self.path}"
        )
        self._task = loop.create_task(
            self._run(), name=f"otto logwatch {self.host_name}:{self.path}"
        )

    async def stop(self) -> None:
        """End ``tail`` on the host and its session; report the matches still held back."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
            if not task.cancelled() and task.exception() is not None:
                logger.error("%r had crashed", self, exc_info=task.exception())
        matching, self._matching = self._matching, None
        if matching is not None:
            # The lines read before the stop are matched (for a while at most).
            if self._idle is not None and not matching.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_DRAIN_LIMIT):
                        await self._idle.wait()
            await cancel_and_wait(matching)
            if not matching.cancelled() and matching.exception() is not None:
                logger.error("%r: matching had crashed", self, exc_info=matching.exception())
            self._behind += self._waiting_lines
            self._waiting.clear()
            self._waiting_lines = self._waiting_size = 0
            self._report_behind()
        await self._matcher.close()
        summary, self._summary = self._summary, None
        if summary is not None:
            await cancel_and_wait(summary)
        self._flush()

    # --- following ---------------------------------------------------------------------------

    async def _run(self) -> None:
        clock = self._clock
        wait = self._retry[0]
        first = True
        quiet = False
        while True:
            began = clock.monotonic()
            follows = self._follows
            try:
                reason = await self._follow(first)
            except (OttoError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:
                logger.warning("%r: unexpected failure", self, exc_info=True)
                reason = f"{type(exc).__name__}: {exc}"
            first = False
            self.last_note = reason
            if clock.monotonic() - began > self._retry[1]:
                wait = self._retry[0]
            # One warning per outage: the attempts that fail after it are debug.
            quiet = quiet and self._follows == follows
            logger.log(
                logging.DEBUG if quiet else logging.WARNING,
                "%s: watching %s: %s; following it again in %gs",
                self.host_name,
                self.path,
                reason,
                wait,
            )
            quiet = True
            await clock.sleep_until(clock.monotonic() + wait)
            wait = min(wait * 2, self._retry[1])
            self.restarts += 1

    async def _follow(self, first: bool) -> str:
        """Follow the file on a fresh session until it drops; return why it ended."""
        session = self._host.private_session("logwatch")
        ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        remove: Callable[[], None] | None = None
        try:
            await session.start()
            answer = (await session.run(stat_command(self.path), timeout=30.0)).only
            if answer.error:
                return f"stat of {self.path} failed: {answer.error}"
            previous = self._resume_point()
            start, position, why = plan_start(answer.output, previous)
            token = secrets.token_hex(8)
            self._splitter = LineSplitter(f"\x1flw-{token}:".encode(), self._line_cap)
            self._position = position
            self._sure = position is not None
            if first:
                logger.info("%s: watching %s: %s", self.host_name, self.path, why)
            else:
                logger.info("%s: watching %s again: %s", self.host_name, self.path, why)
            remove = session.add_listener(lambda data: self._received(data, ended), consume=True)
            await session.send(follow_command(self.path, start, token))
            self._set_following(True)
            return await ended
        finally:
            self._set_following(False)
            if remove is not None:
                remove()
            await session.close()

    def _resume_point(self) -> Position | None:
        """Where to start again: the start of the line cut by the drop, if the position is sure."""
        position, splitter = self._position, self._splitter
        if not self._sure or position is None:
            return None
        partial = 0 if splitter is None else splitter.partial
        return Position(position.file_id, max(0, position.offset - partial))

    def _received(self, data: bytes, ended: asyncio.Future[str]) -> None:
        if ended.done():
            return
        if not data:
            ended.set_result("the connection to the host dropped")
            return
        splitter = self._splitter
        assert splitter is not None
        fed = splitter.feed(data)
        if fed.lines:
            self._queue(fed.lines, fed.cut, fed.size)
        for note in fed.notes:
            if note == "end":
                ended.set_result(f"tail ended ({self.last_note or 'it said nothing'})")
                return
            # tail speaks only when the file changed under it (or cannot be read):
            # from now on the byte count no longer says where in which file it is.
            self._sure = False
            self.last_note = note
            logger.info("%s: watching %s: %s", self.host_name, self.path, note)
        if self._sure and self._position is not None:
            self._position = Position(
                self._position.file_id, self._position.offset + splitter.content_bytes
            )
            splitter.content_bytes = 0

    def _queue(self, lines: list[str], cut: dict[int, int], size: int) -> None:
        """Hand lines just read to the matching task (never matched here: see the matcher).

        ``size`` is their characters, each line counted with one more (``Fed.size``).
        """
        self.lines += len(lines)
        if self._waiting_size + size > MAX_WAITING:
            self._behind += len(lines)
            self._behind_line = shown(lines[-1], cut.get(len(lines) - 1, 0))
            return
        self._waiting.append((lines, cut, size))
        self._waiting_lines += len(lines)
        self._waiting_size += size
        if self._wake is not None and self._idle is not None:
            self._idle.clear()
            self._wake.set()

    def _next_batch(self) -> tuple[list[str], dict[int, int], int]:
        """The lines waiting (up to ``_MATCH_BATCH``, whole reads) as one batch, and its size."""
        lines: list[str] = []
        cut: dict[int, int] = {}
        size = 0
        while self._waiting and (
            not lines or len(lines) + len(self._waiting[0][0]) <= _MATCH_BATCH
        ):
            more, more_cut, more_size = self._waiting.popleft()
            if more_cut:
                cut.update((len(lines) + i, n) for i, n in more_cut.items())
            lines += more
            size += more_size
        return lines, cut, size

    async def _match_lines(self) -> None:
        assert self._wake is not None and self._idle is not None
        while True:
            await self._wake.wait()
            if self._waiting_lines < _MATCH_BATCH:
                await asyncio.sleep(_GATHER)
            self._wake.clear()
            while self._waiting:
                lines, cut, size = self._next_batch()
                try:
                    found = await self._search(lines)
                except asyncio.CancelledError:
                    self._behind += len(lines)  # stopped while these were matched
                    raise
                except OSError as exc:
                    logger.warning("%r: %s", self, exc)
                    self._behind += len(lines)
                    self._behind_line = shown(lines[-1], cut.get(len(lines) - 1, 0))
                    found = Matched()
                finally:
                    self._waiting_lines -= len(lines)
                    self._waiting_size -= size
                self._lines(lines, cut, found)
            self._report_behind()
            if not self._waiting:
                self._idle.set()

    async def _search(self, lines: list[str]) -> Matched:
        """The matcher's answer for ``lines``; only lines holding the pattern's literal go.

        A line without the text every match holds cannot match: it is known not
        to without the worker (and a line that would backtrack is not searched).
        """
        literal = self._literal
        if not literal:
            return await self._matcher.search(lines)
        picked = list(compress(range(len(lines)), map(contains, lines, repeat(literal))))
        if not picked:
            return Matched()
        found = await self._matcher.search([lines[i] for i in picked])
        return Matched([picked[i] for i in found.hits], [picked[i] for i in found.skipped])

    def _report_behind(self) -> None:
        if not self._behind:
            return
        count, self._behind = self._behind, 0
        self.skipped += count
        noun = "line" if count == 1 else "lines"
        self._emit(
            f"{count} {noun} of {self.label} not matched: the watch fell behind",
            self._behind_line,
        )
        self._behind_line = ""

    def _lines(self, lines: list[str], cut: dict[int, int], found: Matched) -> None:
        for i in found.skipped:
            self.skipped += 1
            self._emit(
                f"a line of {self.label} skipped: matching it took over {self._matcher.limit:g}s",
                shown(lines[i], cut.get(i, 0)),
            )
        hits = found.hits
        if not hits:
            return
        self.matched += len(hits)
        # A storm costs one call here, not one per line: the bucket is asked
        # once for as many tokens as there are matches.
        passed = self._limiter.take(len(hits))
        for i in hits[:passed]:
            self._emit(self.label, shown(lines[i], cut.get(i, 0)))
        held = len(hits) - passed
        if not held:
            return
        self.suppressed += held
        self._pending += held
        last = hits[-1]
        self._pending_line = shown(lines[last], cut.get(last, 0))
        if self._summary is None:
            due = self._clock.monotonic() + self._summary_interval
            self._summary = asyncio.get_running_loop().create_task(
                self._summarize(due), name=f"otto logwatch summary {self.host_name}:{self.path}"
            )

    async def _summarize(self, due: float) -> None:
        await self._clock.sleep_until(due)
        self._summary = None
        self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        count, self._pending = self._pending, 0
        noun = "match" if count == 1 else "matches"
        self._emit(f"{count} more {noun} of {self.label} suppressed", self._pending_line)
        self._pending_line = ""
