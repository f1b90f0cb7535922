"""A shell in memory: a test double for the session layer, like ``FakeClock`` for time.

``MemoryShell`` understands otto's framing as a shell would (the set-up, framed
commands, sync lines, the EXIT trap's marker) and hands each command to a
handler the test writes. The test can then make the shell hang, ignore
interrupts, print unprompted, exit, or lose its link at any step, and see what
the session did (``commands``, ``interrupts``, ``kills``, ``closed``).

Example::

    async def handler(command: str) -> tuple[bytes, int]:
        if command == "sleep":
            await asyncio.Event().wait()  # runs until interrupted
        return b"out", 0

    shells: list[MemoryShell] = []
    session = Session("s", host="h", transport_factory=lambda: MemoryShell.made(shells, handler))
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TypedDict, Unpack

from otto.errors import ConnectError
from otto.transports.base import Receiver, ShellTransport

__all__ = ["Handler", "MemoryShell", "Options"]

Handler = Callable[[str], Awaitable[tuple[bytes, int]]]
"""Runs one command: returns what it printed and its exit status."""

_MARKER_LINE = re.compile(
    r"printf '\\036%s:%d%s\\037' (?P<token>[0-9a-z]+):(?P<seq>\d+) (?P<value>\S+) \$__or\Z"
)
_PLAIN = re.compile(r"__os=(?P<seq>\d+);(?P<command>.*);(?P<marker>printf .*|__om)\Z")
_EVAL = 'for __oi in 1;do eval "$__oc";done'
_OCTALS = re.compile(r"\$\(printf '((?:\\[0-7]{3})+)'\)")
_DQ_ESCAPE = re.compile(r"\\([\\$`\"])")


class Options(TypedDict, total=False):
    """``MemoryShell``'s keyword arguments (for ``made``)."""

    pty: bool
    pid: int
    answer_interrupts: bool
    answer_kills: bool
    fail_open: bool
    cuts: Sequence[int] | None
    trailer: bytes


async def _echo_handler(command: str) -> tuple[bytes, int]:
    return command.encode(), 0


def _unquote(value: str) -> str:
    """The command an ``__oc=`` assignment holds."""
    if value.startswith("'"):
        return value[1:-1].replace("'\\''", "'")
    body = value[1:-1].replace("\\\n", "")
    body = _OCTALS.sub(lambda m: "".join(chr(int(o, 8)) for o in m.group(1).split("\\")[1:]), body)
    return _DQ_ESCAPE.sub(r"\1", body)


