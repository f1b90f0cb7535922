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
import logging
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import telnetlib3

from otto.errors import AuthenticationError, ConnectError, tail
from otto.expect import ExpectBuffer, ExpectMatch
from otto.transports.base import Receiver, ShellTransport

__all__ = ["LOGIN_PROMPT", "PASSWORD_PROMPT", "TelnetShell"]

log = logging.getLogger("otto.transports.telnet")

LOGIN_PROMPT = r"(?i)(login|username)\s*:\s*$"
PASSWORD_PROMPT = r"(?i)password\s*:\s*$"
_FAILED = re.compile(r"(?i)login incorrect|authentication fail|access denied|permission denied")
_READ = 65536
_KEEPALIVE_PROBES = 3
_PROBE_WAITS = (0.05, 0.1, 0.2, 0.3, 0.5)
"""Seconds to wait for the shell's answer to each probe line during login (then the last).

A probe typed before the shell reads (while login still runs) may be dropped, so
it is sent again; short waits first keep a fast login fast."""

_IAC, _SB, _SE = 255, 250, 240
_WILL, _WONT, _DO, _DONT = 251, 252, 253, 254
# States of the data-phase reader.
_DATA, _CMD, _OPTION, _SUB, _SUB_IAC = range(5)

Tunnel = Callable[[], Awaitable[tuple[str, int, Callable[[], None]]]]
"""Opens a way to the Telnet server; returns (host, port, close)."""


class _SocketOptions(Protocol):
    def setsockopt(self, level: int, option: int, value: int, /) -> None: ...


