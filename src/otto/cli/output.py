"""Output for people: lines prefixed by host name, coloured only on a terminal.

Command output is written as it is (escapes, ``\\r`` and all), so it is
never re-rendered by a formatting library; only the prefixes are styled.
Colour follows the usual conventions: ``NO_COLOR`` turns it off,
``FORCE_COLOR`` turns it on, otherwise it is on when the stream is a terminal
that is not ``dumb``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import stat
import sys
from collections.abc import Callable, Sequence
from typing import TextIO, cast

from otto.result import CommandStatus, Status

__all__ = [
    "EXIT_PIPE",
    "GuardedStream",
    "HostPrinter",
    "exit_code",
    "guard_streams",
    "on_pipe_closed",
    "pipe_closed",
    "use_colour",
    "watch_readers",
]

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"
_HOST_COLOURS = ("\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[34m", "\x1b[32m", "\x1b[96m")

#: Exit status when a command timed out (as ``timeout(1)`` does).
EXIT_TIMEOUT = 124
#: Exit status when a host could not run a command at all (as ``ssh`` does).
EXIT_ERROR = 255
#: Exit status when otto's stdout or stderr was closed before it was done (``| head -1``):
#: 128 + SIGPIPE, what a shell reports (``set -o pipefail``) for ``seq 1 200000 | head -1``.
EXIT_PIPE = 141


class _Pipe:
    """Whether otto's stdout or stderr was found closed, and who stops the work then."""

    closed = False
    listeners: list[Callable[[], None]] = []  # noqa: RUF012 (one process-wide state)


def pipe_closed() -> bool:
    """Whether a write to otto's stdout or stderr found its reader gone (``| head``)."""
    return _Pipe.closed


