"""Command framing: how a command is handed to a shell and how its end is found.

Pure functions and one small scanner; nothing here does I/O.

Each command is sent as shell text that stores the command in a variable, runs
it with ``eval`` inside a one-pass ``for`` loop, and then prints an end marker::

    __otto_c='<command, single-quoted>'
    for __otto_i in 1;do eval "$__otto_c";done;printf '\\036otto:%s:%d\\037' '<token>:<seq>' "$?"

A plain command (words of characters no shell treats specially) goes in the
place of ``eval`` as it is: it cannot break out, and it is parsed faster.

Why this shape:

- The command never reaches the shell's parser directly, so an unbalanced
  quote, a heredoc, a ``# comment`` or a trailing ``&`` is contained in ``eval``
  (a syntax error is just exit status 2 with the shell's message).
- Long or multi-line commands are sent in quoted pieces of bounded length, so a
  pseudo-terminal's line limit (4095 bytes in canonical mode) is never hit.
- The marker carries a random per-shell token and the command's sequence
  number, and its control bytes (RS ``\\x1e``, US ``\\x1f``) only exist in the
  output, never in the text sent: neither the command's output nor a
  terminal's echo of the input can forge it.
- The shell's INT trap runs ``break 1000``, which leaves every loop up to ours:
  an interrupted command ends the whole command text, as Ctrl-C would at an
  interactive prompt, and still prints its marker.
"""

from __future__ import annotations

import re
import secrets

__all__ = [
    "BASH_FLAG",
    "MarkerScanner",
    "clean_output",
    "command_bytes",
    "is_plain",
    "marker_prefix",
    "new_token",
    "setup_bytes",
    "strip_own_trace",
    "sync_bytes",
]

RS = b"\x1e"
US = b"\x1f"
_MAGIC = b"otto:"
_PIECE = 512
"""Characters of command text per line sent; keeps lines far below 4095 bytes."""
_MAX_MARKER_BODY = 42
"""Longest ``<seq>:<status>`` a marker may carry."""


def new_token() -> str:
    """A fresh random token: one per shell, so no output can guess its markers."""
    return secrets.token_hex(8)


def marker_prefix(token: str, seq: int) -> bytes:
    """The bytes that start command ``seq``'s end marker; the status and US follow."""
    return b"%s%s%s:%d:" % (RS, _MAGIC, token.encode(), seq)


def _printf_marker(token: str, seq: int, value: str) -> str:
    return f"printf '\\036otto:%s:%d\\037' {token}:{seq} {value}"


def _single_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _escape_for_pty(line: str) -> str:
    # In canonical mode a terminal acts on control characters (Ctrl-C, Ctrl-U, ...);
    # prefixing each with Ctrl-V (lnext) makes the line discipline pass it literally.
    out = []
    for ch in line:
        if (ch < " " and ch not in "\n\t") or ch == "\x7f":
            out.append("\x16")
        out.append(ch)
    return "".join(out)


_PLAIN = re.compile(r"[A-Za-z0-9_./:=@%+,-]+(?: [A-Za-z0-9_./:=@%+,-]+)*\Z")
_RESERVED = frozenset(
    {
        "case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for",
        "function", "if", "in", "select", "then", "time", "until", "while",
    }
)  # fmt: skip


def is_plain(command: str) -> bool:
    """True for words of characters no shell treats specially (``cat /proc/stat``).

    Such a command cannot open a quote, a heredoc, a comment or a background
    job, so it can be sent as it is rather than through ``eval``: a shorter
    round trip for the commands run most often.
    """
    return (
        len(command) <= _PIECE
        and _PLAIN.match(command) is not None
        and command.split(" ", 1)[0] not in _RESERVED
    )


BASH_FLAG = b"\x1eotto-bash\x1f"
"""Printed during set-up when the shell is bash (see ``setup_bytes``)."""


def _end_marker(token: str, seq: int, bash: bool) -> str:
    if bash:
        # Bash escapes control characters when it traces a command (set -x), and
        # the echo of a line shows "$?" unexpanded: so the marker's own bytes can
        # stand in the line, which is a cheaper command than a printf format.
        return f'printf "\x1eotto:{token}:{seq}:$?\x1f"'
    return _printf_marker(token, seq, "$?")


def command_bytes(
    command: str, token: str, seq: int, *, pty: bool = False, bash: bool = False
) -> bytes:
    """The text to write to a shell to run ``command`` and mark its end."""
    marker = _end_marker(token, seq, bash)
    if is_plain(command):
        # One simple command needs no loop for an interrupt to end it.
        text = f"{command};{marker}\n"
    else:
        run = f'for __otto_i in 1;do eval "$__otto_c";done;{marker}\n'
        if len(command) <= _PIECE:
            text = f"__otto_c={_single_quote(command)};{run}"
        else:
            pieces = [command[i : i + _PIECE] for i in range(0, len(command), _PIECE)]
            lines = [f"__otto_c={_single_quote(pieces[0])}\n"]
            lines += [f'__otto_c="$__otto_c"{_single_quote(p)}\n' for p in pieces[1:]]
            text = "".join(lines) + run
    if pty:
        text = _escape_for_pty(text)
    return text.encode("utf-8", "surrogateescape")