def _set_keepalive(sock: _SocketOptions, interval: float) -> None:
    """Make the kernel give up on the link after about ``4 * interval`` of silence."""
    every = max(1, round(interval))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", every),
        ("TCP_KEEPINTVL", every),
        ("TCP_KEEPCNT", _KEEPALIVE_PROBES),
        # Keepalives are not sent while data waits for an ACK; this bounds that case.
        ("TCP_USER_TIMEOUT", every * (_KEEPALIVE_PROBES + 1) * 1000),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class _ShellStream(asyncio.Protocol):
    """The socket's protocol once the shell runs: strips Telnet commands, hands on data."""

    def __init__(self, shell: TelnetShell) -> None:
        self._shell = shell
        self._state = _DATA
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self._state == _DATA and _IAC not in data:
            self._shell._forward(data)
            return
        out = self._strip(data)
        if out:
            self._shell._forward(out)

    def _strip(self, data: bytes) -> bytes:
        """The data bytes of ``data``; commands are dropped (the server renegotiates nothing)."""
        out = bytearray()
        state = self._state
        i, n = 0, len(data)
        while i < n:
            if state == _DATA:
                at = data.find(_IAC, i)
                if at < 0:
                    out += data[i:]
                    break
                out += data[i:at]
                i, state = at + 1, _CMD
                continue
            byte = data[i]
            i += 1
            if state == _CMD:
                if byte == _IAC:
                    out.append(_IAC)
                    state = _DATA
                elif byte in (_WILL, _WONT, _DO, _DONT):
                    state = _OPTION
                elif byte == _SB:
                    state = _SUB
                else:
                    state = _DATA
            elif state == _OPTION:
                log.debug("%s: ignored a Telnet option request after login", self._shell.name)
                state = _DATA
            elif state == _SUB:
                if byte == _IAC:
                    state = _SUB_IAC
            else:  # _SUB_IAC
                state = _DATA if byte == _SE else _SUB
        self._state = state
        return bytes(out)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        shell = self._shell
        if exc is None:
            reason = "the Telnet connection closed"
        elif isinstance(exc, TimeoutError):
            reason = (
                f"no answer from {shell.address}:{shell.port} for about "
                f"{shell.keepalive_interval * (_KEEPALIVE_PROBES + 1):g}s (keepalives unanswered)"
            )
        else:
            reason = f"the Telnet connection broke: {exc}"
        shell._lost(None, reason)
        self.resume_writing()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if not self._paused:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await self._drained


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
        self._login_re = re.compile(login_prompt, re.MULTILINE)
        self._password_re = re.compile(password_prompt, re.MULTILINE)
        self._tunnel = tunnel
        self._tunnel_close: Callable[[], None] | None = None
        self.description = f"telnet {user}@{address}:{port}"
        self._reader: telnetlib3.TelnetReader | None = None
        self._writer: telnetlib3.TelnetWriter | None = None
        self._transport: asyncio.Transport | None = None
        self._stream: _ShellStream | None = None
        self._receiver: Receiver | None = None
        self._login = ExpectBuffer(max_chars=64 * 1024)
        self._failed = ""
        self._exit_prefix = b""
        self._held = b""
        self._exiting: bytes | None = None
        self._reported = False
        self._closing = False

    async def open(self, receiver: Receiver) -> None:
        self._receiver = receiver
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self._logins is None:
                    await self._connect()
                    await self._log_in()
                else:
                    async with self._logins:
                        await self._connect()
                        await self._log_in()
        except TimeoutError:
            await self.close()
            if self._failed:
                raise self._refused(self._failed) from None
            raise ConnectError(
                self.name,
                f"no Telnet login to {self.address}:{self.port} within "
                f"{self.connect_timeout:g}s; received: {tail(self._login.text())!r}",
            ) from None
        except BaseException:
            await self.close()
            raise

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
        transport = writer.transport
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
            _set_keepalive(sock, self.keepalive_interval)

    async def _expect(self, patterns: Sequence[re.Pattern[str]]) -> ExpectMatch:
        """Read login output until one of ``patterns`` matches."""
        assert self._reader is not None
        buffer = self._login
        while True:
            found = buffer.search_any(patterns)
            if found is not None:
                return found
            data = await self._reader.read(_READ)
            if not data:
                raise ConnectError(
                    self.name,
                    "the Telnet server closed the connection during login; it said: "
                    f"{tail(buffer.text())!r}",
                )
            buffer.feed(data)

    def _send_line(self, text: str) -> None:
        """Write a line straight to the socket: no library below otto traces it."""
        assert self._transport is not None
        data = text.encode() + b"\r"
        self._transport.write(data.replace(b"\xff", b"\xff\xff"))

    def _refused(self, said: str) -> AuthenticationError:
        return AuthenticationError(
            self.name, f"login refused for {self.user}; the server said: {tail(said.strip())!r}"
        )

    async def _log_in(self) -> None:
        found = await self._expect((self._login_re, self._password_re))
        if found.index == 0:
            self._send_line(self.user)
            found = await self._expect((self._password_re, _FAILED))
            if found.index == 1:
                raise self._refused(found.text)
        self._send_line(self._password or "")
        await self._prove_shell()
        # The login shell prints the inner shell's status when it ends, behind a
        # token no command output can predict.
        token = secrets.token_hex(8)
        self._exit_prefix = b"\x1eotto-exit:" + token.encode() + b":"
        self._take_over()
        self._send_line(
            # A script on /dev/stdin (the terminal) keeps the shell non-interactive.
            "if command -v bash >/dev/null 2>&1; then bash --noprofile --norc /dev/stdin; "
            "else sh /dev/stdin; fi; "
            f"printf '\\036otto-exit:%s:%d\\037' {token} $?"
        )

    async def _prove_shell(self) -> None:
        """Wait until a shell reads our input, or the login is refused.

        The answer to a sum cannot be the echo of it. Failure text ("Access
        denied") decides only if no shell ever answers: a profile may print it
        too. A refusal shows as a new login or password prompt, the server
        closing the connection, or silence until ``connect_timeout``.
        """
        a = secrets.randbelow(10**6) + 10**6
        answer = re.compile(rf"(?<![0-9+]){a + 1}(?![0-9])")
        patterns = (answer, self._login_re, self._password_re, _FAILED)
        rounds = 0
        while True:
            self._send_line(f"echo $(({a}+1))")
            try:
                async with asyncio.timeout(_PROBE_WAITS[min(rounds, len(_PROBE_WAITS) - 1)]):
                    while True:
                        found = await self._expect(patterns)
                        if found.index == 0:
                            self._failed = ""
                            return
                        if found.index in (1, 2):
                            # Asked to log in again: the password was wrong.
                            raise self._refused(self._failed or found.text)
                        self._failed = found.text
            except TimeoutError:
                rounds += 1
            except ConnectError:
                if self._failed:
                    raise self._refused(self._failed) from None
                raise

    def _take_over(self) -> None:
        """From here on the socket's bytes go straight to ``_forward`` (see the module doc).

        What telnetlib3 still holds was printed before the inner shell starts:
        the login shell's prompts and answers to surplus probes, of no use to the session.
        """
        assert self._transport is not None
        self._stream = _ShellStream(self)
        self._transport.set_protocol(self._stream)
        self._login.clear()

    def _forward(self, data: bytes) -> None:
        """Hand output on, up to the marker the login shell prints when the inner shell exits."""
        if self._reported or self._closing:
            return
        if self._held:
            data, self._held = self._held + data, b""
        if self._exiting is not None:
            self._exit_status(self._exiting + data)
            return
        prefix = self._exit_prefix
        at = data.find(prefix)
        if at >= 0:
            if at and self._receiver is not None:
                self._receiver.data_received(data[:at])
            self._exit_status(data[at + len(prefix) :])
            return
        # A marker may start at the end of this read and go on in the next: hold that part.
        start = data.rfind(b"\x1e", max(0, len(data) - len(prefix) + 1))
        if start >= 0 and prefix.startswith(data[start:]):
            data, self._held = data[:start], data[start:]
        if data and self._receiver is not None:
            self._receiver.data_received(data)

    def _exit_status(self, rest: bytes) -> None:
        end = rest.find(b"\x1f")
        if end < 0 and len(rest) < 12:
            self._exiting = rest  # the status is still on its way
            return
        self._exiting = None
        digits = rest[:end] if end >= 0 else b""
        status = int(digits) if digits.isdigit() else None
        self._lost(status, f"shell exited with {status}")

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
