"""Command framing: how a command is handed to a shell and how its end is found.

Pure functions and one small scanner; nothing here does I/O.

Each command is sent as shell text that stores the command in a variable, runs
it with ``eval`` inside a one-pass ``for`` loop, and then prints an end marker::

    __otto_c='<command, single-quoted>'
    for __otto_i in 1;do eval "$__otto_c";done;printf '\\036otto:%s:%d\\037' '<token>:<seq>' "$?"

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

import secrets

__all__ = [
    "MarkerScanner",
    "clean_output",
    "command_bytes",
    "marker_prefix",
    "new_token",
    "setup_bytes",
    "sync_bytes",
]

RS = b"\x1e"
US = b"\x1f"
_MAGIC = b"otto:"
_PIECE = 512
"""Characters of command text per line sent; keeps lines far below 4095 bytes."""
_MAX_STATUS_DIGITS = 20


def new_token() -> str:
    """A fresh random token: one per shell, so no output can guess its markers."""
    return secrets.token_hex(8)


def marker_prefix(token: str, seq: int) -> bytes:
    """The bytes that start command ``seq``'s end marker; the status and US follow."""
    return b"%s%s%s:%d:" % (RS, _MAGIC, token.encode(), seq)


def _printf_marker(token: str, seq: int, value: str) -> str:
    return f"printf '\\036otto:%s:%d\\037' '{token}:{seq}' \"{value}\""


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


def command_bytes(command: str, token: str, seq: int, *, pty: bool = False) -> bytes:
    """The text to write to a shell to run ``command`` and mark its end."""
    run = 'for __otto_i in 1; do eval "$__otto_c"; done; ' + _printf_marker(token, seq, "$?") + "\n"
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
            "set +m 2>/dev/null",
            '[ -n "$BASH_VERSION" ] && { set +H +o history +o emacs +o vi; } 2>/dev/null',
        ]
    lines += [
        # One stream, in the order written (SSH carries stderr apart otherwise).
        "exec 2>&1",
        "PS1='' PS2='' PS3='' PS4='+ ' PROMPT_COMMAND='' PS0=''",
        "trap 'break 1000 2>/dev/null' INT",
        _printf_marker(token, 0, "$$"),
    ]
    return ("\n".join(lines) + "\n").encode()


def clean_output(raw: bytes | bytearray | memoryview) -> str:
    """Bytes a command printed -> its ``output``: UTF-8 with replacement, ``\\r\\n``
    folded to ``\\n``, one trailing newline stripped."""
    data = bytes(raw)
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    text = data.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    return text


class MarkerScanner:
    """Collects one command's output from a byte stream until its end marker.

    Feed it every chunk as it arrives; each byte is searched once (plus the few
    bytes a marker could straddle). When ``feed`` returns True, ``output`` holds
    the bytes before the marker, ``status`` the exit status it carried and
    ``rest`` any bytes that came after it.
    """

    __slots__ = ("_buf", "_marker_at", "_prefix", "_searched", "rest", "status")

    def __init__(self, prefix: bytes) -> None:
        self._prefix = prefix
        self._buf = bytearray()
        self._searched = 0
        self._marker_at = -1
        self.status: int | None = None
        self.rest = b""

    def feed(self, data: bytes) -> bool:
        """Add ``data``; True once the marker is complete."""
        buf = self._buf
        buf += data
        if self._marker_at < 0:
            at = buf.find(self._prefix, self._searched)
            if at < 0:
                self._searched = max(0, len(buf) - len(self._prefix) + 1)
                return False
            self._marker_at = at
        start = self._marker_at + len(self._prefix)
        end = buf.find(US, start)
        if end < 0:
            if len(buf) - start > _MAX_STATUS_DIGITS:
                # Not a marker after all (cannot happen without the token); skip it.
                self._searched = self._marker_at + 1
                self._marker_at = -1
                return self.feed(b"")
            return False
        digits = bytes(buf[start:end])
        try:
            self.status = int(digits)
        except ValueError:
            self._searched = self._marker_at + 1
            self._marker_at = -1
            return self.feed(b"")
        self.rest = bytes(buf[end + 1 :])
        del buf[self._marker_at :]
        return True

    @property
    def output(self) -> bytearray:
        """Bytes received before the marker (all bytes so far if it has not come)."""
        return self._buf

    def __len__(self) -> int:
        return len(self._buf)
