"""Command framing: how a command is handed to a shell and how its end is found.

Pure functions and one small scanner; nothing here does I/O.

A command is sent as shell text that stores the command in a variable, runs
it with ``eval`` inside a one-pass ``for`` loop, and then, on a line of its
own, prints an end marker::

    __oc='<command, quoted>'
    __os=<seq>;for __oi in 1;do eval "$__oc";done
    printf '\\036%s:%d%s\\037' '<token>:<seq>' "$?" $__or

A plain command (words of characters no shell treats specially) goes in the
place of ``eval`` as it is, on one line with its marker: it cannot break out,
and it is parsed faster. On a pipe to bash that line is shortest of all::

    __os=<seq>;<command>;__om

where ``__om``, a function the set-up defines, prints the marker of the
command ``__os`` names with the status ``$?`` it finds on entry.

Why this shape:

- The command never reaches the shell's parser directly, so an unbalanced
  quote, a heredoc, a ``# comment`` or a trailing ``&`` is contained in ``eval``
  (a syntax error is just exit status 2 with the shell's message).
- Long or multi-line commands are sent as one double-quoted word broken into
  lines of bounded length by backslash-newline continuations: a
  pseudo-terminal's line limit (4095 bytes in canonical mode) is never hit, and
  the shell reads the word in one pass (linear in its length).
- The marker carries a random per-shell token and the command's sequence
  number. On a pipe to bash its bytes stand literally in the line (bash shows
  control bytes escaped when it traces, and ``$?`` unexpanded when it echoes);
  otherwise they are written as ``printf`` escapes. Nothing sent to a terminal
  holds a control byte, so a terminal in raw mode (``stty raw``) changes nothing.
- The marker stands on its own line, so a command that replaces the shell
  (``exec bash``) still ends: the new shell prints it, and ``__or``, set to
  ``k`` only by otto's set-up, tells whether the shell is otto's (status
  ``<n>k``) or a new one (status ``<n>``).
- ``__os`` holds the sequence number of the command running, and the
  shell's EXIT trap prints it with the exit status (``e<seq>:<status>``): so a
  shell that ended by itself between two commands is told apart from one that
  a command ended (``exit 3``).
- Bash reads a pipe a byte at a time, a few tenths of a microsecond each, so
  the line run most often is kept short: ``__om`` holds the token and the
  marker's format (the command cannot replace the shell, as ``exec`` is never
  plain, so its marker says "otto's shell" outright). A plain command that
  assigns ``__os`` itself or removes ``__om`` (otto's own names) leaves its
  marker unrecognized, so its run ends only by its timeout.
- The shell's INT trap runs ``break 1000``, which leaves every loop up to ours:
  an interrupted command ends the whole command text, as Ctrl-C would at an
  interactive prompt, and still prints its marker.
"""

from __future__ import annotations

import re
import secrets

__all__ = [
    "BASH_FLAG",
    "PLAIN_LINE",
    "MarkerScanner",
    "clean_output",
    "command_bytes",
    "exit_marker",
    "is_plain",
    "marker_prefix",
    "new_token",
    "restore_bytes",
    "setup_bytes",
    "strip_own_echo",
    "strip_own_trace",
    "sync_bytes",
    "token_prefix",
]

RS = b"\x1e"
US = b"\x1f"
US_BYTE = 0x1F
"""``US`` as an int: ``bytes.find`` takes an int needle directly, where a
one-byte ``bytes`` needle first fails as an int (an exception raised and cleared)."""
OURS = 0x6B
"""``k``: the last byte of a status printed by otto's own shell."""
STATUSES = {b"%d" % n: n for n in range(256)}
"""The exit statuses a shell's ``$?`` prints, as written: one lookup both checks
and converts the usual status (anything else goes the longer way)."""
_MAGIC = b""
_TOKEN_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PIECE = 512
"""Characters of command text per line sent; keeps lines far below 4095 bytes."""
_MAX_MARKER_BODY = 42
"""Longest ``<seq>:<status>`` a marker may carry."""


