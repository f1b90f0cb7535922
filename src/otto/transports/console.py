"""Consoles: one byte stream per host (a TCP console or a serial line), shared by every session.

A ``ConsoleLink`` owns the stream and its state machine::

    closed --connect--> link --login if a prompt shows, else a shell answers--> shell
    shell --start the inner shell--> inner --the inner shell exits--> shell
    any --the stream ends--> closed

Reaching the shell: what the console printed before otto came is looked at
first (a login prompt may be waiting); then a probe line (a sum whose answer
its echo cannot show) is sent until a shell answers, a login prompt shows
(otto logs in with the host's user and password), or ``connect_timeout``
passes. A console held by a program (``cat``, a pager) answers nothing: after
the first unanswered probe otto presses Ctrl-C before each next one, and where
the console shows a known REPL's prompt (Python's ``>>> ``), that REPL's own
way out (Ctrl-D). otto never presses Enter on its own: on a bootloader (U-Boot)
an empty line runs the last command again.

A program started with ``send`` (or an app) holds the console: that state is
the link's, not one session's. Other sessions get a clear ``ConnectError``
instead of typing into it; when the session that started it closes, or the
host does, the link ends it (Ctrl-C, then the REPL's way out, then Ctrl-\\)
until its shell answers again. A console opened raw (a bootloader driven with
``send``/``expect`` or an app) gets no shell probes typed into it.

As over Telnet, commands run in an inner, non-interactive shell started from
the console's shell, which prints the inner shell's exit status when it ends.
Every session of the host is a ``ConsoleShell`` view of that one inner shell:
the host gives all of them one lock, and output goes to the view that wrote
last (the one holding the lock). Closing a view detaches it; the stream
closes with the host, which first ends the inner shell (the console is left
at its own shell, with a sane terminal).

``console_log``: every byte the console prints, whenever it arrives, is
appended to a file, each line behind the time it arrived. What otto writes
is never logged, and a password the console might echo is masked.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, Protocol

from otto import redact
from otto.errors import ConnectError, ConnectionLost, tail
from otto.expect import ExpectMatch
from otto.transports.base import Receiver, ShellTransport, WriteFlow
from otto.transports.kmsg import KernelLines
from otto.transports.login import (
    LOGIN_PROMPT,
    PASSWORD_PROMPT,
    ExitWatch,
    LoginDialog,
    TelnetStripper,
    inner_shell_command,
    leave_inner,
    set_keepalive,
    telnet_answer,
)

__all__ = [
    "ConsoleLink",
    "ConsoleLog",
    "ConsoleShell",
    "ConsoleStream",
    "ConsoleStreamView",
    "StreamSink",
    "TcpConsoleStream",
    "held_by",
]

log = logging.getLogger("otto.transports.console")

_READ_LIMIT = 1024 * 1024
"""Bytes kept for the login dialog while nobody reads them."""
_FIRST_LOOK = 0.1
"""Seconds to wait for what the console prints on its own when otto connects
(what it printed before is delivered at once)."""
_PROMPT_WAIT = 0.3
"""Seconds to wait for a prompt after pressing Ctrl-C on a silent console."""
_PROBE_WAITS = (0.3, 0.5, 1.0)
"""Seconds to wait for an answer to each probe line (then the last, again and again)."""
_OTTO_SHELLS_ENDED = 3
"""How many leftover otto shells (from a link that dropped) are ended before giving up."""
_SHELL_PROMPT = re.compile(r"[$#>%]\s*(\x1b\[[0-9;?]*[A-Za-z])*$", re.MULTILINE)
_CTRL_C = b"\x03"
_CTRL_BACKSLASH_C = b"\x1c\x03"
_LEAVES = 2
"""How many times a known REPL's way out is tried before giving up on it."""
_FREE_WAITS = (0.5, 1.0, 1.5)
"""Seconds the shell has to answer after each step of ending a program that holds it."""
# A marker line of otto's framing (see otto.framing): "printf '\036%s:%d%s\037' TOKEN:SEQ".
_FRAMING = re.compile(rb"printf '\\036%s:%d%s\\037' ([0-9a-z]+):([0-9]+) ")


