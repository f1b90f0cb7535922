"""Telnet: log in at the login and password prompts, then run a clean inner shell.

The server gives every Telnet connection a pseudo-terminal, so sessions over
Telnet are framed as pty sessions (no echo, Ctrl-C interrupts). After login the
transport starts an inner shell (bash if present) from the login shell, and has
the login shell print the inner shell's exit status when it ends: so ``exit 3``
yields status 3 over Telnet too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable

import telnetlib3

from otto.errors import AuthenticationError, ConnectError, tail
from otto.transports.base import Receiver, ShellTransport

__all__ = ["LOGIN_PROMPT", "PASSWORD_PROMPT", "TelnetShell"]

LOGIN_PROMPT = r"(?i)(login|username)\s*:\s*$"
PASSWORD_PROMPT = r"(?i)password\s*:\s*$"
_FAILED = re.compile(rb"(?i)login incorrect|authentication fail|access denied|permission denied")
_READ = 65536

Tunnel = Callable[[], Awaitable[tuple[str, int, Callable[[], None]]]]
"""Opens a way to the Telnet server; returns (host, port, close)."""


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
        self._login_re = re.compile(login_prompt.encode(), re.MULTILINE)
        self._password_re = re.compile(password_prompt.encode(), re.MULTILINE)
        self._tunnel = tunnel
        self._tunnel_close: Callable[[], None] | None = None
        self.description = f"telnet {user}@{address}:{port}"
        self._reader: telnetlib3.TelnetReader | None = None
        self._writer: telnetlib3.TelnetWriter | None = None
        self._receiver: Receiver | None = None
        self._pump: asyncio.Task[None] | None = None
        self._exit_prefix = b""
        self._tail = b""
        self._reported = False
        self._closing = False

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._reported and not self._closing

    async def open(self, receiver: Receiver) -> None:
        self._receiver = receiver
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self._logins is None:
                    await self._connect()
                    await self._login()
                else:
                    async with self._logins:
                        await self._connect()
                        await self._login()
        except TimeoutError:
            await self.close()
            raise ConnectError(
                self.name,
                f"no Telnet login to {self.address}:{self.port} within {self.connect_timeout:g}s",
            ) from None
        except BaseException:
            await self.close()
            raise
        self._pump = asyncio.ensure_future(self._pump_output())

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
                self.name, f"cannot connect to {self.address}:{self.port}: {exc}"
            ) from exc
        self._reader, self._writer = reader, writer

    async def _read_until(self, *patterns: re.Pattern[bytes]) -> tuple[int, bytes]:
        assert self._reader is not None
        seen = b""
        while True:
            for i, pattern in enumerate(patterns):
                if pattern.search(seen):
                    return i, seen
            data = await self._reader.read(_READ)
            if not data:
                raise ConnectError(
                    self.name,
                    f"the Telnet server closed the connection during login; it said: "
                    f"{tail(seen.decode('utf-8', 'replace'))!r}",
                )
            seen += data

    def _send_line(self, text: str) -> None:
        assert self._writer is not None
        self._writer.write(text.encode() + b"\r")

    async def _login(self) -> None:
        which, _ = await self._read_until(self._login_re, self._password_re)
        if which == 0:
            self._send_line(self.user)
            which, _ = await self._read_until(self._password_re, _FAILED)
            if which == 1:
                raise AuthenticationError(self.name, f"login refused for {self.user}")
        # telnetlib3 traces every byte it writes (below DEBUG); not these.
        writer_log = logging.getLogger("telnetlib3.stream_writer")
        was_disabled, writer_log.disabled = writer_log.disabled, True
        try:
            self._send_line(self._password or "")
        finally:
            writer_log.disabled = was_disabled
        # Prove a shell reads our input: the answer to a sum cannot be the echo of it.
        a = secrets.randbelow(10**6) + 10**6
        answer = re.compile(b"(?<![0-9+])%d(?![0-9])" % (a + 1))
        token = secrets.token_hex(8)
        self._exit_prefix = b"\x1eotto-exit:" + token.encode() + b":"
        for _attempt in range(int(self.connect_timeout * 2) + 1):
            self._send_line(f"echo $(({a}+1))")
            try:
                async with asyncio.timeout(0.5):
                    which, _ = await self._read_until(answer, _FAILED, self._login_re)
            except TimeoutError:
                continue
            if which != 0:
                raise AuthenticationError(self.name, f"login refused for {self.user}")
            break
        inner = (
            # A script on /dev/stdin (the terminal) keeps the shell non-interactive.
            "if command -v bash >/dev/null 2>&1; then bash --noprofile --norc /dev/stdin; "
            "else sh /dev/stdin; fi; "
            f"printf '\\036otto-exit:%s:%d\\037' {token} $?"
        )
        self._send_line(inner)

    async def _pump_output(self) -> None:
        assert self._reader is not None
        reader = self._reader
        try:
            while True:
                data = await reader.read(_READ)
                if not data:
                    self._lost(None, "the Telnet connection closed")
                    return
                self._forward(data)
        except (OSError, EOFError) as exc:
            self._lost(None, f"the Telnet connection broke: {exc}")

    def _forward(self, data: bytes) -> None:
        """Hand output on, up to the marker the login shell prints when the inner shell exits."""
        window = self._tail + data
        at = window.find(self._exit_prefix)
        if at < 0:
            self._tail = window[-(len(self._exit_prefix) + 12) :]
            if self._receiver is not None and not self._reported:
                self._receiver.data_received(data)
            return
        before = max(0, at - len(self._tail))
        if before and self._receiver is not None and not self._reported:
            self._receiver.data_received(data[:before])
        rest = window[at + len(self._exit_prefix) :]
        end = rest.find(b"\x1f")
        status = None
        if end >= 0:
            with contextlib.suppress(ValueError):
                status = int(rest[:end])
        self._lost(status, f"shell exited with {status}")

    def _lost(self, status: int | None, reason: str) -> None:
        if self._reported or self._closing:
            return
        self._reported = True
        if self._receiver is not None:
            self._receiver.connection_lost(status, reason)

    def write(self, data: bytes) -> None:
        if self._writer is not None and not self._closing:
            self._writer.write(data)

    async def drain(self) -> None:
        if self._writer is not None:
            await self._writer.drain()

    async def interrupt(self, shell_pid: int | None) -> None:
        self.write(b"\x03")

    async def kill_children(self, shell_pid: int | None) -> None:
        # Only the terminal reaches the processes: Ctrl-\ (SIGQUIT) is harder to ignore.
        self.write(b"\x1c\x03")

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump
        if self._writer is not None:
            self._writer.close()
        if self._tunnel_close is not None:
            self._tunnel_close()
