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
the first unanswered probe otto presses Ctrl-C before each next one.

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
from typing import Protocol

from otto.errors import ConnectError, tail
from otto.expect import ExpectMatch
from otto.transports.base import Receiver, ShellTransport, WriteFlow
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
]

log = logging.getLogger("otto.transports.console")

_READ_LIMIT = 1024 * 1024
"""Bytes kept for the login dialog while nobody reads them."""
_FIRST_LOOK = 0.1
"""Seconds to wait for what the console prints on its own when otto connects
(what it printed before is delivered at once)."""
_PROMPT_WAIT = 0.3
"""Seconds to wait for a prompt after pressing Enter on a silent console."""
_PROBE_WAITS = (0.3, 0.5, 1.0)
"""Seconds to wait for an answer to each probe line (then the last, again and again)."""
_OTTO_SHELLS_ENDED = 3
"""How many leftover otto shells (from a link that dropped) are ended before giving up."""
_SHELL_PROMPT = re.compile(r"[$#>%]\s*(\x1b\[[0-9;?]*[A-Za-z])*$", re.MULTILINE)
_CTRL_C = b"\x03"


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
        self._taps: list[Callable[[bytes], None]] = []
        # What arrives while otto waits for a prompt or a shell (login, probes).
        self._reading = False
        self._pending = bytearray()
        self._arrived = asyncio.Event()
        self._dialog: LoginDialog | None = None
        self._inner_token = ""

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
            out = watch.feed(data)
            active = self._active
            if out and active is not None:
                active.deliver(out)
            if watch.ended:
                self._state = "shell"
                self._views_lost(watch.status, f"shell exited with {watch.status}")
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
        for tap in self._taps:
            tap(b"")
        self._views_lost(None, reason)
        if self._log is not None:
            self._log.close()

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
            self._pending.clear()
            self._reading = True
            # A little under connect_timeout: the session that waits for this has
            # the same bound, and this error says what the console printed.
            budget = self.connect_timeout - min(0.25, self.connect_timeout / 10)
            try:
                async with asyncio.timeout(budget):
                    if self._stream is None:
                        await self._open_stream()
                    await self._reach_shell(self._dialog)
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
        return ConnectError(
            self.name,
            f"no shell answered on the console {self.where} within {self.connect_timeout:g}s "
            f"(Ctrl-C sent too); {said}",
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

    async def _reach_shell(self, dialog: LoginDialog) -> None:
        """Log in if a prompt shows; else wait until a shell answers (Ctrl-C between tries)."""
        a = secrets.randbelow(10**6) + 10**6
        # A leftover otto shell (a link that dropped) says so; it is ended first.
        answer = re.compile(rf"(?<![0-9+]){a + 1}(-otto)?(?![0-9])")
        prompts = (dialog.login_re, dialog.password_re)
        patterns = (answer, *prompts)
        # A prompt may be waiting already: typing a probe into it would be a login
        # attempt. If nothing shows, Enter asks for a fresh prompt (a getty prints
        # its login prompt again, a shell its prompt).
        found = await self._look(dialog, prompts, _FIRST_LOOK)
        if found is None and not dialog.buffer.text().strip():
            dialog.send_line("")
            found = await self._look(dialog, (*prompts, _SHELL_PROMPT), _PROMPT_WAIT)
        if found is not None and found.index == 0:
            await dialog.answer_login(found.text)
            return
        if found is not None and found.index == 1:
            dialog.send_line("")  # a password prompt left over: let that try fail
        rounds = ended = 0
        while True:
            if rounds:
                # Nothing answered: a program may hold the console.
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
                self._state = "inner"
                self._write_now(inner_shell_command(token, restore_terminal=True).encode() + b"\r")
            elif self._state != "inner":
                raise ConnectError(
                    self.name, f"the console {self.where} closed: {self._lost_reason}"
                )
            self._views.append(view)
            self._active = view

    def detach(self, view: ConsoleShell) -> None:
        if view in self._views:
            self._views.remove(view)
        if self._active is view:
            self._active = None

    def write(self, data: bytes, view: ConsoleShell) -> None:
        self._active = view
        self._write_now(data)

    async def drain(self) -> None:
        if self._stream is not None:
            await self._stream.drain()

    def add_tap(self, tap: Callable[[bytes], None]) -> Callable[[], None]:
        """Also hand every byte the console prints to ``tap`` (``b""``: the stream ended)."""
        self._taps.append(tap)
        return lambda: self._taps.remove(tap)

    def write_raw(self, data: bytes) -> None:
        """Write to the console as it is (a person's keys)."""
        self._write_now(data)

    # --- closing ------------------------------------------------------------------

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        self._state = "closed"
        if stream is not None:
            stream.close()
        if self._log is not None:
            self._log.close()

    async def close(self) -> None:
        """End the inner shell (the console is left at its own shell) and close the stream."""
        stream = self._stream
        if stream is not None and self._state == "inner":
            # Ctrl-C first: a program started with send() may still hold the console.
            stream.write(leave_inner(self._inner_token))
            try:
                async with asyncio.timeout(1.0):
                    await stream.drain()
            except TimeoutError:
                pass
        self._views_lost(None, "the console was closed")
        self._views.clear()
        self._active = None
        self._drop_stream()

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

    def __repr__(self) -> str:
        return f"<ConsoleShell {self._link.name!r} {self._link.where}>"

    async def open(self, receiver: Receiver) -> None:
        self._receiver = receiver
        await self._link.attach(self)

    def deliver(self, data: bytes) -> None:
        if not self._closing and self._receiver is not None:
            self._receiver.data_received(data)

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._link.write(data, self)

    async def drain(self) -> None:
        if not self._closing:
            await self._link.drain()

    async def interrupt(self, shell_pid: int | None) -> None:
        self.write(_CTRL_C)

    async def kill_children(self, shell_pid: int | None) -> None:
        # Only the terminal reaches the processes: Ctrl-\\ (SIGQUIT) is harder to ignore.
        self.write(b"\x1c\x03")

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._link.detach(self)


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

    def _tapped(self, data: bytes) -> None:
        if not data:
            self.report_lost(None, f"the console {self._link.where} closed")
        elif not self._closing and self._receiver is not None:
            self._receiver.data_received(data)

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._link.write_raw(data)

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
        if self._remove is not None:
            self._remove()
            self._remove = None
