"""Output for people: lines prefixed by host name, coloured only on a terminal.

Command output is written as it is (escapes, ``\\r`` and all), so it is
never re-rendered by a formatting library; only the prefixes are styled.
Colour follows the usual conventions: ``NO_COLOR`` turns it off,
``FORCE_COLOR`` turns it on, otherwise it is on when the stream is a terminal
that is not ``dumb``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from otto.result import CommandStatus, Status

__all__ = ["HostPrinter", "exit_code", "use_colour"]

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"
_HOST_COLOURS = ("\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[34m", "\x1b[32m", "\x1b[96m")

#: Exit status when a command timed out (as ``timeout(1)`` does).
EXIT_TIMEOUT = 124
#: Exit status when a host could not run a command at all (as ``ssh`` does).
EXIT_ERROR = 255


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