def new_token() -> str:
    """A fresh random token: one per shell, so no output can guess its markers.

    Eight characters of [0-9a-z] (41 bits) after the RS byte: neither chance
    nor a log of another session's markers forges one, and every byte less is
    one less for the shell to read on each command (bash reads a pipe a byte
    at a time).
    """
    return "".join(secrets.choice(_TOKEN_CHARS) for _ in range(8))


def token_prefix(token: str) -> bytes:
    """The bytes every marker of a shell with ``token`` starts with."""
    return b"%s%s%s:" % (RS, _MAGIC, token.encode())


def marker_prefix(token: str, seq: int) -> bytes:
    """The bytes that start command ``seq``'s end marker; the status and US follow."""
    return b"%s%s%s:%d:" % (RS, _MAGIC, token.encode(), seq)


def _printf_marker(token: str, seq: int, value: str) -> str:
    return f"printf '\\036%s:%d%s\\037' {token}:{seq} {value} $__or"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]+")
_DQ_SPECIAL = re.compile(r'([\\$`"])')


def _single_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _octal_printf(match: re.Match[str]) -> str:
    # A terminal acts on control characters (Ctrl-C, Ctrl-U, ...) and passes
    # them on only in some modes; printf writes them without any being sent.
    return "$(printf '" + "".join(f"\\{ord(c):03o}" for c in match.group()) + "')"


def _double_quote(text: str, pty: bool) -> str:
    quoted = _DQ_SPECIAL.sub(r"\\\1", text)
    if pty:
        quoted = _CONTROL.sub(_octal_printf, quoted)
    return quoted


_PLAIN_SEEN: dict[str, bool] = {}
"""``is_plain`` answers for commands seen (bounded): the same few commands repeat."""

_PLAIN = re.compile(r"[A-Za-z0-9_./:=@%+,-]+(?: [A-Za-z0-9_./:=@%+,-]+)*\Z")
_RESERVED = frozenset(
    {
        "case", "coproc", "do", "done", "elif", "else", "esac", "exec", "fi", "for",
        "function", "if", "in", "select", "then", "time", "until", "while",
    }
)  # fmt: skip


def is_plain(command: str) -> bool:
    """True for words of characters no shell treats specially (``cat /proc/stat``).

    Such a command cannot open a quote, a heredoc, a comment or a background
    job, so it can be sent as it is rather than through ``eval``: a shorter
    round trip for the commands run most often. ``exec`` is never plain: a
    shell it replaces must still find the end marker on a line of its own.
    """
    known = _PLAIN_SEEN.get(command)
    if known is not None:
        return known
    plain = (
        len(command) <= _PIECE
        and _PLAIN.match(command) is not None
        and command.split(" ", 1)[0] not in _RESERVED
    )
    if len(_PLAIN_SEEN) >= 4096:
        _PLAIN_SEEN.clear()
    _PLAIN_SEEN[command] = plain
    return plain


BASH_FLAG = b"\x1eotto-bash\x1f"
"""Printed during set-up when the shell is bash (see ``setup_bytes``)."""


def _end_marker(token: str, seq: int, bash: bool, pty: bool) -> str:
    if bash and not pty:
        # Bash escapes control characters when it traces a command (set -x), and
        # the echo of a line shows "$?" unexpanded: so the marker's own bytes can
        # stand in the line, which is a cheaper command than a printf format.
        return f'printf "\x1e{token}:{seq}:$?$__or\x1f"'
    return _printf_marker(token, seq, "$?")


def _quoted_command(command: str, pty: bool) -> str:
    """``__oc=...`` holding ``command``: one word, in lines of bounded length."""
    controls = pty and _CONTROL.search(command) is not None
    if len(command) <= _PIECE and not controls:
        return f"__oc={_single_quote(command)}\n"
    # Raw characters per line: escaping at most doubles them, and a run of
    # control characters on a terminal grows to printf escapes (4 bytes each).
    piece = _PIECE // 4 if controls else _PIECE
    parts = [_double_quote(command[i : i + piece], pty) for i in range(0, len(command), piece)]
    return '__oc="' + "\\\n".join(parts) + '"\n'