def sync_bytes(token: str, seq: int) -> bytes:
    """A line that only prints marker ``seq`` (status 0): proves the shell reads again."""
    return (_printf_marker(token, seq, "0") + "\n").encode()


def setup_bytes(token: str, *, pty: bool) -> bytes:
    """Shell set-up sent once a shell starts; ends with marker 0 carrying the shell's PID."""
    lines = []
    if pty:
        # No echo, no prompts, no line editing, no job control: the terminal then
        # carries exactly what commands print, and Ctrl-C reaches the whole group.
        lines += [
            "stty -echo 2>/dev/null",
            "stty tab0 2>/dev/null",
            # Newlines as the program wrote them, as on a pipe (no \n -> \r\n).
            "stty -onlcr 2>/dev/null",
            "set +m 2>/dev/null",
            '[ -n "$BASH_VERSION" ] && { set +H +o history +o emacs +o vi; } 2>/dev/null',
        ]
    lines += [
        # One stream, in the order written (SSH carries stderr apart otherwise).
        "exec 2>&1",
        "PS1='' PS2='' PS3='' PS4='+ ' PROMPT_COMMAND='' PS0=''",
        "trap 'break 1000 2>/dev/null' INT",
        "[ -n \"$BASH_VERSION\" ] && printf '\\036otto-bash\\037'",
        _printf_marker(token, 0, "$$"),
    ]
    return ("\n".join(lines) + "\n").encode()


def clean_output(raw: bytes | bytearray) -> str:
    """Bytes a command printed -> its ``output``: UTF-8 with replacement, ``\\r\\n``
    folded to ``\\n``, one trailing newline stripped."""
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n")
    return raw.decode("utf-8", "replace")


_OWN_TRACE = re.compile(r"\++ (__otto_c=|for __otto_i in 1$|eval )")


def strip_own_trace(output: str) -> str:
    """Remove the shell's trace of otto's own framing when ``set -x`` is on.

    With xtrace the shell also traces the lines that carry a command and its
    end marker; the marker's trace is then the last line of the output (it
    shows the marker escaped, never its bytes). Cheap when xtrace is off: only
    the last line is looked at.
    """
    head, newline, last = output.rpartition("\n")
    if not (last.startswith("+") and "otto:" in last and "036" in last):
        return output
    lines = head.split("\n") if newline else []
    start = 0
    while start < len(lines) and _OWN_TRACE.match(lines[start]):
        start += 1
    return "\n".join(lines[start:])


class MarkerScanner:
    """Collects one command's output from a byte stream until its end marker.

    Feed it every chunk as it arrives; each byte is searched once (plus the few
    bytes a marker could straddle), and chunks are joined once, at the end.
    Markers of this shell's earlier commands (late ones, after an interrupt)
    are dropped from the output. When ``feed`` returns True, ``output`` holds
    the bytes before the marker, ``status`` the exit status it carried and
    ``rest`` any bytes after it.
    """

    __slots__ = ("_chunks", "_pending", "_prefix", "_size", "_want", "rest", "status")

    def __init__(self, token: str, seq: int) -> None:
        self._prefix = b"%s%s%s:" % (RS, _MAGIC, token.encode())
        self._want = seq
        self._chunks: list[bytes] = []
        self._size = 0
        # Bytes that may hold the start of a marker: the tail of what came so far.
        self._pending = b""
        self.status: int | None = None
        self.rest = b""

    def feed(self, data: bytes) -> bool:
        """Add ``data``; True once the marker is complete."""
        self._size += len(data)
        prefix = self._prefix
        window = self._pending + data if self._pending else data
        if len(window) >= len(prefix) and prefix not in window:
            keep = len(prefix) - 1
            self._chunks.append(window[:-keep])
            self._pending = window[-keep:]
            return False
        emitted = 0
        at = window.find(prefix)
        while at >= 0:
            start = at + len(prefix)
            end = window.find(US, start)
            if end < 0 and len(window) - start <= _MAX_MARKER_BODY:
                break  # the rest of this marker is still on its way
            seq, _, status = window[start:end].partition(b":") if end >= 0 else (b"", b"", b"")
            if not (seq.isdigit() and status.isdigit()):
                # Not a marker after all (cannot happen without the token): go on past it.
                at = window.find(prefix, at + 1)
                continue
            self._chunks.append(window[emitted:at])
            emitted = end + 1
            if int(seq) == self._want:
                self.status = int(status)
                self.rest = window[emitted:]
                self._pending = b""
                return True
            at = window.find(prefix, emitted)
        if at < 0:
            at = max(emitted, len(window) - len(prefix) + 1)
        self._chunks.append(window[emitted:at])
        self._pending = window[at:]
        return False

    @property
    def output(self) -> bytes:
        """Bytes received before the marker (all bytes so far if it has not come)."""
        if self._pending and self.status is None:
            return b"".join(self._chunks) + self._pending
        return b"".join(self._chunks)

    def __len__(self) -> int:
        return self._size
