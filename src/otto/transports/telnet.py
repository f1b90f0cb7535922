"""Telnet: log in at the login and password prompts, then run a clean inner shell.

The server gives every Telnet connection a pseudo-terminal, so sessions over
Telnet are framed as pty sessions (no echo, Ctrl-C interrupts). After login the
transport starts an inner shell (bash if present) from the login shell, and has
the login shell print the inner shell's exit status when it ends: so ``exit 3``
yields status 3 over Telnet too.

telnetlib3 opens the connection, negotiates options and carries the login,
matched with the library's ``ExpectBuffer``. Once the login is proven, the
socket's protocol is taken over by a small Telnet data-phase reader that hands
bytes straight to the session: telnetlib3's reader would cost a task and a copy
per read on every round trip, and its writer traces what it writes.

A dead link is noticed by TCP keepalives (idle, then three unanswered probes,
``keepalive_interval`` apart) and ``TCP_USER_TIMEOUT`` (data left unacknowledged
as long), since a Telnet server such as busybox telnetd answers no in-band probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable

import telnetlib3

from otto.errors import ConnectError, tail
from otto.transports.base import Receiver, ShellTransport, WriteFlow
from otto.transports.login import (
    KEEPALIVE_PROBES,
    LOGIN_PROMPT,
    PASSWORD_PROMPT,
    ExitWatch,
    LoginDialog,
    TelnetStripper,
    inner_shell_command,
    set_keepalive,
)
from otto.transports.steps import LOGIN, TCP_CONNECT, connect_budget, os_reason

__all__ = ["LOGIN_PROMPT", "PASSWORD_PROMPT", "TelnetShell"]

log = logging.getLogger("otto.transports.telnet")

_READ = 65536

Tunnel = Callable[[], Awaitable[tuple[str, int, Callable[[], None]]]]
"""Opens a way to the Telnet server; returns (host, port, close)."""


class _ShellStream(WriteFlow):
    """The socket's protocol once the shell runs: strips Telnet commands, hands on data."""

    def __init__(self, shell: TelnetShell) -> None:
        self._shell = shell
        self._stripper = TelnetStripper(self._option_ignored)

    def _option_ignored(self, command: int, option: int) -> None:
        log.debug("%s: ignored a Telnet option request after login", self._shell.name)

    def data_received(self, data: bytes) -> None:
        out = self._stripper.strip(data)
        if out:
            self._shell._forward(out)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        shell = self._shell
        if exc is None:
            reason = "the Telnet connection closed"
        elif isinstance(exc, TimeoutError):
            reason = (
                f"no answer from {shell.address}:{shell.port} for about "
                f"{shell.keepalive_interval * (KEEPALIVE_PROBES + 1):g}s (keepalives unanswered)"
            )
        else:
            reason = f"the Telnet connection broke: {exc}"
        shell._lost(None, reason)
        self.resume_writing()