class _Program(NamedTuple):
    """A program recognised by its prompt at the end of what the console printed."""

    name: str
    prompt: re.Pattern[str]
    leave: bytes | None
    """What ends it at its prompt; None for a bootloader (there is nothing to leave)."""


_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_PROGRAMS = (
    _Program("python", re.compile(r"(?:^|\n)(?:>>>|\.\.\.) \Z"), b"\x04"),
    _Program("sqlite3", re.compile(r"(?:^|\n)(?:sqlite|   \.\.\.)> \Z"), b"\x04"),
    _Program("irb", re.compile(r"(?:^|\n)irb\([^)]*\):\d+:\d+[>*\"'] \Z"), b"\x04"),
    _Program("mysql", re.compile(r"(?:^|\n)(?:mysql|mariadb|MariaDB \[[^]]*\])> \Z"), b"\x04"),
    _Program("U-Boot", re.compile(r"(?:^|\n)(?:<INTERRUPT>\n)?(?:=>|U-Boot>) \Z"), None),
)


def held_by(printed: str) -> _Program | None:
    """The known program whose prompt ends ``printed`` (a REPL, a bootloader), or None."""
    text = _ESCAPES.sub("", printed[-600:]).replace("\r\n", "\n").replace("\r", "\n")
    for program in _PROGRAMS:
        if program.prompt.search(text):
            return program
    return None


class StreamSink(Protocol):
    """Where a console stream delivers what the console prints."""

    def stream_data(self, data: bytes) -> None: ...

    def stream_lost(self, reason: str) -> None: ...


class ConsoleStream(abc.ABC):
    """The bytes to and from a console: a TCP connection or a serial line."""

    #: For messages: "127.0.0.1:7001", "/dev/ttyUSB0".
    where: str = ""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Queue bytes for the console. Never blocks."""

    @abc.abstractmethod
    async def drain(self) -> None:
        """Wait until queued bytes were handed to the OS."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the stream (queued bytes are still sent where the OS allows)."""


StreamOpener = Callable[[StreamSink], Awaitable[ConsoleStream]]
"""Opens a console stream delivering to the sink; raises ``OSError``."""


class _TcpProtocol(WriteFlow):
    def __init__(self, owner: TcpConsoleStream) -> None:
        self._owner = owner

    def data_received(self, data: bytes) -> None:
        self._owner._received(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        reason = (
            "the console connection closed" if exc is None else f"the console link broke: {exc}"
        )
        self.resume_writing()
        self._owner._lost(reason)


class TcpConsoleStream(ConsoleStream):
    """A console on a TCP port: Telnet (ser2net, terminal servers) or raw bytes."""

    def __init__(self, sink: StreamSink, address: str, port: int, *, telnet: bool) -> None:
        self.where = f"{address}:{port}"
        self._sink = sink
        self.address = address
        self.port = port
        self._telnet = TelnetStripper(self._answer) if telnet else None
        self._answered: set[tuple[int, int]] = set()
        self._transport: asyncio.Transport | None = None
        self._protocol = _TcpProtocol(self)
        self._closed = False

    @classmethod
    async def open(
        cls,
        sink: StreamSink,
        address: str,
        port: int,
        *,
        telnet: bool,
        keepalive_interval: float,
    ) -> TcpConsoleStream:
        stream = cls(sink, address, port, telnet=telnet)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: stream._protocol, address, port)
        assert isinstance(transport, asyncio.Transport)
        stream._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_keepalive(sock, keepalive_interval)
        return stream

    def _answer(self, command: int, option: int) -> None:
        if (command, option) in self._answered:
            return
        self._answered.add((command, option))
        answer = telnet_answer(command, option)
        if answer and self._transport is not None and not self._transport.is_closing():
            self._transport.write(answer)

    def _received(self, data: bytes) -> None:
        if self._telnet is not None:
            data = self._telnet.strip(data)
            if not data:
                return
        self._sink.stream_data(data)

    def _lost(self, reason: str) -> None:
        if not self._closed:
            self._sink.stream_lost(reason)

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._telnet is not None and b"\xff" in data:
            data = data.replace(b"\xff", b"\xff\xff")
        transport.write(data)

    async def drain(self) -> None:
        await self._protocol.drain()

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()