class MemoryShell(ShellTransport):
    """A scripted shell that answers otto's framing.

    Args:
        handler: runs each command (default: prints the command back, status 0).
            It may await forever: the command then runs until interrupted.
        pty: frame as a terminal session.
        pid: the PID the set-up reports.
        answer_interrupts: False makes the shell ignore interrupts (only
            ``kill_children`` ends a command then).
        answer_kills: False makes even ``kill_children`` useless (a wedged shell).
        fail_open: raise ``ConnectError`` from ``open``.
        cuts: each command's output, its marker and ``trailer`` go out as one
            stream, cut into reads at these offsets (default: the output, then
            the marker, as two reads).
        trailer: bytes printed right after each command's marker.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        pty: bool = False,
        pid: int = 4242,
        answer_interrupts: bool = True,
        answer_kills: bool = True,
        fail_open: bool = False,
        cuts: Sequence[int] | None = None,
        trailer: bytes = b"",
    ) -> None:
        self._handler = handler or _echo_handler
        self.pty = pty
        self.description = "memory"
        self.pid = pid
        self.answer_interrupts = answer_interrupts
        self.answer_kills = answer_kills
        self.fail_open = fail_open
        self.cuts = cuts
        self.trailer = trailer
        self.commands: list[str] = []
        self.interrupts = 0
        self.kills = 0
        self.closed = False
        self.written = bytearray()
        self._token = ""
        self._lines = ""
        self._running: asyncio.Task[None] | None = None
        self._queue: list[str] = []
        self._seq = 0
        self._deaf = False

    @classmethod
    def made(
        cls, into: list[MemoryShell], handler: Handler | None = None, **kw: Unpack[Options]
    ) -> MemoryShell:
        """A new shell, appended to ``into`` (for a ``transport_factory`` lambda)."""
        shell = cls(handler, **kw)
        into.append(shell)
        return shell

    async def open(self, receiver: Receiver) -> None:
        if self.fail_open:
            raise ConnectError("memory", "the memory shell was told to fail")
        self._receiver = receiver

    # --- what the test does -------------------------------------------------------

    def print(self, data: bytes) -> None:
        """The shell prints ``data`` by itself."""
        if self._receiver is not None and not self._reported and not self.closed:
            self._receiver.data_received(data)

    def lose(self, status: int | None = None, reason: str = "the link dropped") -> None:
        """The shell is gone: it exited with ``status``, or (None) the link dropped."""
        self._stop_running()
        self.report_lost(status, reason)

    def exit(self, status: int, *, noticed: bool = True) -> None:
        """The shell exits by itself, as bash does: its EXIT trap's marker, then the end.

        With ``noticed=False`` the end is not reported yet (as when the news of
        a process's exit is still on its way): the shell just reads no more
        input until the test calls ``lose``.
        """
        self.print(b"\x1e%s:e%d:%d\x1f" % (self._token.encode(), self._seq, status))
        self._deaf = True
        if noticed:
            self.lose(status, f"shell exited with {status}")

    @property
    def running(self) -> bool:
        """A command is running now."""
        return self._running is not None and not self._running.done()

    # --- the transport interface -----------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._reported or self.closed:
            return
        self.written += data
        if self._deaf:
            return
        self._lines += data.decode("utf-8", "surrogateescape")
        while "\n" in self._lines:
            if self.running:
                return  # a running command owns the input; the rest waits
            line, _, self._lines = self._lines.partition("\n")
            self._line(line)

    def _line(self, line: str) -> None:
        if not line:
            return
        self._queue.append(line)
        marker = _MARKER_LINE.search(line)
        if marker is not None and not line.startswith("__os="):
            queued, self._queue = self._queue, []
            self._token = marker["token"]
            seq = int(marker["seq"])
            if len(queued) > 1 and queued[-2].endswith(_EVAL):
                assignment = "\n".join(queued[:-2])
                self._seq = int(queued[-2].split(";", 1)[0].removeprefix("__os="))
                command = _unquote(assignment.removeprefix("__oc="))
                self._start(command, seq)
            else:
                # The set-up or a sync line: answer at once.
                value = self.pid if marker["value"] == "$$" else 0
                self._answer(seq, value)
            return
        plain = _PLAIN.match(line)
        if plain is not None:
            self._queue = []
            self._seq = int(plain["seq"])
            self._start(plain["command"], self._seq)

    def _answer(self, seq: int, status: int, output: bytes = b"") -> None:
        stream = output + b"\x1e%s:%d:%dk\x1f" % (self._token.encode(), seq, status)
        if self.cuts is None:
            if output:
                self.print(output)
            self.print(stream[len(output) :] + self.trailer)
            return
        stream += self.trailer
        last = 0
        for cut in [*sorted({c for c in self.cuts if 0 < c < len(stream)}), len(stream)]:
            self.print(stream[last:cut])
            last = cut

    def _start(self, command: str, seq: int) -> None:
        self.commands.append(command)
        exit_status = re.fullmatch(r"exit (\d+)", command)
        if exit_status is not None:
            self.exit(int(exit_status[1]))
            return
        self._running = asyncio.ensure_future(self._run(command, seq))

    async def _run(self, command: str, seq: int) -> None:
        try:
            output, status = await self._handler(command)
        except asyncio.CancelledError:
            output, status = b"", self._ended_by
        self._answer(seq, status, output)
        self._running = None
        if not self._reported:
            self.write(b"")  # go on with input that waited

    _ended_by = 130

    def _stop_running(self, status: int = 130) -> bool:
        if not self.running:
            return False
        assert self._running is not None
        self._ended_by = status
        self._running.cancel()
        return True

    async def drain(self) -> None:
        await asyncio.sleep(0)

    async def interrupt(self, shell_pid: int | None) -> None:
        self.interrupts += 1
        if self.answer_interrupts:
            self._stop_running(130)
        await asyncio.sleep(0)

    async def kill_children(self, shell_pid: int | None) -> None:
        self.kills += 1
        if self.answer_kills:
            self._stop_running(137)
        await asyncio.sleep(0)

    async def close(self) -> None:
        if self.closed:
            return
        self._closing = True
        self.closed = True
        if self._running is not None and not self._running.done():
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)
