"""``otto host NAMES run``: each host's lines shown as they come, stderr kept apart.

A host's shell session carries one stream (``exec 2>&1``: stdout and stderr in
the order written). For the command line, each command runs inside
:func:`wrap`, which sends the command's stderr through a named pipe to a
small reader that prefixes each line with ``\\x1d`` (GS) before writing it to
the same stream. :class:`LiveStream`, a tap on the host (it sees every byte
the shell sends back), prints lines as they complete: stdout lines as
``host | line``, GS lines as ``host ! line`` on otto's stderr.

The wrapper runs the command with ``eval`` in the session's own shell, so
``cd`` and variables carry over as before; the reader is started outside the
shell's jobs (a ``wait`` in the command does not wait for it) and is told the
command is over by a line on the pipe, so a background job that keeps the
pipe open does not hold the command. Its ``\\x1dotto-end`` line says the
stderr of the command has all been shown; the shell waits for it (the reader
answers on a second named pipe) before it goes on, so the end line always
comes before otto's marker. A command that ends the shell (``exit 3``) runs the
shell's EXIT trap, which prints the shell's last marker: the wrapper puts its
own EXIT trap first (the session's is kept and run after it), which ends the
reader the same way, so the last stderr lines are not left behind (a local
shell's process group is killed as soon as the shell has exited). Where no
named pipe can be made (a read-only ``/tmp``), the command runs as it is,
stderr mixed with stdout.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from typing import TYPE_CHECKING, Literal

from otto.result import CommandStatus, Status

if TYPE_CHECKING:
    from otto.cli.output import HostPrinter

__all__ = ["END_WAIT", "LiveStream", "wrap"]

GS = b"\x1d"
_START = b"otto-start"
_END = b"otto-end"
_MARKER = re.compile(rb"\x1e([^\x1f]*)\x1f")
_SHELL_EXIT = re.compile(rb":e\d+:\d+$")
"""The body of the marker a shell's EXIT trap prints (see ``otto.framing``)."""

_TRAP_TAG = "otto-stderr-sync"
_EXIT_TRAP = (
    f'__oxs=$?; : {_TRAP_TAG}; if [ -n "$__oed" ]; then '
    "printf '%s\\n' \"$__oed\" >&9; __oed=; exec 9>&-; read -r __oea <&7; fi; "
    '(exit $__oxs); eval "$__oet"'
)
"""The EXIT trap a wrapped command runs under: the stderr reader ends first (see ``wrap``)."""

END_WAIT = 5.0
"""The bound, in seconds, on :meth:`LiveStream.finish`'s wait for the command's end event
(its end line, or the shell's last marker). The shell prints otto's marker only after the
stderr reader has answered, so the event is set before ``run`` returns and this bound
ends no wait of a command that ended by itself; it only keeps a broken reader from
holding the command line."""


def wrap(command: str, number: int) -> str:
    """Shell text that runs ``command`` with its stderr lines marked (see the module)."""
    # The leading space keeps a command that starts with '-' from being eval's option.
    quoted = shlex.quote(" " + command)
    done = f"otto-done-{number}"
    base = f'"${{TMPDIR:-/tmp}}/.otto-stderr.$$.{number}'
    fifo, ack, traps = base + '"', base + '.ack"', base + '.trap"'
    reader = (
        f'( {{ rm -f {fifo} {ack}; while IFS= read -r __oel || [ -n "$__oel" ]; do '
        f"case $__oel in *{done}) "
        f'[ -n "${{__oel%{done}}}" ] && printf \'\\035%s\\n\' "${{__oel%{done}}}"; '
        f"printf '\\035{_END.decode()}\\n'; echo >&8; exec 8>&-;; "
        f"*) printf '\\035%s\\n' \"$__oel\";; esac; done; }} <{fifo} 8>{ack} & )"
    )
    return "\n".join(
        [
            f"printf '\\035{_START.decode()}\\n'",
            f"if rm -f {fifo} {ack} && mkfifo -m 600 {fifo} {ack} 2>/dev/null; then",
            reader,
            f"exec 9>{fifo} 7<{ack}",
            # A command that ends the shell (exit) runs its EXIT trap: the session's,
            # which prints the shell's last marker. Ours runs first: it ends the
            # stderr reader and waits until it has printed all, then runs the session's.
            f"rm -f {traps}; trap >{traps} 2>/dev/null",
            f"while IFS= read -r __otl; do case $__otl in *{_TRAP_TAG}*' EXIT') ;; "
            "'trap -- '*' EXIT') __otl=${__otl#'trap -- '}; eval \"__oet=${__otl% EXIT}\"; "
            f"trap {shlex.quote(_EXIT_TRAP)} EXIT;; esac; done <{traps}; rm -f {traps}",
            f"__oed={done}",
            f"eval {quoted} 2>&9",
            "__oes=$?; __oed=; "
            f"printf '{done}\\n' >&9; exec 9>&-; read -r __oea <&7; exec 7<&-; (exit $__oes)",
            "else",
            f"eval {quoted}",
            f"__oes=$?; printf '\\035{_END.decode()}\\n'; (exit $__oes)",
            "fi",
        ]
    )


