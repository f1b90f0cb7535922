"""What the Telnet and console transports share: the login dialog, the Telnet
data phase, and the inner shell whose exit status the login shell reports.

A login is matched with ``ExpectBuffer.search_any`` (the earliest match wins),
and a shell is proven by the answer to a sum, which its echo can never show.
The password is written straight to the link: no library below otto traces it,
and it is never part of a message or a log (it is registered with
``otto.redact``, and every message built from what the link printed is masked).

A prompt counts only where it ends what the link has printed so far (see
``anchored``): a message of the day that says "Last login:" or "change your
password:" on a line of its own is not a prompt.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from otto import redact
from otto.errors import AuthenticationError, ConnectError, tail
from otto.expect import ExpectBuffer, ExpectMatch

__all__ = [
    "FAILED",
    "KEEPALIVE_PROBES",
    "LOGIN_PROMPT",
    "PASSWORD_PROMPT",
    "ExitWatch",
    "LoginDialog",
    "TelnetStripper",
    "anchored",
    "inner_shell_command",
    "leave_inner",
    "set_keepalive",
    "telnet_answer",
]

LOGIN_PROMPT = r"(?i)(?<!last )(?:login|user ?name)[ \t]*:[ \t]*$"
PASSWORD_PROMPT = r"(?i)password[ \t]*:[ \t]*$"
FAILED = re.compile(r"(?i)login incorrect|authentication fail|access denied|permission denied")
KEEPALIVE_PROBES = 3
PROBE_WAITS = (0.05, 0.1, 0.2, 0.3, 0.5)
"""Seconds to wait for the shell's answer to each probe line during login (then the last).