class ConsoleLog:
    """Appends what a console prints to a file, each line behind the time it arrived.

    Bytes are written as they come (a crash is in the file at once); a line
    that arrives in several pieces carries the time of its first piece.
    ``secrets`` are masked: a byte sequence that could be the start of one is
    held back until the next bytes show whether it is.
    """

    def __init__(self, path: str, secrets: Callable[[], Sequence[str]]) -> None:
        self.path = path
        self._secrets = secrets
        self._fd: int | None = None
        self._line_start = True
        self._held = b""

    def __repr__(self) -> str:
        return f"ConsoleLog({self.path!r})"

    def open(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._line_start = True

    @staticmethod
    def _stamp() -> bytes:
        now = time.time()
        return b"[%s.%03d] " % (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)).encode(),
            int(now % 1 * 1000),
        )

    def feed(self, data: bytes) -> None:
        if self._fd is None:
            return
        if self._held:
            data, self._held = self._held + data, b""
        for secret in self._secrets():
            word = secret.encode()
            if not word:
                continue
            if word in data:
                data = data.replace(word, b"***")
            for size in range(min(len(word) - 1, len(data)), 0, -1):
                if data.endswith(word[:size]):
                    data, self._held = data[:-size], data[-size:] + self._held
                    break
        if data:
            self._write(data)

    def _write(self, data: bytes) -> None:
        stamp = self._stamp()
        body = data.replace(b"\n", b"\n" + stamp)
        if self._line_start:
            body = stamp + body
        self._line_start = data[-1:] == b"\n"
        if self._line_start:
            body = body[: -len(stamp)]
        fd = self._fd
        assert fd is not None
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]

    def close(self) -> None:
        if self._fd is None:
            return
        held, self._held = self._held, b""
        if held:
            self._write(held)
        if not self._line_start:
            os.write(self._fd, b"\n")
        os.close(self._fd)
        self._fd = None


