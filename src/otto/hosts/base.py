"""Hosts: the verbs (run, oneshot, open_session, send, expect, put, get, repeats).

``Host`` holds what every kind of host shares: its named sessions, its default
session, its periodic tasks and its clean-up. A subclass says how to reach a
shell (``_shell_transport``), how to run a one-shot command and how to move
files. ``LocalHost`` is in ``hosts.local``; ``RemoteHost`` (SSH, Telnet) in ``hosts.remote``.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from threading import get_ident
from typing import TYPE_CHECKING, TypeAlias, overload

from otto import loop as otto_loop
from otto.errors import ForwardError
from otto.expect import ExpectMatch
from otto.framing import clean_output
from otto.result import CommandStatus, RunResult, TransferResult
from otto.session import (
    DEFAULT_MAX_OUTPUT,
    Observer,
    OpeningSession,
    Pattern,
    Patterns,
    Session,
    SessionLock,
    Tap,
)
from otto.transports.base import ShellTransport

if TYPE_CHECKING:
    import os
    from collections.abc import Awaitable
    from datetime import datetime, timedelta

    from otto.hosts.apps import OpeningApp
    from otto.hosts.deploy import DeployRecords, DeployResult, Via
    from otto.hosts.forward import Forward, Forwarder
    from otto.hosts.lifecycle import BootSpec
    from otto.hosts.netem import ActiveImpairment, Impairment, Value
    from otto.hosts.power import PowerAction, PowerSpec, PowerState
    from otto.hosts.privilege import Become, BecomeMethod, Secret
    from otto.periodic import RepeatRunner
    from otto.transfer import PathArg, Progress
    from otto.transports.snmp import SnmpSettings

__all__ = ["DEFAULT_SESSION", "Host", "process_status"]

log = logging.getLogger("otto.hosts")

DEFAULT_SESSION = "default"

OnResult: TypeAlias = "Callable[[str, datetime, list[CommandStatus]], object]"
Guard = Callable[["Host"], None]
"""Called with the host before each of its verbs; raises to refuse (a lost reservation)."""


def process_status(
    host: str,
    command: str,
    raw: bytes,
    code: int | None,
    *,
    started: tuple[float, float],
    timed_out: bool,
    timeout: float | None,
    error: str = "",
) -> CommandStatus:
    """The record of a one-shot process: what it printed and how it ended."""
    if timed_out:
        error = f"{host}: timed out after {timeout:g}s"
    return CommandStatus.finished(
        command,
        clean_output(raw),
        code,
        started=started,
        host=host,
        session="oneshot",
        timed_out=timed_out,
        error=error,
    )


class Host(abc.ABC):
    """What every host offers. All verbs are coroutines unless noted."""

    name: str
    connect_timeout: float = 10.0
    max_output: int = DEFAULT_MAX_OUTPUT
    """Bytes of output one command keeps (for sessions opened after it is set);
    a command that prints more keeps its first and last halves, joined by a
    line saying how many bytes were dropped."""

    power_spec: PowerSpec | None = None
    """How to switch the host on and off (``power``, ``reboot(hard=True)``)."""

    boot_spec: BootSpec | None = None
    """What its console shows on the way up (the lab field ``boot``), for ``goto``."""

    snmp: SnmpSettings | None = None
    """How to read the host over SNMP (the lab field ``snmp``): ``otto monitor``
    then reads its metrics from its agent too. None: not over SNMP."""

    has_shell: bool = True
    """False for a device with no shell (``otto.hosts.device``): every shell verb fails."""

    def __init__(
        self,
        name: str,
        *,
        become_password: str | None = None,
        power: PowerSpec | None = None,
    ) -> None:
        self.name = name
        self._become_password: Secret | None = None
        if become_password is not None:
            from otto.hosts.privilege import Secret

            self._become_password = Secret(become_password)
        self.power_spec = power
        self._sessions: dict[str, Session] = {}
        self._becomes: dict[str, Become | None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        """The thread ``_loop`` runs in (a loop running elsewhere is not this call's)."""
        self._repeats: RepeatRunner | None = None
        self._private_count = 0
        self._taps: list[Tap] = []
        self._observers: list[Observer] = []
        self._guard: Guard | None = None

    # --- what a kind of host provides ------------------------------------------

    @abc.abstractmethod
    def _shell_transport(self, *, pty: bool) -> ShellTransport:
        """A new, unopened transport to a shell on this host."""

    @abc.abstractmethod
    async def _oneshot(self, command: str, timeout: float | None) -> CommandStatus:
        """Run ``command`` in a fresh process, without shell state."""

    @abc.abstractmethod
    async def _put(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult: ...

    @abc.abstractmethod
    async def _get(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult: ...

    async def disconnect(self) -> None:
        """Close the connections the sessions share; they reconnect on next use.

        Sessions keep their names; a session whose shell went with the
        connection starts a fresh one on next use, with a warning.
        """
        await self._close_links()

    async def _close_links(self) -> None:
        """Close connections shared by the sessions (none for a local host)."""

    # --- loop ownership ------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this host's sessions and connections live on."""
        return self._loop

    def set_guard(self, guard: Guard | None) -> Guard | None:
        """Have ``guard(host)`` run before every verb (run, put, get, open_session, ...).

        The guard raises to refuse (``otto.reserve`` refuses a host whose lease
        was lost). Returns the guard it replaces, to put back afterwards.
        """
        previous, self._guard = self._guard, guard
        return previous

    def _bind(self) -> None:
        if self._guard is not None:
            self._guard(self)
        bound = self._loop
        if bound is not None and bound.is_running() and self._thread == get_ident():
            return  # as in run(): the loop running is this call's, known without getpid
        running = asyncio.get_running_loop()
        if self._loop is running:
            return
        if self._loop is not None and not self._loop.is_closed():
            raise RuntimeError(
                f"host {self.name!r} is in use on another event loop; "
                "use otto.run() for every call, or one asyncio.run() for all of them"
            )
        if self._loop is not None:
            log.warning("%s: its event loop was closed; starting over", self.name)
            self.abandon()
            self._sessions.clear()
        self._loop = running
        self._thread = get_ident()
        otto_loop.register_cleanup(self)

    # --- sessions ------------------------------------------------------------------

    def _session_pty(self, pty: bool) -> bool:
        """Whether a session asked for with ``pty`` sits on a terminal (some kinds always do)."""
        return pty

    def _new_session(
        self, name: str, pty: bool, become: Become | None = None, raw: bool = False
    ) -> Session:
        pty = self._session_pty(pty) or become is not None or raw
        shared = self._session_lock()

        def transport() -> ShellTransport:
            if raw:
                return self._stream_transport()
            inner = self._shell_transport(pty=pty)
            if become is None:
                return inner
            from otto.hosts.privilege import BecomeShell

            return BecomeShell(
                inner,
                become,
                password=self._become_password,
                host=self.name,
                timeout=self.connect_timeout,
                turn=shared,  # one shared shell: this session holds it while open
            )

        return Session(
            name,
            host=self.name,
            transport_factory=transport,
            ready_timeout=self.connect_timeout,
            pty=pty,
            on_close=self._forget,
            max_output=self.max_output,
            lock=shared if become is None else None,
            shell=not raw,
            taps=self._taps,
            observers=self._observers,
            guard=self._check_guard,
        )

    def _check_guard(self) -> None:
        """Ask the guard (if any) again: a session opened before a lease was lost
        refuses too."""
        if self._guard is not None:
            self._guard(self)

    def _stream_transport(self) -> ShellTransport:
        """A transport to the host's stream as it is (a console's); elsewhere a terminal shell."""
        return self._shell_transport(pty=True)

    @property
    def one_stream(self) -> bool:
        """True when every session shares one stream and one shell (a console)."""
        return self._session_lock() is not None

    def _session_lock(self) -> SessionLock | None:
        """A lock every session shares, when they share one stream (None: one each)."""
        return None

    def add_tap(self, tap: Tap) -> Callable[[], None]:
        """Show ``tap`` every byte each session of this host sends and receives.

        It reaches the sessions open now and those opened later (a transcript
        of everything a test did on the host). Returns a function that removes it.
        """
        self._taps.append(tap)
        return lambda: self._taps.remove(tap)

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer`` with the ``CommandStatus`` of every command this host runs.

        Commands of every session (open now or later) and one-shot commands
        are seen as they end (the failing commands of a test, for its report).
        Returns a function that removes it.
        """
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def private_session(self, purpose: str, *, raw: bool = False) -> Session:
        """A session outside the named ones, for one piece of work; the caller closes it.

        It is not listed in ``sessions`` and never returned to anyone else.
        ``raw`` as for ``open_session``.
        """
        self._bind()
        self._private_count += 1
        return self._new_session(f"{purpose}-{self._private_count}", False, raw=raw)

    def _forget(self, session: Session) -> None:
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]
            self._becomes.pop(session.name, None)

    def _default(self) -> Session:
        self._bind()
        session = self._sessions.get(DEFAULT_SESSION)
        if session is None:
            session = self._sessions[DEFAULT_SESSION] = self._new_session(DEFAULT_SESSION, False)
        return session

    def open_session(
        self,
        name: str,
        *,
        pty: bool = False,
        as_user: str | None = None,
        become: BecomeMethod = "sudo",
        raw: bool = False,
    ) -> OpeningSession:
        """A named persistent shell with its own cwd, env and state.

        Await it (``s = await host.open_session("x")``) or enter it
        (``async with host.open_session("x") as s:``, which closes it on leaving).
        Opening a name that is already open returns the same session. The
        shell starts now, so a host that cannot be reached fails here.

        Args:
            as_user: run the session's shell as this user, through ``become``
                (``"sudo"`` or ``"su"``); a password prompt is answered with the
                host's ``become_password``. Such a session always sits on a
                terminal, so that Ctrl-C reaches commands of the other user.
            raw: the host's stream as it is, with nothing of otto's written to
                it (a bootloader or a device CLI on a console): only ``send``,
                ``expect`` and ``close`` work; ``run`` raises ``OttoError``.

        Raises:
            ConnectError: the shell could not be started.
            AuthenticationError: sudo or su refused the password.
            ValueError: ``name`` is open with a different ``pty`` or become setting.
        """
        privilege: Become | None = None
        if as_user is not None:
            from otto.hosts.privilege import Become

            privilege = Become(as_user, become)
        return OpeningSession(lambda: self._open_session(name, pty, privilege, raw))

    async def _open_session(
        self, name: str, pty: bool, become: Become | None = None, raw: bool = False
    ) -> Session:
        self._bind()
        session = self._sessions.get(name)
        if session is not None:
            if session.shell == raw:
                raise ValueError(f"session {name!r} on {self.name} is already open with raw={raw}")
            if session.pty != (self._session_pty(pty) or become is not None):
                raise ValueError(
                    f"session {name!r} on {self.name} is already open with pty={session.pty}"
                )
            if self._becomes.get(name) != become:
                raise ValueError(
                    f"session {name!r} on {self.name} is already open with "
                    f"{self._becomes.get(name) or 'no privilege change'}"
                )
            return session
        session = self._sessions[name] = self._new_session(name, pty, become, raw)
        self._becomes[name] = become
        try:
            await session.start()
        except BaseException:
            await session.close()
            raise
        return session

    def open_app(
        self,
        start: str | None,
        prompt: str | re.Pattern[str],
        *,
        name: str | None = None,
        exit: str | None = None,
        timeout: float = 30.0,
        pty: bool = True,
    ) -> OpeningApp:
        """Start a program with its own prompt (a REPL, a bootloader, a router CLI).

        ``async with host.open_app("python3 -i -q", r">>> ") as app:`` then
        ``await app.cmd("1")``; or ``app = await host.open_app(...)`` and
        ``await app.close()``. ``start=None`` when the prompt is already there.
        Leaving sends ``exit``. See ``otto.hosts.apps`` for the rules.

        Raises:
            ExpectTimeout: the prompt did not appear within ``timeout``.
            ConnectError: the program ended before its prompt.
        """
        from otto.hosts.apps import App, OpeningApp

        app = App(self, start, prompt, name=name, exit=exit, timeout=timeout, pty=pty)
        return OpeningApp(app)

    @property
    def sessions(self) -> dict[str, Session]:
        """The sessions open now, by name (a copy)."""
        return dict(self._sessions)

    # --- verbs -----------------------------------------------------------------------

    async def run(self, cmds: str | Sequence[str], *, timeout: float | None = None) -> RunResult:
        """Run commands on the host's default persistent shell (see ``Session.run``)."""
        session = self._sessions.get(DEFAULT_SESSION)
        loop = self._loop
        # Not `loop is asyncio.get_running_loop()`: on Python 3.11 that makes a
        # system call (getpid), about 0.4 us. Only one loop runs in a thread, so
        # the loop this host is bound to, running in this thread, is this call's.
        if (
            session is None
            or self._guard is not None
            or loop is None
            or not loop.is_running()
            or self._thread != get_ident()
        ):
            session = self._default()  # what a warm call with no guard can skip
        return await session.run(cmds, timeout=timeout)

    async def oneshot(self, cmd: str, *, timeout: float | None = None) -> CommandStatus:
        """Run ``cmd`` in a fresh process with no shell state; safe to run many at once."""
        self._bind()
        if not self._taps and not self._observers:
            return await self._oneshot(cmd, timeout)
        where = f"{self.name}/oneshot"
        for tap in self._taps:
            tap(where, "sent", cmd.encode("utf-8", "surrogateescape") + b"\n")
        result = await self._oneshot(cmd, timeout)
        for tap in self._taps:
            tap(where, "received", result.output.encode("utf-8", "surrogateescape"))
        for observe in self._observers:
            observe(result)
        return result

    async def send(self, text: str) -> None:
        """Write raw text to the default session."""
        await self._default().send(text)

    @overload
    async def expect(self, pattern: Pattern, timeout: float = 30.0) -> str: ...

    @overload
    async def expect(self, pattern: Patterns, timeout: float = 30.0) -> ExpectMatch: ...

    async def expect(self, pattern: Pattern | Patterns, timeout: float = 30.0) -> str | ExpectMatch:
        """Wait for ``pattern`` (or any of a list) on the default session.

        See ``Session.expect``.
        """
        return await self._default().expect(pattern, timeout)

    async def put(
        self,
        src: PathArg | Sequence[PathArg],
        dest_dir: PathArg,
        *,
        progress: Progress | None = None,
    ) -> TransferResult:
        """Copy local files or folders into ``dest_dir`` on the host.

        ``dest_dir`` must be an existing folder; otherwise the result is
        ``Status.Error`` naming the host and the folder, and nothing is written.
        Each file is written under a temporary name beside its target and
        renamed into place once complete, so an interrupted transfer leaves the
        previous file intact (folders are merged, files replaced). SCP cannot
        carry file names that hold a newline (use SFTP).
        """
        self._bind()
        return await self._put(src, dest_dir, progress)

    async def get(
        self,
        src: PathArg | Sequence[PathArg],
        dest_dir: PathArg,
        *,
        progress: Progress | None = None,
    ) -> TransferResult:
        """Copy files or folders from the host into local ``dest_dir``.

        The same rules as ``put``: ``dest_dir`` must exist, and files are
        renamed into place only once complete.
        """
        self._bind()
        return await self._get(src, dest_dir, progress)

    # --- periodic tasks -------------------------------------------------------------

    def _repeat_runner(self) -> RepeatRunner:
        if self._repeats is None:
            from otto.periodic import RepeatRunner

            self._bind()
            self._repeats = RepeatRunner(self)
        return self._repeats

    def start_repeat(
        self,
        name: str,
        cmds: str | Sequence[str],
        interval: float | timedelta,
        *,
        times: int | None = None,
        duration: float | timedelta | None = None,
        until: datetime | None = None,
        on_result: OnResult | None = None,
        max_history: int = 1000,
    ) -> None:
        """Run ``cmds`` every ``interval`` on a session of their own (not a coroutine).

        The arguments are checked first (``ValueError`` before anything starts).
        Called from synchronous code, the repeat runs on ``otto.run``'s loop.
        """
        from otto.periodic import check_repeat

        check_repeat(cmds, interval, times=times, duration=duration, max_history=max_history)

        def start() -> None:
            self._repeat_runner().start(
                name,
                cmds,
                interval,
                times=times,
                duration=duration,
                until=until,
                on_result=on_result,
                max_history=max_history,
            )

        async def start_on_loop() -> None:
            start()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            otto_loop.run(start_on_loop())  # binds this host to otto.run's loop
        else:
            start()

    async def stop_repeat(self, name: str) -> None:
        """Stop the periodic task ``name`` and close its session."""
        await self._repeat_runner().stop(name)

    async def stop_all_repeats(self) -> None:
        """Stop every periodic task of this host."""
        if self._repeats is not None:
            await self._repeats.stop_all()

    def repeat_results(self, name: str) -> list[tuple[datetime, list[CommandStatus]]]:
        """What the periodic task ``name`` has produced so far, oldest first (no I/O).

        Raises:
            KeyError: no repeat of that name was started on this host.
        """
        if self._repeats is None:
            raise KeyError(f"no repeat named {name!r} on {self.name}")
        return self._repeats.results(name)

    # --- images (see otto.hosts.deploy) ---------------------------------------------------

    async def deploy(
        self,
        path: str | os.PathLike[str],
        *,
        via: Via = "tftp",
        address: int | str | None = None,
        force: bool = False,
        records: DeployRecords | None = None,
        prompt: str | None = None,
        server: str | None = None,
        board_ip: str | None = None,
        timeout: float = 300.0,
    ) -> DeployResult:
        """Load the image at ``path`` through the host's bootloader (or its shell), checked.

        The bootloader's ``crc32`` of what landed must match the file's; an image
        recorded at the same place (same SHA-256, in the lab's reservation store)
        is skipped unless ``force``. See ``otto.hosts.deploy`` for the transports
        (``via``: tftp, ymodem, xmodem, shell) and every argument.
        """
        from otto.hosts.deploy import deploy

        self._bind()
        return await deploy(
            self,
            path,
            via=via,
            address=address,
            force=force,
            records=records,
            prompt=prompt,
            server=server,
            board_ip=board_ip,
            timeout=timeout,
        )

    # --- power and reboot (see otto.hosts.power) -----------------------------------------

    async def power(self, action: PowerAction) -> PowerState:
        """Switch the host ``"on"``, ``"off"`` or ``"cycle"`` it, through its ``power_spec``;
        or read its state back (``"status"``). Returns ``"on"`` or ``"off"``."""
        from otto.hosts import power

        self._bind()
        return await power.power(self, action)

    async def wait_until_up(
        self, timeout: float = 300.0, *, prompt: str | re.Pattern[str] | None = None
    ) -> None:
        """Return once a fresh shell answers; ``ConnectError`` after ``timeout``.

        With ``prompt``, up is that prompt on the host's stream instead (a
        bootloader or device CLI on a console, which has no shell): Ctrl-C is
        pressed each second until it shows (never Enter: U-Boot runs its last
        command again on an empty line).
        """
        from otto.hosts import power

        self._bind()
        await power.wait_until_up(self, timeout, prompt=prompt)

    async def wait_until_down(self, timeout: float = 300.0) -> None:
        """Return once the host stops answering; ``ConnectError`` after ``timeout``."""
        from otto.hosts import power

        self._bind()
        await power.wait_until_down(self, timeout)

    async def reboot(
        self,
        *,
        hard: bool = False,
        timeout: float = 300.0,
        wait: bool = True,
        command: str = "reboot",
    ) -> None:
        """Restart the host (power-cycle if ``hard``, else ``command``), wait down, then up.

        Its sessions start fresh shells on next use (a warning says their state is gone).
        """
        from otto.hosts import power

        self._bind()
        await power.reboot(self, hard=hard, timeout=timeout, wait=wait, command=command)

    async def goto(self, state: str, *, timeout: float = 300.0) -> str:
        """Bring the host to ``state`` (``"off"``, ``"bootloader"`` or ``"shell"``) from the
        state it is in now, the shortest way; returns ``state``.

        See ``otto.hosts.lifecycle``. ``ConnectError`` names the step that failed
        (``step``) and holds what the console printed last.
        """
        self._bind()
        return await _lifecycle_goto()(self, state, timeout=timeout)

    # --- port forwards through an SSH host and its hops (see otto.hosts.forward) ---------------

    def forward(
        self, local_port: int, target: str, *, bind: str = "127.0.0.1"
    ) -> AbstractAsyncContextManager[Forward]:
        """``async with``: listen here on ``bind:local_port`` (0: a free port); the host
        connects each connection on to ``target`` (``"10.0.0.5:80"``, ``"[::1]:80"``)."""
        return self._forwarder().forward(local_port, target, bind=bind)

    def forward_remote(
        self, remote_port: int, target: str, *, bind: str = "127.0.0.1"
    ) -> AbstractAsyncContextManager[Forward]:
        """``async with``: the host listens on ``bind:remote_port``; this machine connects
        each connection on to ``target``."""
        return self._forwarder().forward_remote(remote_port, target, bind=bind)

    def socks(
        self, local_port: int, *, bind: str = "127.0.0.1"
    ) -> AbstractAsyncContextManager[Forward]:
        """``async with``: a SOCKS4/5 proxy here whose connections leave from the host."""
        return self._forwarder().socks(local_port, bind=bind)

    def _forwarder(self) -> Forwarder:
        """What carries this host's forwards; only SSH hosts have one."""
        raise ForwardError(self.name, "port forwards need an SSH host; this one is not")

    # --- link impairment (see otto.hosts.netem) ------------------------------------------

    async def impair(
        self,
        interface: str,
        *,
        delay: Value | None = None,
        jitter: Value | None = None,
        loss: Value | None = None,
        rate: Value | None = None,
        corrupt: Value | None = None,
        duplicate: Value | None = None,
        reorder: Value | None = None,
        peer: str | None = None,
        expire: Value | None = 300,
    ) -> Impairment:
        """Degrade the packets leaving ``interface`` with tc netem, as root; returns what
        was applied. It replaces any impairment otto put there before.

        Values: ``delay``/``jitter`` ``"100ms"``, ``"250us"``; ``loss``, ``corrupt``,
        ``duplicate``, ``reorder`` ``"2%"``; ``rate`` ``"1mbit"``. ``peer``
        (``"10.0.0.5"``, ``"10.0.0.5:8080"``, ``"10.0.0.0/24"``) limits it to packets
        for that address (and port). ``expire`` (seconds, or ``"5m"``): the host
        itself reverts it then, even if otto is gone; None: only on
        ``clear_impairment``.

        Raises:
            ValueError: a value or the interface name is invalid (nothing was sent).
            OttoError: tc failed on the host (names the command and what it said).
        """
        from otto.hosts import netem

        self._bind()
        return await netem.impair(
            self,
            interface,
            delay=delay,
            jitter=jitter,
            loss=loss,
            rate=rate,
            corrupt=corrupt,
            duplicate=duplicate,
            reorder=reorder,
            peer=peer,
            expire=expire,
        )

    async def clear_impairment(self, interface: str) -> bool:
        """Remove otto's impairment from ``interface`` and cancel its revert; False when
        there was none."""
        from otto.hosts import netem

        self._bind()
        return await netem.clear_impairment(self, interface)

    async def impairments(self) -> list[ActiveImpairment]:
        """The impairments in place on the host's interfaces, and when each expires."""
        from otto.hosts import netem

        self._bind()
        return await netem.impairments(self)

    # --- closing ------------------------------------------------------------------------

    async def close(self) -> None:
        """End every session, repeat and connection of this host.

        The host can be used again afterwards; it reconnects on first use.
        """
        if self._repeats is not None:
            await self._repeats.stop_all()
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        await self._close_links()
        otto_loop.unregister_cleanup(self)
        self._loop = None

    def abandon(self) -> None:
        """Kill what this host started without an event loop (used at interpreter exit)."""
        for session in self._sessions.values():
            session.abandon()

    async def __aenter__(self) -> Host:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


@functools.cache
def _lifecycle_goto() -> Callable[..., Awaitable[str]]:
    """``otto.hosts.lifecycle.goto``, imported once it is first used: ``goto("shell")``
    on a host at its shell is one round trip, where an import statement shows."""
    from otto.hosts.lifecycle import goto

    return goto