A probe typed before the shell reads (while login still runs) may be dropped, so
it is sent again; short waits first keep a fast login fast."""

_IAC, _SB, _SE = 255, 250, 240
_WILL, _WONT, _DO, _DONT = 251, 252, 253, 254
# States of the Telnet data-phase reader.
_DATA, _CMD, _OPTION, _SUB, _SUB_IAC = range(5)


_ESC = r"(?:\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_])"
_LEADING_FLAGS = re.compile(r"\A\(\?[aiLmsux]+\)")


def anchored(prompt: str) -> re.Pattern[str]:
    """``prompt`` as a login looks for it: where it ends what was printed so far.

    Escape sequences (colours) after it belong to it; a match that ends a line
    (a newline follows it) is not a prompt but text that merely looks like one.
    """
    compiled = re.compile(prompt, re.MULTILINE)
    # Global flags such as (?i) must lead the whole pattern, not a group.
    body = _LEADING_FLAGS.sub("", compiled.pattern)
    body = re.sub(r"(?<!\\)\$\Z", "", body)  # the end is \Z, after any escapes
    return re.compile(rf"(?:{body})(?<![\r\n]){_ESC}*\Z", compiled.flags)


class _SocketOptions(Protocol):
    def setsockopt(self, level: int, option: int, value: int, /) -> None: ...


def set_keepalive(sock: _SocketOptions, interval: float) -> None:
    """Make the kernel give up on the link after about ``4 * interval`` of silence."""
    every = max(1, round(interval))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", every),
        ("TCP_KEEPINTVL", every),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
        # Keepalives are not sent while data waits for an ACK; this bounds that case.
        ("TCP_USER_TIMEOUT", every * (KEEPALIVE_PROBES + 1) * 1000),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class TelnetStripper:
    """The data bytes of a Telnet stream; commands are dropped.

    ``on_option(command, option)`` hears each option request (WILL, WONT, DO,
    DONT), for a caller that answers or logs them.
    """

    __slots__ = ("_command", "_on_option", "_state")

    def __init__(self, on_option: Callable[[int, int], None] | None = None) -> None:
        self._state = _DATA
        self._command = 0
        self._on_option = on_option

    def strip(self, data: bytes) -> bytes:
        if self._state == _DATA and _IAC not in data:
            return data
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
                    self._command = byte
                    state = _OPTION
                elif byte == _SB:
                    state = _SUB
                else:
                    state = _DATA
            elif state == _OPTION:
                if self._on_option is not None:
                    self._on_option(self._command, byte)
                state = _DATA
            elif state == _SUB:
                if byte == _IAC:
                    state = _SUB_IAC
            else:  # _SUB_IAC
                state = _DATA if byte == _SE else _SUB
        self._state = state
        return bytes(out)


_WANTED_FROM_SERVER = frozenset({0, 1, 3})  # BINARY, ECHO, SUPPRESS-GO-AHEAD
_OFFERED_BY_CLIENT = frozenset({0, 3})  # BINARY, SUPPRESS-GO-AHEAD


def telnet_answer(command: int, option: int) -> bytes:
    """A client's answer to a server's option request: binary data, no go-ahead, its echo.

    Everything else is refused; WONT and DONT need no answer.
    """
    if command == _WILL:
        return bytes((_IAC, _DO if option in _WANTED_FROM_SERVER else _DONT, option))
    if command == _DO:
        return bytes((_IAC, _WILL if option in _OFFERED_BY_CLIENT else _WONT, option))
    return b""


def inner_shell_command(token: str, *, restore_terminal: bool = False) -> str:
    """The line that starts otto's inner shell from a login shell.

    A script on /dev/stdin (the terminal) keeps the shell non-interactive; when
    it ends, the login shell prints its exit status behind ``token`` (see
    ``ExitWatch``). ``restore_terminal`` gives the terminal sane settings back
    first, for a console a person may use after otto.
    """
    restore = "stty sane 2>/dev/null; " if restore_terminal else ""
    # OTTO_INNER names the inner shell, so that leaving it (see ``leave_inner``)
    # can never log the login shell out when the inner one has ended already.
    return (
        f"if command -v bash >/dev/null 2>&1; then OTTO_INNER={token} bash --noprofile "
        f"--norc /dev/stdin; else OTTO_INNER={token} sh /dev/stdin; fi; "
        f"__oe=$?; {restore}printf '\\036otto-exit:%s:%d\\037' {token} $__oe"
    )


def leave_inner(token: str) -> bytes:
    """What ends otto's inner shell ``token``, and nothing else.

    Ctrl-C first (a program may still hold the terminal); ``exit`` only in the
    shell whose ``OTTO_INNER`` is the token: a login shell reading it does nothing.
    """
    return b'\x03[ "$OTTO_INNER" = %s ] && exit\r' % token.encode()


class ExitWatch:
    """Passes an inner shell's output on, up to the marker printed when it exits."""

    __slots__ = ("_exiting", "_held", "ended", "prefix", "status")

    def __init__(self, token: str) -> None:
        self.prefix = b"\x1eotto-exit:" + token.encode() + b":"
        self._held = b""
        self._exiting: bytes | None = None
        self.ended = False
        self.status: int | None = None

    def feed(self, data: bytes) -> bytes:
        """The part of ``data`` the shell printed; sets ``ended`` once the marker is complete."""
        if self.ended:
            return b""
        if self._held:
            data, self._held = self._held + data, b""
        if self._exiting is not None:
            self._exit_status(self._exiting + data)
            return b""
        prefix = self.prefix
        at = data.find(prefix)
        if at >= 0:
            self._exit_status(data[at + len(prefix) :])
            return data[:at]
        # A marker may start at the end of this read and go on in the next: hold that part.
        start = data.rfind(b"\x1e", max(0, len(data) - len(prefix) + 1))
        if start >= 0 and prefix.startswith(data[start:]):
            data, self._held = data[:start], data[start:]
        return data

    def _exit_status(self, rest: bytes) -> None:
        end = rest.find(b"\x1f")
        if end < 0 and len(rest) < 12:
            self._exiting = rest  # the status is still on its way
            return
        self._exiting = None
        digits = rest[:end] if end >= 0 else b""
        self.status = int(digits) if digits.isdigit() else None
        self.ended = True


