"""Privilege: a shell that runs as another user, through sudo or su.

``BecomeShell`` wraps the host's normal shell transport. Its ``open`` opens
that shell on a terminal, replaces it (``exec``) with ``sudo`` or ``su`` running
a shell as the other user, answers the password prompt if one comes, and
waits until the new shell proves it runs (it prints a computed sum). From
then on it only passes bytes through; the session sets the shell up as usual.

Why a terminal, always: sudo hands a signal from an unprivileged user on to
its command's process alone, and su ``-c`` starts a new session, so neither
would pass an interrupt on to a command running as root. Ctrl-C written to the
terminal reaches the foreground command whoever runs it (the kernel sends the
signal), on every kind of host. And su reads passwords only from a terminal.

The password is written straight to the inner transport: it never reaches the
session, a log, an error or a repr (and it is registered with ``otto.redact``).

On a console (an inner shell that outlives otto and that every session shares)
sudo or su runs as a child of the shared shell, not in its place: the session
holds the console (the host's session lock) from opening to closing, the
others wait for it, and closing leaves the other user's shell, so the console
is back at the login user's shell.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from otto import redact
from otto.errors import AuthenticationError, ConnectError, tail
from otto.expect import ExpectBuffer, ExpectMatch
from otto.session import SessionLock
from otto.transports.base import Receiver, ShellTransport
from otto.transports.local import LocalShell, kill_descendants

__all__ = ["BECOME_METHODS", "Become", "BecomeShell", "Secret"]

log = logging.getLogger("otto.hosts.privilege")

BecomeMethod = Literal["sudo", "su"]
BECOME_METHODS: tuple[BecomeMethod, ...] = ("sudo", "su")

_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?")

_SU_PROMPT = re.compile(r"(?i)(?:password|passwort|mot de passe)[^\n:]*:\s*$", re.MULTILINE)
_REFUSED = re.compile(
    r"(?i)(sorry, try again|incorrect password|authentication failure|"
    r"su: permission denied|su: authentication)"
)
_NOT_ALLOWED = re.compile(
    r"(?i)(is not in the sudoers file|is not allowed to|unknown user|does not exist|"
    r"a password is required|not found|no such file)"
)

_LEAVE_KEYS = (b"", b"\x03", b"\x1c\x03")
"""What precedes each attempt to leave the other user's shell on a console:
nothing, then Ctrl-C, then Ctrl-\\ and Ctrl-C (a program may hold it)."""
_LEAVE_WAIT = 2.0
"""Seconds each attempt to leave waits for the shared shell to read again."""

_PROBE_WAITS = (0.3, 0.6, 1.2, 2.5, 5.0, 10.0, 20.0)
"""Seconds to wait for su's shell to answer before asking again (the start-up timeout ends it)."""

# Runs as the other user: say so with a sum no echo of this text can contain,
# then become a shell that reads its commands as a script from the terminal (an
# interactive one prints prompts and job messages), or, where the terminal
# belongs to the first user and cannot be opened again, an interactive one
# (the session's set-up quiets it, as on any terminal). Only the other user acts
# on it: su's probe, typed again, may reach the first user's shell after a refusal.
# OTTO_BECOME names that shell, so leaving it can never end another.
_INNER = (
    '[ "$(id -un 2>/dev/null || echo {user})" = {user} ] && {{ '
    "OTTO_BECOME={token}; export OTTO_BECOME; echo $(({a}+1)); "
    "if command -v bash >/dev/null 2>&1; then s='bash --noprofile --norc'; else s=sh; fi; "
    "if [ -r /dev/stdin ]; then exec $s /dev/stdin; else exec $s; fi; }}"
)


class Secret:
    """A password that shows as ``***`` in every repr, str and ``__dict__``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        redact.register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__


@dataclass(frozen=True)
class Become:
    """Who a session's shell runs as, and how it gets there."""

    user: str
    method: BecomeMethod = "sudo"

    def __post_init__(self) -> None:
        if self.method not in BECOME_METHODS:
            raise ValueError(f"become must be 'sudo' or 'su', not {self.method!r}")
        if not _USER_RE.fullmatch(self.user):
            raise ValueError(f"as_user must be a user name, not {self.user!r}")