PLAIN_LINE = b"__os=%d;%s;__om\n"
"""``command_bytes`` of a plain command on a pipe to bash, as a format:
``PLAIN_LINE % (seq, command)`` with the command's bytes (plain words are ASCII)."""


def command_bytes(
    command: str, token: str, seq: int, *, pty: bool = False, bash: bool = False
) -> bytes:
    """The text to write to a shell to run ``command`` and mark its end."""
    plain = is_plain(command)
    if plain and bash and not pty:
        return PLAIN_LINE % (seq, command.encode())
    marker = _end_marker(token, seq, bash, pty)
    if plain:
        # One simple command needs no loop for an interrupt to end it.
        text = f"__os={seq};{command};{marker}\n"
    else:
        text = (
            _quoted_command(command, pty)
            + f'__os={seq};for __oi in 1;do eval "$__oc";done\n{marker}\n'
        )
    return text.encode("utf-8", "surrogateescape")


def sync_bytes(token: str, seq: int) -> bytes:
    """A line that only prints marker ``seq`` (status 0): proves the shell reads again."""
    return (_printf_marker(token, seq, "0") + "\n").encode()


def setup_bytes(token: str, *, pty: bool, seq: int = 0) -> bytes:
    """Shell set-up, sent when a shell starts (and again after it was replaced).

    Ends with marker ``seq`` carrying the shell's PID.
    """
    # First of all: a start-up file's `set -e` would end this shell at the first
    # command that fails (a set-up line here included), and its `set -x` would
    # mix a trace of every command into the output.
    lines = ["set +e +x 2>/dev/null"]
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
            # An interactive bash started by `exec bash` would bracket pastes.
            '[ -n "$BASH_VERSION" ] && bind "set enable-bracketed-paste off" 2>/dev/null',
        ]
    lines += [
        # One stream, in the order written (SSH carries stderr apart otherwise).
        "exec 2>&1",
        "PS1='' PS2='' PS3='' PS4='+ ' PROMPT_COMMAND='' PS0='' __or=k __os=0",
        "trap 'break 1000 2>/dev/null' INT",
        # The marker of a plain command on bash (see PLAIN_LINE): `$?` on entry
        # is the status of the command before the call.
        _marker_function(token, pty=pty),
        f'trap \'printf "\\036%s:e%s:%d\\037" {token} "$__os" "$?"\' EXIT',
        "[ -n \"$BASH_VERSION\" ] && printf '\\036otto-bash\\037'",
        _printf_marker(token, seq, "$$"),
    ]
    return ("\n".join(lines) + "\n").encode()


def _marker_function(token: str, *, pty: bool) -> str:
    if pty:  # nothing sent to a terminal holds a control byte
        return f'__om(){{ printf \'\\036{token}:%s:%sk\\037\' "$__os" "$?"; }}'
    # On a pipe the marker's own bytes stand in the format, which leaves
    # printf no conversion to do: this runs on every plain round trip.
    return f'__om(){{ printf "\x1e{token}:$__os:$?k\x1f"; }}'


def exit_marker(data: bytes, token: str) -> tuple[int, int] | None:
    """The (sequence number, exit status) the shell's EXIT trap printed in ``data``."""
    prefix = b"%s%s%s:e" % (RS, _MAGIC, token.encode())
    at = data.rfind(prefix)
    if at < 0:
        return None
    body = data[at + len(prefix) : data.find(US_BYTE, at)]
    seq, _, status = body.partition(b":")
    if seq.isdigit() and status.isdigit():
        return int(seq), int(status)
    return None