class TelnetShell(ShellTransport):
    """A logged-in Telnet connection running an inner shell."""

    pty = True

    def __init__(
        self,
        name: str,
        address: str,
        *,
        port: int,
        user: str,
        password: str | None,
        connect_timeout: float,
        keepalive_interval: float = 5.0,
        login_prompt: str = LOGIN_PROMPT,
        password_prompt: str = PASSWORD_PROMPT,
        tunnel: Tunnel | None = None,
        logins: asyncio.Semaphore | None = None,
    ) -> None:
        self.name = name
        self._logins = logins
        self.address = address
        self.port = port
        self.user = user
        self._password = password
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self._tunnel = tunnel
        self._tunnel_close: Callable[[], None] | None = None
        self.description = f"telnet {user}@{address}:{port}"
        self._reader: telnetlib3.TelnetReader | None = None
        self._writer: telnetlib3.TelnetWriter | None = None
        self._transport: asyncio.Transport | None = None
        self._stream: _ShellStream | None = None
        self._receiver: Receiver | None = None
        self._dialog = LoginDialog(
            name,
            user=user,
            password=lambda: self._password,
            login_prompt=login_prompt,
            password_prompt=password_prompt,
            send=self._send_raw,
            read=self._read,
            peer="the Telnet server",
        )
        self._watch = ExitWatch("")
        self._reported = False
        self._closing = False
        self._heard = False

    async def open(self, receiver: Receiver) -> None:
        self._receiver = receiver
        step = TCP_CONNECT
        try:
            async with asyncio.timeout(connect_budget(self.connect_timeout)):
                async with self._logins or contextlib.nullcontext():
                    await self._connect()
                    step = LOGIN
                    await self._log_in()
        except TimeoutError:
            await self.close()
            raise self._timed_out(step) from None
        except ConnectError as exc:
            await self.close()
            if step == LOGIN and self._tunnel is not None and not self._heard:
                # The hop's forward accepts at once and closes when its own connect fails.
                raise ConnectError(
                    self.name,
                    f"TCP connect to {self.address}:{self.port} through the hop failed: the "
                    "connection closed before the Telnet server said anything",
                    step=TCP_CONNECT,
                ) from exc
            exc.step = exc.step or step
            raise
        except BaseException:
            await self.close()
            raise

    def _timed_out(self, step: str) -> ConnectError:
        where, seconds = f"{self.address}:{self.port}", f"{self.connect_timeout:g}s"
        if step == TCP_CONNECT:
            via = " through the hop" if self._tunnel is not None else ""
            return ConnectError(
                self.name, f"no TCP connection to {where}{via} within {seconds}", step=step
            )
        if self._dialog.failed:
            refused = self._dialog.refused(self._dialog.failed)
            refused.step = step
            return refused
        received = tail(self._dialog.buffer.text())
        return ConnectError(
            self.name,
            f"no Telnet login at {where} within {seconds}; received: {received!r}",
            step=step,
        )

    async def _connect(self) -> None:
        host, port = self.address, self.port
        if self._tunnel is not None:
            host, port, self._tunnel_close = await self._tunnel()
        try:
            reader, writer = await telnetlib3.open_connection(
                host,
                port,
                encoding=False,
                force_binary=True,
                connect_minwait=0.0,
                connect_maxwait=0.5,
                term="xterm-256color",
                cols=200,
                rows=50,
            )
        except OSError as exc:
            raise ConnectError(
                self.name,
                f"TCP connect to {self.address}:{self.port} failed: {os_reason(exc)}",
                step=TCP_CONNECT,
            ) from exc
        self._reader, self._writer = reader, writer
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
            set_keepalive(sock, self.keepalive_interval)

    async def _read(self) -> bytes:
        assert self._reader is not None
        data: bytes = await self._reader.read(_READ)
        self._heard = self._heard or bool(data)
        return data

    def _send_raw(self, data: bytes) -> None:
        """Write straight to the socket: no library below otto traces it."""
        assert self._transport is not None
        self._transport.write(data.replace(b"\xff", b"\xff\xff"))

    async def _log_in(self) -> None:
        await self._dialog.log_in()
        # The login shell prints the inner shell's status when it ends, behind a
        # token no command output can predict.
        token = secrets.token_hex(8)
        self._watch = ExitWatch(token)
        self._take_over()
        self._dialog.send_line(inner_shell_command(token))

    def _take_over(self) -> None:
        """From here on the socket's bytes go straight to ``_forward`` (see the module doc).

        What telnetlib3 still holds was printed before the inner shell starts:
        the login shell's prompts and answers to surplus probes, of no use to the session.
        """
        assert self._transport is not None
        self._stream = _ShellStream(self)
        self._transport.set_protocol(self._stream)
        self._dialog.buffer.clear()

    def _forward(self, data: bytes) -> None:
        """Hand output on, up to the marker the login shell prints when the inner shell exits."""
        if self._reported or self._closing:
            return
        watch = self._watch
        data = watch.feed(data)
        if data and self._receiver is not None:
            self._receiver.data_received(data)
        if watch.ended:
            self._lost(watch.status, f"shell exited with {watch.status}")

    def _lost(self, status: int | None, reason: str) -> None:
        self.report_lost(status, reason)

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not self._closing and not transport.is_closing():
            if b"\xff" in data:
                data = data.replace(b"\xff", b"\xff\xff")
            transport.write(data)

    async def drain(self) -> None:
        if self._stream is not None and not self._closing:
            await self._stream.drain()

    async def interrupt(self, shell_pid: int | None) -> None:
        self.write(b"\x03")

    async def kill_children(self, shell_pid: int | None) -> None:
        # Only the terminal reaches the processes: Ctrl-\ (SIGQUIT) is harder to ignore.
        self.write(b"\x1c\x03")

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        transport = self._transport
        if transport is not None:
            if self._reported:
                # The link is gone: nothing queued will ever be delivered.
                transport.abort()
            else:
                transport.close()
        if self._tunnel_close is not None:
            self._tunnel_close()
            self._tunnel_close = None