class LoginDialog:
    """A login at a login and a password prompt, and the proof that a shell answers.

    Args:
        name: the host, for errors.
        password: gives the password when it is typed (the caller keeps the secret).
        send: writes bytes to the link as they are (no tracing library in between).
        read: the next bytes from the link; ``b""`` when it closed.
        peer: what is on the other end, for errors ("the Telnet server").
    """

    def __init__(
        self,
        name: str,
        *,
        user: str | None,
        password: Callable[[], str | None],
        login_prompt: str,
        password_prompt: str,
        send: Callable[[bytes], None],
        read: Callable[[], Awaitable[bytes]],
        peer: str,
    ) -> None:
        self.name = name
        self.user = user
        self._password = password
        self.login_re = anchored(login_prompt)
        self.password_re = anchored(password_prompt)
        self._send = send
        self._read = read
        self.peer = peer
        self.buffer = ExpectBuffer(max_chars=64 * 1024)
        #: Failure text seen after the password, while no shell answered yet.
        self.failed = ""

    def __repr__(self) -> str:
        return f"<LoginDialog {self.name!r} user={self.user!r}>"

    def shown(self, text: str) -> str:
        """``text`` the link printed, fit for a message: every secret masked."""
        password = self._password()
        if password:
            text = text.replace(password, redact.MASK)
        return redact.redact(text)

    async def expect(self, patterns: Sequence[re.Pattern[str]]) -> ExpectMatch:
        """Read until one of ``patterns`` matches; ``ConnectError`` if the link closes."""
        buffer = self.buffer
        while True:
            found = buffer.search_any(patterns)
            if found is not None:
                return found
            data = await self._read()
            if not data:
                raise ConnectError(
                    self.name,
                    f"{self.peer} closed the connection during login; it said: "
                    f"{tail(self.shown(buffer.text()))!r}",
                )
            buffer.feed(data)

    def send_line(self, text: str) -> None:
        self._send(text.encode() + b"\r")

    def refused(self, said: str) -> AuthenticationError:
        return AuthenticationError(
            self.name,
            f"login refused for {self.user}; {self.peer} said: {tail(self.shown(said).strip())!r}",
        )

    async def log_in(self) -> None:
        """Wait for the login (or password) prompt and log in."""
        found = await self.expect((self.login_re, self.password_re))
        if found.index == 0:
            await self.answer_login(found.text)
        else:
            await self.answer_password()

    async def answer_login(self, said: str) -> None:
        """The login prompt ``said`` is showing: give the user, then the password."""
        if self.user is None:
            raise ConnectError(
                self.name,
                f"{self.peer} asks for a login and no user was given; it said: "
                f"{tail(self.shown(said).strip())!r}",
            )
        self.send_line(self.user)
        found = await self.expect((self.password_re, FAILED))
        if found.index == 1:
            raise self.refused(found.text)
        await self.answer_password()

    async def answer_password(self) -> None:
        """The password prompt is showing: type the password and wait for a shell."""
        password = self._password() or ""
        redact.register(password)  # its echo must never reach a message
        self._send((password + "\r").encode())
        await self.prove_shell()

    async def prove_shell(self) -> None:
        """Wait until a shell reads our input, or the login is refused.

        The answer to a sum cannot be the echo of it. Failure text ("Access
        denied") decides only if no shell ever answers: a profile may print it
        too. A refusal shows as a new login or password prompt, the link
        closing, or silence until the caller's timeout.
        """
        a = secrets.randbelow(10**6) + 10**6
        answer = re.compile(rf"(?<![0-9+]){a + 1}(?![0-9])")
        patterns = (answer, self.login_re, self.password_re, FAILED)
        rounds = 0
        while True:
            self.send_line(f"echo $(({a}+1))")
            try:
                async with asyncio.timeout(PROBE_WAITS[min(rounds, len(PROBE_WAITS) - 1)]):
                    while True:
                        found = await self.expect(patterns)
                        if found.index == 0:
                            self.failed = ""
                            return
                        if found.index in (1, 2):
                            # Asked to log in again: the password was wrong.
                            raise self.refused(self.failed or found.text)
                        self.failed = found.text
            except TimeoutError:
                rounds += 1
            except ConnectError:
                if self.failed:
                    raise self.refused(self.failed) from None
                raise