def strip_own_echo(output: bytes, sent: bytes) -> tuple[bytes, bool]:
    """Remove the echo of the text otto sent from ``output``; True if there was one.

    The terminal echoes it (``stty echo``) as it arrives, before the command
    runs, with ``\\r\\n`` line ends where ``onlcr`` is on (``stty sane``); a
    slow line may echo the marker line after the command began to print. In
    verbose mode (``set -v``) the shell prints each line it reads: the lines
    that carry the command before its output, the marker line after it.
    """
    for newline in (b"\n", b"\r\n"):
        echo = sent if newline == b"\n" else sent.replace(b"\n", newline)
        if output.startswith(echo):
            return output[len(echo) :], True
        head, _, marker_line = echo[: -len(newline)].rpartition(newline)
        if not head:
            continue  # a plain command: one line, echoed whole or not at all
        head += newline
        if output.startswith(head):
            output = output[len(head) :]
            marker_line += newline
            at = output.find(marker_line)  # it holds this shell's token: only ours
            if at >= 0:
                output = output[:at] + output[at + len(marker_line) :]
            return output, True
    return output, False


def restore_bytes(token: str, seq: int) -> bytes:
    """A line that turns the terminal's echo off again (and ``\\n`` as written), then
    prints marker ``seq``: after a command turned echo on (``stty echo``, ``stty sane``)."""
    return (
        "stty -echo 2>/dev/null; stty tab0 2>/dev/null; stty -onlcr 2>/dev/null; "
        + _printf_marker(token, seq, "0")
        + "\n"
    ).encode()


def clean_output(raw: bytes | bytearray) -> str:
    """Bytes a command printed -> its ``output``: UTF-8 with replacement, ``\\r\\n``
    folded to ``\\n``, one trailing newline stripped."""
    if not raw:
        return ""
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    if raw.find(b"\r") >= 0:  # not `in`: on bytes it tries an int first
        raw = raw.replace(b"\r\n", b"\n")
    return raw.decode("utf-8", "replace")


_OWN_TRACE = re.compile(r"\++ (__oc=|__os=|for __oi in 1$|eval )")


def strip_own_trace(output: str) -> str:
    """Remove the shell's trace of otto's own framing when ``set -x`` is on.

    With xtrace the shell also traces the lines that carry a command and its
    end marker; the marker's trace is then the last line of the output (it
    shows the marker escaped, never its bytes). Cheap when xtrace is off: only
    the last line is looked at.
    """
    head, newline, last = output.rpartition("\n")
    if not (last.startswith("+") and "printf" in last and "036" in last):
        return output
    lines = head.split("\n") if newline else []
    if lines and lines[-1].lstrip("+") == " __om":
        lines.pop()  # the call of the marker's function, before its printf
    start = 0
    while start < len(lines) and _OWN_TRACE.match(lines[start]):
        start += 1
    return "\n".join(lines[start:])


_PREFIXES: dict[str, bytes] = {}
"""Each token's marker prefix, built once."""