def on_pipe_closed(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` once when stdout or stderr is found closed (at once if it was).

    The work that registers it stops itself there (cancels its task, sets its
    stop event); while one is registered, writes to a closed stream are dropped
    quietly instead of raising. Returns the function that removes it.
    """
    if _Pipe.closed:
        callback()
    _Pipe.listeners.append(callback)

    def remove() -> None:
        if callback in _Pipe.listeners:
            _Pipe.listeners.remove(callback)

    return remove


def _found_closed(stream: TextIO) -> bool:
    """``stream``'s reader is gone: what otto writes to it from now on goes nowhere.

    Its file descriptor is pointed at ``/dev/null`` (so no later write or flush,
    the interpreter's last included, fails again), and the work is stopped.
    Returns whether a listener stops it; if not, the writer should stop itself.
    """
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        pass
    else:
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    first = not _Pipe.closed
    _Pipe.closed = True
    if first:
        for callback in list(_Pipe.listeners):
            callback()
    return bool(_Pipe.listeners)


_PIECE = 1 << 16
"""The longest text a :class:`GuardedStream` hands to its stream in one write."""


class GuardedStream:
    """``sys.stdout``/``sys.stderr`` as otto's command sees them: a closed pipe is no error.

    A write or flush that finds the reader gone (``EPIPE``, as after ``| head -1``)
    marks the pipe closed, silences the stream and stops the running work (see
    :func:`on_pipe_closed`); no traceback is printed. When nothing is registered to
    stop (plain, synchronous output), that first write raises ``BrokenPipeError``
    so the writer stops, and the command ends with :data:`EXIT_PIPE`.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    @property
    def wrapped(self) -> TextIO:
        """The stream guarded."""
        return self._stream

    def _closed(self, exc: OSError) -> None:
        if exc.errno != errno.EPIPE:
            raise exc
        if not _found_closed(self._stream):
            raise exc

    def write(self, text: str) -> int:
        """Write ``text``; dropped when the reader is gone (see the class)."""
        try:
            if len(text) <= _PIECE:
                return self._stream.write(text)
            # One big write that a closing reader cuts short is not reported by Python
            # (what the pipe did not take is dropped without an error): in pieces it is.
            for start in range(0, len(text), _PIECE):
                self._stream.write(text[start : start + _PIECE])
        except OSError as exc:
            self._closed(exc)
        return len(text)

    def flush(self) -> None:
        """Flush; nothing when the reader is gone (see the class)."""
        try:
            self._stream.flush()
        except OSError as exc:
            self._closed(exc)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def watch_readers(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Notice at once, not at the next write, when the reader of otto's stdout or
    stderr goes away, while ``loop`` runs: a command that prints nothing for a
    while is stopped as soon as ``| head -1`` has what it wanted.

    Only pipes are watched: the kernel flags a pipe's writing end when its last
    reader closes. Returns the function that stops watching.
    """
    watched: list[int] = []
    for stream in (sys.stdout, sys.stderr):
        inner = stream.wrapped if isinstance(stream, GuardedStream) else stream
        try:
            fd = inner.fileno()
            fifo = stat.S_ISFIFO(os.fstat(fd).st_mode)
        except (OSError, ValueError, AttributeError):
            continue
        if not fifo or fd in watched:
            continue

        def flagged(fd: int = fd, inner: TextIO = inner) -> None:
            loop.remove_reader(fd)
            watched.remove(fd)
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            if any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0)):
                _found_closed(inner)

        # A pipe's writing end is never readable: only the error of a gone reader fires.
        loop.add_reader(fd, flagged)
        watched.append(fd)

    def stop() -> None:
        for fd in watched:
            loop.remove_reader(fd)
        watched.clear()

    return stop


def guard_streams() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` :class:`GuardedStream` (once, at otto's start)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, GuardedStream):
            setattr(sys, name, cast("TextIO", GuardedStream(stream)))


def use_colour(stream: TextIO) -> bool:
    """Whether to colour what goes to ``stream``."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    try:
        tty = stream.isatty()
    except ValueError:  # closed
        return False
    return tty and os.environ.get("TERM") != "dumb"


def exit_code(status: CommandStatus) -> int:
    """The exit status ``otto host run`` gives for a command that did not succeed."""
    if status.status is Status.Failed:
        return min(max(status.retcode, 1), 255)
    if status.timed_out:
        return EXIT_TIMEOUT
    return EXIT_ERROR if status.status is Status.Error else 0


class HostPrinter:
    """Writes commands, their output and their failures, each line prefixed by a host.

    ::

        web1 $ uptime
        web1 | 10:02:11 up 3 days,  2:01,  0 users,  load average: 0.00, 0.01, 0.05
        web1 ! exit status 3
    """

    def __init__(
        self, names: Sequence[str], stream: TextIO | None = None, colour: bool | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.colour = use_colour(self.stream) if colour is None else colour
        self._width = max((len(n) for n in names), default=0)
        self._colours = {n: _HOST_COLOURS[i % len(_HOST_COLOURS)] for i, n in enumerate(names)}

    def _prefix(self, host: str, mark: str) -> str:
        name = host.ljust(self._width)
        if not self.colour:
            return f"{name} {mark} "
        colour = self._colours.get(host, _HOST_COLOURS[0])
        mark_style = _RED + _BOLD if mark == "!" else _DIM
        return f"{colour}{_BOLD}{name}{_RESET} {mark_style}{mark}{_RESET} "

    def _lines(self, host: str, mark: str, text: str, style: str = "") -> None:
        prefix = self._prefix(host, mark)
        end = _RESET if style and self.colour else ""
        start = style if self.colour else ""
        self.stream.write("".join(f"{prefix}{start}{line}{end}\n" for line in text.split("\n")))

    def command(self, host: str, command: str) -> None:
        """The command about to run (or that ran)."""
        self._lines(host, "$", command, _BOLD)
        self.stream.flush()

    def output(self, host: str, text: str) -> None:
        """A command's output; nothing when it printed nothing."""
        if text:
            self._lines(host, "|", text)
        self.stream.flush()

    def line(self, host: str, text: str) -> None:
        """One line of a command's output, as it comes (an empty one too)."""
        self._lines(host, "|", text)
        self.stream.flush()

    def error_output(self, host: str, text: str) -> None:
        """One line a command wrote to its stderr."""
        self._lines(host, "!", text)
        self.stream.flush()

    def problem(self, host: str, message: str) -> None:
        """Why a command or a host did not succeed."""
        self._lines(host, "!", message, _RED)
        self.stream.flush()

    def result(self, host: str, status: CommandStatus, timeout: float | None = None) -> None:
        """A command's output and, unless it succeeded, what went wrong."""
        self.output(host, status.output)
        self.verdict(host, status, timeout)

    def verdict(self, host: str, status: CommandStatus, timeout: float | None = None) -> None:
        """What went wrong with a command; nothing when it succeeded."""
        if status.status is Status.Success:
            return
        if status.status is Status.Failed:
            self.problem(host, f"exit status {status.retcode}")
        elif status.timed_out:
            after = f" after {timeout:g}s" if timeout is not None else ""
            self.problem(host, f"timed out{after}")
        else:
            reason = getattr(status, "error", "") or "the command could not run"
            self.problem(host, f"error: {reason}")