class BecomeShell(ShellTransport, Receiver):
    """A shell as ``become.user``, started through ``become.method`` inside ``inner``.

    Args:
        inner: the host's shell transport, unopened; it must sit on a terminal.
        become: the user and the method.
        password: answers a password prompt (sudo: the login user's; su: the
            target user's). Never shown.
        host: the host's name, for errors.
        timeout: seconds the whole start may take (the host's connect_timeout).
        turn: the lock of a shell every session shares (a console's): held
            from ``open`` to ``close``, so no other session types into the
            other user's shell; sudo or su then runs as a child of the shared
            shell, which ``close`` returns to.
    """

    pty = True

    def __init__(
        self,
        inner: ShellTransport,
        become: Become,
        *,
        password: Secret | None,
        host: str,
        timeout: float,
        turn: SessionLock | None = None,
    ) -> None:
        if not inner.pty:
            raise ValueError("privilege needs a shell on a terminal")
        self._inner = inner
        self._become = become
        self._password = password
        self._host = host
        self._timeout = timeout
        self._turn = turn
        self._holding = False
        self._nested = False
        self._unhook: Callable[[], None] | None = None
        self._token = secrets.token_hex(6)
        self._typed: list[str] = []
        back = secrets.randbelow(10**6) + 10**6
        self._back = re.compile(rf"otto-back-{back + 1}(?![0-9])")
        # Typed after sudo or su on their line: the shared shell prints it when they end.
        self._then = f"; echo otto-back-$(({back}+1))"
        self.persists = inner.persists
        self._receiver: Receiver | None = None
        self._buffer = ExpectBuffer(max_chars=64 * 1024)
        self._received = bytearray()
        self._changed: asyncio.Event | None = None
        self._handshake = True
        self._opened = False
        self._lost: tuple[int | None, str] | None = None
        self.description = f"{inner.description} as {become.user} ({become.method})"

    def __repr__(self) -> str:
        return f"<BecomeShell {self.description}>"

    # --- bytes from the inner shell ----------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._handshake:
            self._buffer.feed(data)
            self._received += data
            del self._received[: -8 * 1024]
            if self._changed is not None:
                self._changed.set()
        elif self._receiver is not None:
            self._receiver.data_received(data)

    def connection_lost(self, exit_status: int | None, reason: str) -> None:
        self._lost = (exit_status, reason)
        if self._changed is not None:
            self._changed.set()  # a start or a leave waiting for the shell
        if self._opened:
            self.report_lost(exit_status, reason)
        # The stream is gone: nothing more can be typed into the other user's
        # shell through it (a console reached again ends otto's leftover shells).
        self._release_turn()

    # --- starting -------------------------------------------------------------------

    async def open(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Leave a moment of the session's own start-up budget for its message.
        deadline = loop.time() + self._timeout * 0.95
        try:
            async with asyncio.timeout_at(deadline):
                if self._turn is not None:
                    await self._turn.acquire()
                    self._holding = True
                    self._turn.hold(self._held_error, self._timeout)
                    self._nested = True
                    from otto.transports.console import ConsoleShell

                    if isinstance(self._inner, ConsoleShell):
                        # The link may close first (disconnect): leave before it does.
                        self._unhook = self._inner.before_link_closes(self._leave_for_link)
                await self._inner.open(self)
                if self._become.method == "sudo":
                    await self._sudo()
                else:
                    await self._su()
        except TimeoutError:
            await self._abort()
            raise ConnectError(
                self._host,
                f"no shell as {self._become.user} through {self._become.method} within "
                f"{self._timeout:g}s; received: {tail(self._seen())!r}",
            ) from None
        except BaseException:
            await self._abort()
            raise
        self._buffer.clear()
        self._handshake = False
        self._opened = True

    async def _abort(self) -> None:
        self._drop_hook()
        try:
            if self._nested and self._typed and self._lost is None:  # sudo or su was typed
                await self._leave()
        finally:
            await self._inner.close()
            self._release_turn()

    def _held_error(self) -> ConnectError:
        return ConnectError(
            self._host,
            f"a session as {self._become.user} (through {self._become.method}) holds the "
            f"console; other sessions wait until it is closed (waited {self._timeout:g}s)",
        )

    def _drop_hook(self) -> None:
        unhook, self._unhook = self._unhook, None
        if unhook is not None:
            unhook()

    async def _leave_for_link(self) -> None:
        """The console's link is closing under this session: leave the other user's shell."""
        self._unhook = None
        if self._closing or self._handshake or self._lost is not None:
            return  # closing or starting: they leave it themselves
        if not await self._leave():
            self._would_not_end()

    def _would_not_end(self) -> None:
        log.error(
            "%s: the shell as %s would not end; the console may still run it "
            "(otto ends it when it next reaches the console)",
            self._host,
            self._become.user,
        )

    def _release_turn(self) -> None:
        if self._holding and self._turn is not None:
            self._holding = False
            self._turn.release()

    def _type(self, line: str) -> None:
        """Write one line of otto's own; its echo is kept out of messages."""
        self._typed.append(line[:24])
        self._inner.write(line.encode() + b"\n")

    def _seen(self) -> str:
        """What the shell printed, for messages: masked, without otto's own lines."""
        text = self._received.decode(errors="replace").replace("\r\n", "\n")
        lines = [
            line
            for line in text.split("\n")
            if not any(typed in line for typed in self._typed)
            and "otto-become" not in line
            and "OTTO_BECOME" not in line
        ]
        text = "\n".join(lines)
        if self._password is not None and self._password.reveal():
            text = text.replace(self._password.reveal(), redact.MASK)
        return redact.redact(text)

    async def _wait_for(self, patterns: tuple[re.Pattern[str], ...]) -> ExpectMatch:
        """The first of ``patterns`` seen (the earliest in the output wins)."""
        assert self._changed is not None
        while True:
            found = self._buffer.search_any(patterns)
            if found is not None:
                return found
            if self._lost is not None:
                raise self._failure(f"the shell ended ({self._lost[1]})")
            self._changed.clear()
            await self._changed.wait()

    def _failure(self, what: str) -> ConnectError:
        said = self._seen()
        message = (
            f"{self._become.method} to {self._become.user} failed: {what}; "
            f"received: {tail(said.strip())!r}"
        )
        if _REFUSED.search(said):
            return AuthenticationError(self._host, message)
        return ConnectError(self._host, message)

    def _refused(self, whose: str, said: str) -> AuthenticationError:
        """One line: the host, the method, both users, and what sudo or su said."""
        said = " ".join(line.strip() for line in said.split("\n") if line.strip())
        said = redact.redact(said)
        if self._password is not None and self._password.reveal():
            said = said.replace(self._password.reveal(), redact.MASK)
        told = f"; {self._become.method} said: {tail(said, 120)!r}" if said else ""
        return AuthenticationError(
            self._host,
            f"{self._become.method} to {self._become.user} refused the password of "
            f"{whose} (become_password){told}",
        )

    def _end_prompt(self) -> None:
        """End sudo or su at its password prompt: end of input (Ctrl-D), as a person would.

        Never Ctrl-C there: on a console the signal would reach the shared shell too.
        """
        self._inner.write(b"\x04")

    def _send_password(self) -> None:
        if self._password is None:
            self._end_prompt()
            raise AuthenticationError(
                self._host,
                f"{self._become.method} to {self._become.user} asks for a password and "
                "the host has no become_password",
            )
        self._inner.write(self._password.reveal().encode() + b"\n")

    def _probe(self) -> tuple[str, re.Pattern[str]]:
        a = secrets.randbelow(10**6) + 10**6
        inner = _INNER.format(a=a, token=self._token, user=shlex.quote(self._become.user))
        return inner, re.compile(rf"(?<![0-9+]){a + 1}(?![0-9])")

    @property
    def _exec(self) -> str:
        # In the shared shell of a console, run it as a child: closing comes back.
        return "" if self._nested else "exec "

    async def _sudo(self) -> None:
        token = self._token
        # The prompt is written in two quoted halves, so its echo never matches it;
        # sudo puts the name of the user whose password it asks for in place of %p.
        prompt_arg = f"'[otto-become '{token}' %p] '"
        prompt = re.compile(re.escape(f"[otto-become {token} ") + r"([^\]\s]*)\] ")
        inner, answer = self._probe()
        self._type(
            f"{self._exec}sudo -S -k -p {prompt_arg} -u {shlex.quote(self._become.user)} "
            f"-- /bin/sh -c {shlex.quote(inner)}{self._then if self._nested else ''}"
        )
        found = await self._wait_for((answer, prompt))
        if found.index == 0:
            return  # no password asked (NOPASSWD)
        assert found.match is not None
        whose = found.match.group(1) or "the login user"
        self._send_password()
        again = await self._wait_for((answer, prompt))
        if again.index == 1:
            said = again.text[: again.match.start()] if again.match is not None else ""
            # sudo asks again after a wrong password: end that try (and sudo) at once.
            self._end_prompt()
            raise self._refused(whose, said)

    async def _su(self) -> None:
        # Is the login user root (su asks no password) or must we wait for the prompt?
        a = secrets.randbelow(10**6) + 10**6
        uid = re.compile(rf"otto-uid-(\d+)-{a + 1}(?![0-9])")
        self._type(f"echo otto-uid-$(id -u)-$(({a}+1))")
        root = (await self._wait_for((uid,))).match.group(1) == "0"
        inner, answer = self._probe()
        # No -c: su would start a new session, out of the terminal's reach.
        then = self._then if self._nested else ""
        self._type(f"{self._exec}su - {shlex.quote(self._become.user)}{then}")
        if not root:
            await self._wait_for((_SU_PROMPT,))
            self._send_password()
        # su may discard what was typed while it asked (and a login shell takes a
        # moment to read its terminal): send the probe again until it is answered.
        for wait in _PROBE_WAITS:
            self._type(inner)
            try:
                async with asyncio.timeout(wait):
                    found = await self._wait_for((answer, _REFUSED))
            except TimeoutError:
                continue
            if found.index != 0:
                line_start = found.text.rfind("\n", 0, found.match.start()) + 1
                line_end = found.text.find("\n", found.match.end())
                said = found.text[line_start : None if line_end < 0 else line_end]
                raise self._refused(self._become.user, said)
            return
        raise self._failure("no shell answered")

    # --- leaving the other user's shell (a console) -----------------------------------

    async def _leave(self) -> bool:
        """End the other user's shell, back to the shared shell; False if it would not go.

        Each try ends the shell only where ``OTTO_BECOME`` names it. The shared
        shell says it reads again with the sum typed after sudo or su on their
        line: nothing typed meanwhile can be lost in a pty sudo is closing.
        """
        if self._back.search(self._received.decode(errors="replace")):
            return True  # sudo or su ended during the start already
        assert self._changed is not None
        self._handshake = True
        self._buffer.clear()
        for keys in _LEAVE_KEYS:
            if keys:
                self._inner.write(keys)
            self._inner.write(f'\n[ "$OTTO_BECOME" = {self._token} ] && exit\n'.encode())
            try:
                async with asyncio.timeout(_LEAVE_WAIT):
                    await self._wait_for((self._back,))
            except (TimeoutError, ConnectError):
                if self._lost is not None:
                    return False
                continue
            return True
        return False

    # --- verbs ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._inner.write(data)

    async def drain(self) -> None:
        await self._inner.drain()

    async def interrupt(self, shell_pid: int | None) -> None:
        # The terminal's Ctrl-C reaches the foreground command as whichever user it runs.
        self._inner.write(b"\x03")

    async def kill_children(self, shell_pid: int | None) -> None:
        if isinstance(self._inner, LocalShell) and shell_pid:
            kill_descendants(shell_pid)  # works where we may signal that user
        else:
            await self._inner.kill_children(shell_pid)
        self._inner.write(b"\x1c\x03")

    def resize(self, rows: int, cols: int) -> None:
        self._inner.resize(rows, cols)

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._drop_hook()
        try:
            nested = self._nested and self._lost is None and not self._handshake
            if nested and not await self._leave():
                self._would_not_end()
        finally:
            await self._inner.close()
            self._release_turn()

    def abandon(self) -> None:
        self._inner.abandon()