class LiveStream:
    """One host's lines, printed as they complete (a tap for ``host.add_tap``).

    Args:
        host: the host's name, for the prefixes.
        out: prints stdout lines (``host | line``).
        err: prints stderr lines (``host ! line``).
    """

    def __init__(self, host: str, out: HostPrinter, err: HostPrinter) -> None:
        self.host = host
        self._out = out
        self._err = err
        self._buffer = bytearray()
        self._partial = b""
        self._live = False
        self._ended = asyncio.Event()

    def tap(self, where: str, direction: Literal["sent", "received"], data: bytes) -> None:
        """Feed what the host's shell sent back."""
        if direction != "received" or not data:
            return
        if b"\n" in data:
            head, _, tail = data.rpartition(b"\n")
            lines = (bytes(self._buffer) + head).split(b"\n")
            self._buffer = bytearray(tail)
            for line in lines:
                self._line(line)
        else:
            self._buffer += data  # a long line in pieces: no copy of what came before
        if b"\x1f" in data and b"\x1e" in self._buffer:
            # A shell that ends prints its last marker and nothing after it.
            for marker in _MARKER.finditer(self._buffer):
                if _SHELL_EXIT.search(marker.group(1)):
                    self._ended.set()

    @property
    def complete(self) -> bool:
        """Whether the command's end was seen: its end line, or the shell's exit."""
        return self._ended.is_set()

    def begin(self) -> None:
        """A command is about to be sent: what follows its start line is its output."""
        self._ended.clear()
        self._live = False

    async def finish(self, status: CommandStatus) -> None:
        """Wait (bounded) for the rest of the command's stderr, then show its last partial line."""
        ended_by_itself = status.status in (Status.Success, Status.Failed) and not status.error
        if ended_by_itself and not self._ended.is_set():
            try:
                async with asyncio.timeout(END_WAIT):
                    await self._ended.wait()
            except TimeoutError:
                pass
        self.flush()

    def flush(self) -> None:
        """Show the line the command left unfinished, if any (on an end or an interrupt)."""
        if self._live and self._buffer:
            # Output not yet ended by a newline: up to a marker, if one came.
            line, self._buffer = bytes(self._buffer), bytearray()
            self._line(line, whole=False)
        if self._partial:
            text, self._partial = self._partial, b""
            self._print_out(text)
        self._live = False

    def _line(self, raw: bytes, *, whole: bool = True) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if b"\x1e" in raw:
            pieces = _MARKER.split(raw)
            # split() with a group alternates text and marker bodies.
            for index, piece in enumerate(pieces):
                if index % 2:
                    if _SHELL_EXIT.search(piece):
                        self._ended.set()  # the shell itself ended: no more stderr comes
                    continue
                last = index == len(pieces) - 1
                if piece or self._partial:  # nothing between two markers is no line
                    self._segment(piece, complete=not last or whole)
            return
        self._segment(raw, complete=whole)

    def _segment(self, raw: bytes, *, complete: bool) -> None:
        at = raw.find(GS)
        if at < 0:
            if not self._live:
                return
            if complete:
                text, self._partial = self._partial + raw, b""
                self._print_out(text)
            else:
                self._partial += raw
            return
        if self._live and at:
            self._partial += raw[:at]  # stdout written before this stderr line, unfinished
        rest = raw[at + 1 :]
        if rest == _START:
            self._live, self._partial = True, b""
        elif rest == _END:
            if self._partial:
                text, self._partial = self._partial, b""
                self._print_out(text)
            self._live = False
            self._ended.set()
        else:
            self._err.error_output(self.host, rest.decode("utf-8", "replace"))

    def _print_out(self, text: bytes) -> None:
        self._out.line(self.host, text.decode("utf-8", "replace"))