class MarkerScanner:
    """Collects one command's output from a byte stream until its end marker.

    Feed it every chunk as it arrives; each byte is searched once (plus the few
    bytes a marker could straddle), and chunks are joined once, at the end.
    Markers of this shell's earlier commands (late ones, after an interrupt)
    and the EXIT trap's marker are dropped from the output (the latter is kept
    in ``exit``). When ``feed`` returns True, ``output`` holds the bytes before
    the marker, ``status`` the exit status it carried, ``replaced`` whether a
    new shell printed it, and ``rest`` any bytes after it.

    At most ``limit`` bytes of output are kept: past that, the first and the
    last ``limit // 2`` bytes, with ``dropped`` counting what was left out.
    """

    # Class defaults: most scanners never change these, so __init__ stays short.
    _head = 0
    _tail: list[bytes] | tuple[()] = ()
    _tail_size = 0
    _pending = b""
    _size = 0
    status: int | None = None
    replaced = False
    exit: tuple[int, int] | None = None
    dropped = 0
    rest = b""

    def __init__(self, token: str, seq: int, *, limit: int | None = None) -> None:
        prefix = _PREFIXES.get(token)
        if prefix is None:
            if len(_PREFIXES) > 256:
                _PREFIXES.clear()
            prefix = _PREFIXES[token] = token_prefix(token)
        self._prefix = prefix
        self._want = seq
        self._ours = b"%s%d:" % (prefix, seq)
        self._chunks: list[bytes] = []
        self._limit = limit

    def _keep(self, data: bytes) -> None:
        if not data:
            return
        limit = self._limit
        if limit is None or (self._head + len(data) <= limit // 2 and not self._tail):
            self._chunks.append(data)
            self._head += len(data)
            return
        if not self._tail:
            self._tail = []
            room = max(0, limit // 2 - self._head)
            if room:
                self._chunks.append(data[:room])
                self._head += room
                data = data[room:]
        self._tail.append(data)
        self._tail_size += len(data)
        excess = self._tail_size - (limit - limit // 2)
        while excess > 0:
            first = self._tail[0]
            if len(first) <= excess:
                self._tail.pop(0)
                self._tail_size -= len(first)
                self.dropped += len(first)
                excess -= len(first)
            else:
                self._tail[0] = first[excess:]
                self._tail_size -= excess
                self.dropped += excess
                excess = 0

    def feed(self, data: bytes) -> bool:
        """Add ``data``; True once the marker is complete."""
        self._size += len(data)
        prefix = self._prefix
        if not self._pending:
            # The usual case: the chunk's first marker is this command's, whole,
            # printed by otto's shell (status digits then "k"). No slice is made
            # to look (``in`` on bytes costs more than ``find``).
            at = data.find(prefix)
            if at >= 0 and data.startswith(self._ours, at):
                start = at + len(self._ours)
                end = data.find(US_BYTE, start)
                if end > start + 1 and data[end - 1] == OURS:
                    code = STATUSES.get(data[start : end - 1])
                    if code is not None:
                        if at:
                            self._keep(data[:at])
                        self.status = code
                        self.rest = data[end + 1 :]
                        return True
        window = self._pending + data if self._pending else data
        if len(window) >= len(prefix) and prefix not in window:
            keep = len(prefix) - 1
            self._keep(window[:-keep])
            self._pending = window[-keep:]
            return False
        emitted = 0
        at = window.find(prefix)
        while at >= 0:
            start = at + len(prefix)
            end = window.find(US_BYTE, start)
            if end < 0 and len(window) - start <= _MAX_MARKER_BODY:
                break  # the rest of this marker is still on its way
            seq, _, status = window[start:end].partition(b":") if end >= 0 else (b"", b"", b"")
            replaced = not status.endswith(b"k")
            if not replaced:
                status = status[:-1]
            trap = seq.startswith(b"e")
            if trap:
                seq = seq[1:]
            if not (seq.isdigit() and status.isdigit()):
                # Not a marker after all (cannot happen without the token): go on past it.
                at = window.find(prefix, at + 1)
                continue
            self._keep(window[emitted:at])
            emitted = end + 1
            if trap:
                self.exit = (int(seq), int(status))
            elif int(seq) == self._want:
                self.status = int(status)
                self.replaced = replaced
                self.rest = window[emitted:]
                self._pending = b""
                return True
            at = window.find(prefix, emitted)
        if at < 0:
            at = max(emitted, len(window) - len(prefix) + 1)
        self._keep(window[emitted:at])
        self._pending = window[at:]
        return False

    @property
    def output(self) -> bytes:
        """Bytes received before the marker (all bytes so far if it has not come).

        When output was dropped, the kept head and tail are joined by a line
        saying how many bytes are missing.
        """
        chunks = self._chunks
        if self._tail:
            if self.dropped:
                note = b"\n[otto: %d bytes of output dropped here (max_output)]\n" % self.dropped
                chunks = [*chunks, note, *self._tail]
            else:
                chunks = [*chunks, *self._tail]
        if self._pending and self.status is None:
            return b"".join(chunks) + self._pending
        return b"".join(chunks)

    def __len__(self) -> int:
        return self._size