class ConsoleLink:
    """One console of one host: the stream, the login, the inner shell, the views.

    Args:
        name: the host, for messages.
        opener: opens the stream (TCP or serial).
        where: the console's address, for messages.
        password: gives the login password when it is typed.
        console_log: the file to append what the console prints to.
        secrets: what ``console_log`` masks.
    """

    def __init__(
        self,
        name: str,
        *,
        opener: StreamOpener,
        where: str,
        user: str | None,
        password: Callable[[], str | None],
        connect_timeout: float,
        login_prompt: str = LOGIN_PROMPT,
        password_prompt: str = PASSWORD_PROMPT,
        console_log: str | None = None,
        secrets: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        self.name = name
        self.where = where
        self.user = user
        self._opener = opener
        self._password = password
        self.connect_timeout = connect_timeout
        self._login_prompt = login_prompt
        self._password_prompt = password_prompt
        self._log = ConsoleLog(console_log, secrets) if console_log else None
        self._stream: ConsoleStream | None = None
        self._state = "closed"
        self._lost_reason = ""
        self._connecting = asyncio.Lock()
        self._views: list[ConsoleShell] = []
        self._active: ConsoleShell | None = None
        self._watch = ExitWatch("")
        self._kernel = KernelLines()
        self._restarting = False
        self._taps: list[Callable[[bytes], None]] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []
        # What arrives while otto waits for a prompt or a shell (login, probes).
        self._reading = False
        self._pending = bytearray()
        self._arrived = asyncio.Event()
        self._dialog: LoginDialog | None = None
        self._inner_token = ""
        self._raw_views: list[ConsoleStreamView] = []
        # The view whose program holds the inner shell's terminal (send, an app),
        # what it typed, and the markers its framing asks for (one back: the shell reads).
        self._holder: ConsoleShell | None = None
        self._held_what = ""
        self._wedged = ""
        self._freeing: list[bytes] = []
        self._seen_tail = b""
        self._free_seq = 0
        self._free_marker = b""
        self._freed = asyncio.Event()
        self._free_seen = bytearray()

    def __repr__(self) -> str:
        return f"<ConsoleLink {self.name!r} {self.where} {self._state}>"

    @property
    def state(self) -> str:
        """``closed``, ``link`` (connected), ``shell`` (a shell answers) or ``inner``."""
        return self._state

    # --- the stream's side -----------------------------------------------------

    def stream_data(self, data: bytes) -> None:
        if self._log is not None:
            self._log.feed(data)
        for tap in self._taps:
            tap(data)
        if self._state == "inner":
            watch = self._watch
            # The kernel's messages are the console's, not the command's output.
            out = watch.feed(self._kernel.feed(data))
            if out and (self._freeing or self._free_marker):
                self._look_for_free(out)
            active = self._active
            if out and active is not None:
                active.deliver(out)
            if watch.ended:
                self._state = "shell"
                self._line_free()
                self._freed.set()
                self._views_lost(watch.status, f"shell exited with {watch.status}")
            elif restarted := self._kernel.take_restart():
                # The kernel restarts (a reboot, a panic): the shell is gone, a login next.
                self._state = "link"
                self._line_free()
                self._wedged = ""
                self._freed.set()
                # What it prints while it boots is kept for the next login.
                self._restarting = True
                self._pending.clear()
                self._reading = True
                self._views_lost(None, f"the kernel restarted: {restarted!r}")
            return
        if self._reading:
            if len(self._pending) > _READ_LIMIT:
                del self._pending[: len(self._pending) - _READ_LIMIT // 2]
            self._pending += data
            self._arrived.set()

    def stream_lost(self, reason: str) -> None:
        self._state = "closed"
        self._lost_reason = reason
        self._stream = None
        self._arrived.set()
        self._line_free()
        self._wedged = ""
        self._freed.set()
        for tap in list(self._taps):
            tap(b"")
        self._views_lost(None, reason)
        if self._log is not None:
            self._log.close()

    # --- who holds the line -------------------------------------------------------

    def _line_free(self) -> None:
        self._holder = None
        self._held_what = ""
        self._freeing = []
        self._seen_tail = b""

    def _look_for_free(self, out: bytes) -> None:
        """Watch the inner shell's output for a marker that says it reads commands again."""
        seen = self._seen_tail + out
        if self._free_marker:
            self._free_seen += out
            del self._free_seen[: max(0, len(self._free_seen) - 4096)]
            if self._free_marker in seen:
                self._freed.set()
        if any(prefix in seen for prefix in self._freeing):
            log.debug("%s: the console's shell reads commands again", self.name)
            self._line_free()
            return
        self._seen_tail = seen[-64:]

    def _held_message(self, view: ConsoleShell) -> str:
        holder = self._holder
        who = f"session {holder.who}" if holder is not None and holder.who else "another session"
        what = f"`{self._held_what}`" if self._held_what else "a program"
        return (
            f"the console {self.where} is held by {what}, which {who} started (send or an "
            f"app) and which still runs: nothing of {view.who or 'this session'} was typed "
            "into it; end that program (or close that session) first"
        )

    def _typed(self, data: bytes, view: ConsoleShell) -> None:
        """Note what ``view`` writes: otto's framing, or text for a program of its own."""
        markers = _FRAMING.findall(data)
        if markers:
            if self._holder is view:
                # The shell reads commands again once one of these comes back.
                asked = [b"\x1e%s:%s:" % (token, seq) for token, seq in markers]
                self._freeing = (self._freeing + asked)[-16:]
            return
        if self._holder is None:
            self._holder = view
            line = data.decode(errors="replace").strip().split("\n", 1)[0].strip("\r")
            self._held_what = redact.redact(line[:60])
            self._freeing = []

    async def _free_line(self, what: str) -> bool:
        """End what holds the inner shell's terminal; True once the shell reads commands.

        Ctrl-C; then, where the console shows a known REPL's prompt, its way out
        (Ctrl-D), else Ctrl-\\ and Ctrl-C. After each step a line only the shell
        answers is typed (a marker its echo cannot show).
        """
        stream = self._stream
        if stream is None or self._state != "inner":
            return True
        self._active = None
        self._free_seen.clear()
        leaves = 0
        try:
            for step, wait in enumerate(_FREE_WAITS):
                if self._stream is None or self._state != "inner":
                    return True
                program = held_by(self._free_seen.decode(errors="replace"))
                if step == 0:
                    key = _CTRL_C
                elif program is not None and program.leave is not None and leaves < _LEAVES:
                    leaves += 1
                    key = program.leave
                else:
                    key = _CTRL_BACKSLASH_C
                self._free_seq += 1
                seq = self._free_seq
                token = self._inner_token.encode()
                self._free_marker = b"\x1eotto-free:%s:%d\x1f" % (token, seq)
                self._freed.clear()
                self._free_seen.clear()
                # Its echo shows "\\036", never the byte: only the shell prints the marker.
                self._write_now(key + b"printf '\\036otto-free:%s:%d\\037'\r" % (token, seq))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._freed.wait()
                if self._freed.is_set():
                    self._line_free()
                    return True
            shown = tail(redact.redact(self._free_seen.decode(errors="replace")), 120)
            self._wedged = f"{what} (it printed {shown!r})"
            return False
        finally:
            self._free_marker = b""

    def _views_lost(self, status: int | None, reason: str) -> None:
        for view in list(self._views):
            view.report_lost(status, reason)

    async def _read(self) -> bytes:
        """The next bytes the console printed (for the login dialog); ``b""`` once closed."""
        while not self._pending:
            if self._stream is None:
                return b""
            self._arrived.clear()
            await self._arrived.wait()
        data = bytes(self._pending)
        self._pending.clear()
        return data

    def _write_now(self, data: bytes) -> None:
        if self._stream is not None:
            self._stream.write(data)

    # --- reaching a shell ---------------------------------------------------------

    async def connect(self) -> None:
        """Open the stream and reach a shell (logging in if asked); ``ConnectError``."""
        async with self._connecting:
            if self._state in ("shell", "inner"):
                return
            if self._raw_views:
                raise ConnectError(
                    self.name,
                    f"the console {self.where} is open raw ({len(self._raw_views)} session(s) "
                    "drive it with send/expect or an app, a bootloader maybe): otto types no "
                    "shell probes into it; close those sessions first",
                )
            self._dialog = LoginDialog(
                self.name,
                user=self.user,
                password=self._password,
                login_prompt=self._login_prompt,
                password_prompt=self._password_prompt,
                send=self._write_now,
                read=self._read,
                peer=f"the console at {self.where}",
            )
            booting, self._restarting = self._restarting and self._stream is not None, False
            if not booting:
                self._pending.clear()
            self._reading = True
            # A little under connect_timeout: the session that waits for this has
            # the same bound, and this error says what the console printed.
            budget = self.connect_timeout - min(0.25, self.connect_timeout / 10)
            try:
                async with asyncio.timeout(budget):
                    if self._stream is None:
                        await self._open_stream()
                    await self._reach_shell(self._dialog, booting=booting)
            except TimeoutError:
                raise self._no_shell() from None
            except BaseException:
                if self._state != "shell":
                    self._drop_stream()
                raise
            finally:
                self._reading = False
                self._pending.clear()
            self._state = "shell"

    def _no_shell(self) -> ConnectError:
        dialog = self._dialog
        assert dialog is not None
        self._drop_stream()
        if dialog.failed:
            return dialog.refused(dialog.failed)
        received = dialog.buffer.text()
        said = f"received: {tail(dialog.shown(received))!r}" if received else "it printed nothing"
        program = held_by(received)
        if program is not None and program.leave is None:
            why = f"; it shows {program.name}'s prompt, not a shell (no shell probes were typed)"
        elif program is not None:
            why = f"; {program.name} holds it and did not end on Ctrl-C or its way out"
        else:
            why = " (Ctrl-C sent too)"
        return ConnectError(
            self.name,
            f"no shell answered on the console {self.where} within {self.connect_timeout:g}s"
            f"{why}; {said}",
        )

    def _not_a_shell(self, program: _Program) -> ConnectError:
        return ConnectError(
            self.name,
            f"the console {self.where} shows {program.name}'s prompt, not a shell: otto types "
            "no shell probes into it (wait for it with wait_until_up(prompt=...), drive it "
            "with open_app(None, prompt))",
        )

    async def open_raw(self) -> None:
        """Open the stream only: no login, no shell (a person's terminal, a bootloader)."""
        async with self._connecting:
            if self._stream is None:
                try:
                    async with asyncio.timeout(self.connect_timeout):
                        await self._open_stream()
                except TimeoutError:
                    self._drop_stream()
                    raise ConnectError(
                        self.name,
                        f"cannot open the console {self.where} within {self.connect_timeout:g}s",
                    ) from None

    async def _open_stream(self) -> None:
        try:
            self._stream = await self._opener(self)
        except OSError as exc:
            raise ConnectError(self.name, f"cannot open the console {self.where}: {exc}") from exc
        self._state = "link"
        if self._log is not None:
            try:
                self._log.open()
            except OSError as exc:
                self._drop_stream()
                raise ConnectError(
                    self.name, f"cannot open console_log {self._log.path}: {exc}"
                ) from exc
        log.debug("%s: console %s open", self.name, self.where)

    async def _reach_shell(self, dialog: LoginDialog, *, booting: bool = False) -> None:
        """Log in if a prompt shows; else wait until a shell answers (Ctrl-C between tries).

        ``booting``: the kernel said it restarts; nothing is typed until a prompt shows
        (or half the connect timeout passed): keys typed while it boots would reach the
        login as a user name.
        """
        a = secrets.randbelow(10**6) + 10**6
        # A leftover otto shell (a link that dropped) says so; it is ended first.
        answer = re.compile(rf"(?<![0-9+]){a + 1}(-otto)?(?![0-9])")
        prompts = (dialog.login_re, dialog.password_re)
        patterns = (answer, *prompts)
        # A prompt may be waiting already: typing a probe into it would be a login
        # attempt. If nothing shows, Ctrl-C asks for a fresh prompt (a shell prints
        # its prompt again, login ends and getty starts another, U-Boot stops what
        # runs). Never Enter: U-Boot would run its last command again.
        found = await self._look(dialog, prompts, _FIRST_LOOK)
        if found is None and booting:
            found = await self._look(dialog, (*prompts, _SHELL_PROMPT), self.connect_timeout / 2)
        if found is None and not dialog.buffer.text().strip():
            self._write_now(_CTRL_C)
            found = await self._look(dialog, (*prompts, _SHELL_PROMPT), _PROMPT_WAIT)
        if found is None or found.index == 2:
            program = held_by(dialog.buffer.text() if found is None else found.text)
            if program is not None and program.leave is None:
                # A bootloader: a probe line would be a command to it.
                raise self._not_a_shell(program)
        if found is not None and found.index == 0:
            await dialog.answer_login(found.text)
            return
        if found is not None and found.index == 1:
            dialog.send_line("")  # a password prompt left over: let that try fail
        rounds = ended = leaves = 0
        while True:
            if rounds:
                # Nothing answered: a program may hold the console. Ctrl-C; where it
                # shows a known REPL's prompt, that REPL's way out (Ctrl-D) instead.
                program = held_by(dialog.buffer.text())
                if program is not None and program.leave is None:
                    raise self._not_a_shell(program)  # a bootloader: no more probes
                if program is not None and program.leave is not None and leaves < _LEAVES:
                    leaves += 1
                    log.debug("%s: %s holds the console; leaving it", self.name, program.name)
                    self._write_now(program.leave)
                else:
                    self._write_now(_CTRL_C)
            dialog.send_line(f"echo $(({a}+1))${{__or+-otto}}")
            wait = _PROBE_WAITS[min(rounds, len(_PROBE_WAITS) - 1)]
            rounds += 1
            while True:
                found = await self._look(dialog, patterns, wait)
                if found is None:
                    break
                if found.index == 1:
                    await dialog.answer_login(found.text)
                    return
                if found.index == 2:
                    # The probe went in as a user name; an empty password ends that try.
                    dialog.send_line("")
                    continue
                if found.match is not None and found.match.group(1) and ended < _OTTO_SHELLS_ENDED:
                    ended += 1
                    log.debug("%s: ending an otto shell left on the console", self.name)
                    dialog.send_line("exit")
                    rounds = 0
                    break
                return

    async def _look(
        self, dialog: LoginDialog, patterns: Sequence[re.Pattern[str]], wait: float
    ) -> ExpectMatch | None:
        try:
            async with asyncio.timeout(wait):
                return await dialog.expect(patterns)
        except TimeoutError:
            return None

    # --- the inner shell and the views --------------------------------------------

    async def attach(self, view: ConsoleShell) -> None:
        """Reach a shell if needed, start the inner shell if none runs, make ``view`` active."""
        await self.connect()
        async with self._connecting:
            if self._state == "shell":
                token = secrets.token_hex(8)
                self._inner_token = token
                self._watch = ExitWatch(token)
                self._kernel = KernelLines()
                self._state = "inner"
                self._write_now(inner_shell_command(token, restore_terminal=True).encode() + b"\r")
            elif self._state != "inner":
                raise ConnectError(
                    self.name, f"the console {self.where} closed: {self._lost_reason}"
                )
            if self._holder is not None:
                raise ConnectError(self.name, self._held_message(view))
            if self._wedged and not await self._free_line(self._wedged):
                raise ConnectError(
                    self.name,
                    f"the console {self.where} is held by {self._wedged}, which did not end "
                    "on Ctrl-C, Ctrl-D or Ctrl-\\",
                )
            self._wedged = ""
            self._views.append(view)
            self._active = view

    def detach(self, view: ConsoleShell) -> None:
        if view in self._views:
            self._views.remove(view)
        if self._active is view:
            self._active = None

    async def release(self, view: ConsoleShell) -> None:
        """Detach ``view``; a program it left holding the console is ended first."""
        if self._holder is view:
            async with self._connecting:
                if self._holder is view:
                    what = f"`{self._held_what}`" if self._held_what else "a program"
                    log.debug("%s: ending %s, left on the console by %s", self.name, what, view)
                    if not await self._free_line(what):
                        log.warning(
                            "%s: %s still holds the console %s after Ctrl-C, Ctrl-D and "
                            "Ctrl-\\; the next session tries again",
                            self.name,
                            what,
                            self.where,
                        )
                    self._line_free()
        self.detach(view)

    def write(self, data: bytes, view: ConsoleShell, *, key: bool = False) -> None:
        """Write for ``view``: otto's framing, text for a program (``send``), or a ``key``.

        Raises:
            ConnectionLost: the console is closed.
            ConnectError: a program another session started holds the console.
        """
        if self._stream is None:
            raise ConnectionLost(self.name, self._closed_reason())
        holder = self._holder
        if holder is not None and holder is not view:
            refused = self._held_message(view)
            # The session forgets what it began (a marker it waits for): its next
            # call starts a fresh view, which waits its turn.
            view.report_lost(None, refused)
            raise ConnectError(self.name, refused)
        if self._free_marker:
            raise ConnectError(
                self.name, f"the console {self.where} is busy ending a program left on it"
            )
        if not key:
            self._typed(data, view)
        self._active = view
        self._write_now(data)

    def _closed_reason(self) -> str:
        return f"the console {self.where} is closed" + (
            f" ({self._lost_reason})" if self._lost_reason else ""
        )

    async def drain(self) -> None:
        if self._stream is not None:
            await self._stream.drain()

    def add_tap(self, tap: Callable[[bytes], None]) -> Callable[[], None]:
        """Also hand every byte the console prints to ``tap`` (``b""``: the stream ended)."""
        self._taps.append(tap)
        return lambda: self._taps.remove(tap)

    def add_closer(self, closer: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Have ``closer`` awaited before the link closes, while the stream still works.

        A session as another user leaves that user's shell through it, so no
        close of the link (``disconnect`` too) leaves that shell on the console.
        Returns a function that removes it.
        """
        self._closers.append(closer)

        def remove() -> None:
            if closer in self._closers:
                self._closers.remove(closer)

        return remove

    def write_raw(self, data: bytes) -> None:
        """Write to the console as it is (a person's keys)."""
        self._write_now(data)

    def write_stream(self, data: bytes) -> None:
        """Write to the console as it is, for a raw view; ``ConnectionLost`` once closed."""
        if self._stream is None:
            raise ConnectionLost(self.name, self._closed_reason())
        self._write_now(data)

    def add_raw_view(self, view: ConsoleStreamView) -> None:
        self._raw_views.append(view)

    def remove_raw_view(self, view: ConsoleStreamView) -> None:
        if view in self._raw_views:
            self._raw_views.remove(view)

    # --- closing ------------------------------------------------------------------

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        self._state = "closed"
        if stream is not None:
            stream.close()
        if self._log is not None:
            self._log.close()

    async def close(self) -> None:
        """End the inner shell (the console is left at its own shell) and close the stream.

        Every session on the console, raw ones too, is told it is closed.
        """
        closers, self._closers = self._closers, []
        for closer in closers:
            await closer()  # each bounds its own wait
        stream = self._stream
        if stream is not None and self._state == "inner":
            if self._holder is not None or self._wedged:
                # A program started with send() holds the console: end it first.
                what = f"`{self._held_what}`" if self._held_what else "a program"
                if not await self._free_line(self._wedged or what):
                    log.warning(
                        "%s: %s still holds the console %s as otto leaves it",
                        self.name,
                        self._wedged or what,
                        self.where,
                    )
            # Ctrl-C first: a program may still hold the console.
            stream.write(leave_inner(self._inner_token))
            try:
                async with asyncio.timeout(1.0):
                    await stream.drain()
            except TimeoutError:
                pass
        self._views_lost(None, "the console was closed")
        self._views.clear()
        self._active = None
        self._line_free()
        self._wedged = ""
        self._lost_reason = "closed by otto"
        self._drop_stream()
        for tap in list(self._taps):
            tap(b"")  # raw sessions and a person's terminal: the stream ended

    def abandon(self) -> None:
        # At interpreter exit the loop may be closed already; the OS closes the rest.
        with contextlib.suppress(RuntimeError):
            self._drop_stream()


class ConsoleShell(ShellTransport):
    """One session's view of its host's console: the shared inner shell, on a terminal."""

    pty = True
    persists = True

    def __init__(self, link: ConsoleLink) -> None:
        self._link = link
        self.description = f"console {link.where}"
        self._wrapped = False

    def __repr__(self) -> str:
        return f"<ConsoleShell {self._link.name!r} {self._link.where}>"

    @property
    def who(self) -> str:
        """The session this view serves (``host/session``), for messages."""
        return str(getattr(self._receiver, "where", ""))

    async def open(self, receiver: Receiver) -> None:
        self._receiver = receiver
        # A transport on top (privilege: sudo, su) holds the console its own way
        # and types lines of its own: those are no program left on the console.
        self._wrapped = isinstance(receiver, ShellTransport)
        await self._link.attach(self)

    def deliver(self, data: bytes) -> None:
        if not self._closing and self._receiver is not None:
            self._receiver.data_received(data)

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._link.write(data, self, key=self._wrapped)

    async def drain(self) -> None:
        if not self._closing:
            await self._link.drain()

    async def interrupt(self, shell_pid: int | None) -> None:
        if not self._closing:
            self._link.write(_CTRL_C, self, key=True)

    async def kill_children(self, shell_pid: int | None) -> None:
        # Only the terminal reaches the processes: Ctrl-\\ (SIGQUIT) is harder to ignore.
        if not self._closing:
            self._link.write(_CTRL_BACKSLASH_C, self, key=True)

    def before_link_closes(self, closer: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Have ``closer`` awaited before the console's link closes (``ConsoleLink.add_closer``)."""
        return self._link.add_closer(closer)

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        await self._link.release(self)


class ConsoleStreamView(ShellTransport):
    """The console as it is, with no login and no shell: for a bootloader or a device CLI.

    Everything the console prints reaches the session; what the session writes
    goes to the console unchanged. Closing the view leaves the console as it is.
    """

    pty = True

    def __init__(self, link: ConsoleLink) -> None:
        self._link = link
        self.description = f"console {link.where} (raw)"
        self._remove: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<ConsoleStreamView {self._link.name!r} {self._link.where}>"

    async def open(self, receiver: Receiver) -> None:
        self._receiver = receiver
        await self._link.open_raw()
        self._remove = self._link.add_tap(self._tapped)
        self._link.add_raw_view(self)

    def _tapped(self, data: bytes) -> None:
        if not data:
            self._link.remove_raw_view(self)
            self.report_lost(None, f"the console {self._link.where} closed")
        elif not self._closing and self._receiver is not None:
            self._receiver.data_received(data)

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._link.write_stream(data)

    async def drain(self) -> None:
        if not self._closing:
            await self._link.drain()

    async def interrupt(self, shell_pid: int | None) -> None:
        self.write(_CTRL_C)

    async def kill_children(self, shell_pid: int | None) -> None:
        self.write(_CTRL_C)

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._link.remove_raw_view(self)
        if self._remove is not None:
            with contextlib.suppress(ValueError):  # the link let it go already
                self._remove()
            self._remove = None
