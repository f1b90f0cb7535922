"""SSH: a pool of connections per host, shell channels for sessions, exec channels
for one-shot commands.

A server allows only so many session channels per connection (OpenSSH's
``MaxSessions``, 10 by default). ``SshLink`` hands out channel slots across as
many connections as needed (up to ``max_connections``; beyond that callers
queue), and learns a lower limit when the server refuses a channel.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from otto.errors import AuthenticationError, ConnectError, HostKeyError
from otto.transports import ssh_early
from otto.transports.base import Receiver, ShellTransport
from otto.transports.sshlib import asyncssh
from otto.transports.steps import (
    AUTHENTICATION,
    SHELL_START,
    SSH_HANDSHAKE,
    TCP_CONNECT,
    connect_budget,
    os_reason,
)

__all__ = ["SshLink", "SshShell", "exec_ssh"]

log = logging.getLogger("otto.ssh")

_QUICK = 3.0
"""Seconds allowed for a helper command (an interrupt) on a live connection."""

_SIGNAL_WAIT = 1.0
"""Seconds a channel gets to close after its process group was signalled, before
the slower way (a kill command by PID) is tried: servers older than OpenSSH 7.9
ignore signal requests."""

_CLOSE_WAIT = 1.0
"""Seconds a closing connection gets to say goodbye before it is dropped."""

_GCM = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
_CIPHERS = [
    *_GCM,
    *(
        a.decode()
        for a in asyncssh.encryption.get_default_encryption_algs()
        if a.decode() not in _GCM
    ),
]
"""AES-GCM first, then asyncssh's other defaults. asyncssh's ChaCha20-Poly1305 (its
first choice, and OpenSSH's) takes over twice the CPU per byte here (several
cryptography calls per packet), and a forward through hops pays it at every hop
(bench/bench_forward.py)."""


class _Conn:
    """One SSH connection of a pool and the channel slots it has handed out."""

    def __init__(self, limit: int) -> None:
        self.conn: asyncssh.SSHClientConnection | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.channels = 0
        self.limit = limit
        self.alive = True
        self.task: asyncio.Task[None] | None = None

    def has_room(self) -> bool:
        return self.alive and self.channels < self.limit


class _Client(asyncssh.SSHClient):
    """Notes how far the connection got: the step that fails is named in the error."""

    def __init__(self, on_lost: Callable[[Exception | None], None], attempt: _Attempt) -> None:
        self._on_lost = on_lost
        self._attempt = attempt

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._attempt.conn = conn
        self._attempt.step = SSH_HANDSHAKE

    def begin_auth(self, username: str) -> None:
        self._attempt.step = AUTHENTICATION

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(exc)


class _Attempt:
    """One connection attempt: the step it is on and, once TCP is up, its connection."""

    def __init__(self) -> None:
        self.step = TCP_CONNECT
        self.conn: asyncssh.SSHClientConnection | None = None

    def greeted(self) -> bool:
        """Whether the server sent its SSH version line."""
        return self.conn is not None and bool(self.conn.get_extra_info("server_version"))


class SshLink:
    """How one host is reached over SSH: credentials, hop, and the connection pool."""

    def __init__(
        self,
        name: str,
        address: str,
        *,
        port: int,
        user: str,
        password: str | None,
        key: str | os.PathLike[str] | None,
        known_hosts: str | os.PathLike[str] | Sequence[str] | None,
        connect_timeout: float,
        keepalive_interval: float,
        hop: Callable[[], Any] | None = None,
        hop_name: str = "",
        max_channels: int = 10,
        max_connections: int = 10,
    ) -> None:
        self.name = name
        self.address = address
        self.port = port
        self.user = user
        self._password = password
        self._key = key
        self._known_hosts = known_hosts
        self.connect_timeout = connect_timeout
        self._keepalive = keepalive_interval
        self._hop = hop
        self._hop_name = hop_name
        self.max_channels = max_channels
        self.max_connections = max_connections
        self._conns: list[_Conn] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._scratch: set[str] = set()
        self._closing = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<SshLink {self.user}@{self.address}:{self.port}>"

    @property
    def description(self) -> str:
        return f"ssh {self.user}@{self.address}:{self.port}"

    # --- connecting ------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "port": self.port,
            "username": self.user,
            "known_hosts": self._known_hosts,
            "keepalive_interval": self._keepalive,
            "keepalive_count_max": 3,
            "encryption_algs": _CIPHERS,
        }
        if isinstance(options["known_hosts"], os.PathLike):
            options["known_hosts"] = os.fspath(options["known_hosts"])
        if self._password is not None:
            options["password"] = self._password
        if self._key is not None:
            options["client_keys"] = [os.fspath(self._key)]
        if self._password is None and self._key is None:
            options["password"] = None
        return options

    @property
    def _where(self) -> str:
        return f"{self.address}:{self.port}"

    def _keyscan(self, known_hosts: str) -> str:
        """How to add this host's key to ``known_hosts``, as a command to copy."""
        port = f" -p {self.port}" if self.port != 22 else ""
        scan = f"ssh-keyscan -H{port} {shlex.quote(self.address)}"
        if self._hop is not None:
            # Only the hop reaches the host: the scan runs there, its output goes here.
            return f"`{scan}` on hop {self._hop_name}, its output appended to {known_hosts}"
        return f"`{scan} >> {shlex.quote(known_hosts)}`"

    def _check_known_hosts(self) -> None:
        """A known_hosts file that does not exist: say how to go on, before connecting."""
        known = self._known_hosts
        if not isinstance(known, (str, os.PathLike)):
            return
        path = os.fspath(known)
        if os.path.exists(path):
            return
        raise HostKeyError(
            self.name,
            f"known_hosts file {path} does not exist, so the host key of {self._where} cannot "
            f"be checked; add the key with {self._keyscan(path)}, or set "
            '"known_hosts": null for this host in the lab to skip the check',
            step=SSH_HANDSHAKE,
        )

    def _credentials(self) -> str:
        if self._password is not None and self._key is not None:
            return f"the key {os.fspath(self._key)} and the password"
        if self._password is not None:
            return "the password"
        if self._key is not None:
            return f"the key {os.fspath(self._key)}"
        return "the agent's and the default keys"

    async def _connect(self, slot: _Conn) -> asyncssh.SSHClientConnection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + connect_budget(self.connect_timeout)
        self._check_known_hosts()
        options = self._options()
        if self._hop is not None:
            try:
                async with asyncio.timeout_at(deadline):
                    options["tunnel"] = await self._hop()
            except ConnectError as exc:
                raise ConnectError(
                    self.name, f"cannot reach hop {self._hop_name}: {exc.reason}", step=exc.step
                ) from exc
            except TimeoutError:
                raise ConnectError(
                    self.name,
                    f"cannot reach hop {self._hop_name} within {self.connect_timeout:g}s",
                    step=TCP_CONNECT,
                ) from None

        def lost(exc: Exception | None) -> None:
            slot.alive = False
            if exc is not None:
                log.info("%s: connection lost: %s", self.name, exc)

        attempt = _Attempt()
        try:
            async with asyncio.timeout_at(deadline):
                if self._hop is None:
                    # A TCP connection begun before asyncssh was imported (otto.cli.fast).
                    sock = await ssh_early.take(self.address, self.port)
                    if sock is not None:
                        options["sock"] = sock
                conn = await asyncssh.connect(
                    self.address, client_factory=lambda: _Client(lost, attempt), **options
                )
        except TimeoutError:
            raise self._timed_out(attempt) from None
        except asyncssh.PermissionDenied as exc:
            raise AuthenticationError(
                self.name,
                f"authentication failed: {self._where} refused {self._credentials()} "
                f"for user {self.user}",
                step=AUTHENTICATION,
            ) from exc
        except asyncssh.HostKeyNotVerifiable as exc:
            known = self._known_hosts
            path = os.fspath(known) if isinstance(known, (str, os.PathLike)) else "known_hosts"
            raise HostKeyError(
                self.name,
                f"the host key of {self._where} is not trusted by {path} ({exc.reason}); "
                f"if this is the host you expect, add its key with {self._keyscan(path)}, "
                'or set "known_hosts": null for this host in the lab to skip the check',
                step=SSH_HANDSHAKE,
            ) from exc
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            key = f"the key {os.fspath(self._key)}" if self._key is not None else "a key"
            raise ConnectError(self.name, f"cannot load {key}: {exc}") from exc
        except OSError as exc:
            if exc.filename is not None:  # a key or known_hosts file, read before connecting
                raise ConnectError(
                    self.name, f"cannot read {exc.filename}: {os_reason(exc)}"
                ) from exc
            raise self._failed(attempt, exc) from exc
        except asyncssh.Error as exc:
            raise self._failed(attempt, exc) from exc
        return conn

    def _timed_out(self, attempt: _Attempt) -> ConnectError:
        seconds = f"{self.connect_timeout:g}s"
        via = f" through hop {self._hop_name}" if self._hop is not None else ""
        if attempt.step == TCP_CONNECT:
            reason = f"no TCP connection to {self._where}{via} within {seconds}"
        elif attempt.step == SSH_HANDSHAKE:
            reason = f"no SSH handshake from {self._where} within {seconds}"
            if not attempt.greeted():
                reason += " (the port accepted the TCP connection but sent no SSH greeting)"
        else:
            who = f"{self.user} at {self._where}"
            reason = f"authentication as {who} did not finish within {seconds}"
        return ConnectError(self.name, reason, step=attempt.step)

    def _failed(self, attempt: _Attempt, exc: BaseException) -> ConnectError:
        why = _reason(exc)
        via = f" through hop {self._hop_name}" if self._hop is not None else ""
        if attempt.step == TCP_CONNECT:
            reason = f"TCP connect to {self._where}{via} failed: {why}"
        elif attempt.step == SSH_HANDSHAKE:
            reason = f"SSH handshake with {self._where} failed: {why}"
        else:
            reason = f"authentication as {self.user} at {self._where} failed: {why}"
        return ConnectError(self.name, reason, step=attempt.step)

    async def connection(self) -> asyncssh.SSHClientConnection:
        """A live connection of the pool (for tunnels and SFTP); opens one if needed."""
        for slot in self._conns:
            if slot.alive and slot.conn is not None:
                return slot.conn
        slot = await self._acquire()
        self._release(slot)
        assert slot.conn is not None
        return slot.conn

    async def _acquire(self) -> _Conn:
        while True:
            if self._closed:
                raise ConnectError(self.name, "the SSH link was closed")
            self._conns = [c for c in self._conns if c.alive]
            slot = next((c for c in self._conns if c.has_room()), None)
            if slot is not None:
                slot.channels += 1
                break
            if len(self._conns) < self.max_connections:
                slot = _Conn(self.max_channels)
                slot.channels = 1
                self._conns.append(slot)
                slot.task = asyncio.ensure_future(self._open(slot))
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        try:
            await asyncio.shield(slot.ready)
        except BaseException:
            self._release(slot)
            raise
        return slot

    async def _open(self, slot: _Conn) -> None:
        try:
            slot.conn = await self._connect(slot)
        except BaseException as exc:
            slot.alive = False
            slot.ready.set_exception(exc)
            slot.ready.exception()  # retrieved here; each waiter re-raises it
            self._wake()
            return
        slot.ready.set_result(None)

    def _release(self, slot: _Conn) -> None:
        slot.channels -= 1
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def open_channel(
        self, factory: Callable[[], _Channel], *, step: str = "", **kwargs: Any
    ) -> tuple[asyncssh.SSHClientChannel[bytes], asyncssh.SSHClientSession[bytes]]:
        """Open a session channel on a connection with room; release the slot when it closes.

        ``step`` names what the channel is for in a ``ConnectError`` (``SHELL_START``).
        """
        while True:
            slot = await self._acquire()
            conn = slot.conn
            assert conn is not None
            try:
                chan, session = await conn.create_session(factory, encoding=None, **kwargs)
            except asyncssh.ChannelOpenError as exc:
                # The server allows fewer channels than we assumed: remember, try elsewhere.
                self._release(slot)
                if slot.channels == 0:
                    raise ConnectError(
                        self.name, f"{self._what(step)}: {exc.reason}", step=step
                    ) from exc
                slot.limit = slot.channels
                continue
            except (OSError, asyncssh.Error) as exc:
                slot.alive = False
                self._release(slot)
                raise ConnectError(
                    self.name, f"{self._what(step)}: {_reason(exc)}", step=step
                ) from exc
            except BaseException:
                self._release(slot)
                raise
            assert isinstance(session, _Channel)
            session.on_close = lambda slot=slot: self._release(slot)
            return chan, session

    def _what(self, step: str) -> str:
        opening = f"cannot open an SSH channel on {self._where}"
        return f"{step} failed: {opening}" if step else opening

    async def quick(self, command: str) -> bool:
        """Run a helper command (interrupts, kills) in its own channel, bounded in time.

        Returns False when the host did not answer in time: the link is in trouble.
        """
        try:
            async with asyncio.timeout(_QUICK):
                await exec_ssh(self, command, timeout=_QUICK)
        except (TimeoutError, ConnectError) as exc:
            log.info("%s: helper command failed: %s", self.name, exc or "no answer")
            return False
        return True

    # --- work that outlives its caller -------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``work`` in a task the link owns: ``close`` lets it finish (briefly), then
        cancels it. For clean-ups that must not hold up a cancelled caller."""
        if self._closing:
            work.close()
            log.debug("%s: link closed, skipped: %s", self.name, what)
            return
        task = asyncio.get_running_loop().create_task(work, name=f"otto {self.name}: {what}")
        self._tasks.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.info("%s: %s failed: %s", self.name, what, task.exception())

        task.add_done_callback(finished)

    def add_scratch(self, path: str) -> None:
        """Note a remote path (a transfer's staging folder) to delete if the link closes."""
        self._scratch.add(path)

    def drop_scratch(self, path: str, *, delete: bool) -> None:
        """Forget a scratch path; with ``delete``, remove it on the host in the background."""
        if path not in self._scratch:
            return
        self._scratch.discard(path)
        if delete:
            self.spawn(self._remove([path]), f"removing {path}")

    async def _remove(self, paths: Iterable[str]) -> None:
        quoted = " ".join(shlex.quote(safe_path(p)) for p in paths)
        await self.quick(f"rm -rf -- {quoted}")

    def abort(self) -> None:
        """Drop every connection at once, without waiting (at interpreter exit)."""
        self._closing = self._closed = True
        for task in list(self._tasks):
            task.cancel()
        conns, self._conns = self._conns, []
        for slot in conns:
            slot.alive = False
            if slot.task is not None and not slot.task.done():
                slot.task.cancel()
            if slot.conn is not None:
                slot.conn.abort()

    async def close(self) -> None:
        """Finish clean-ups (briefly), then close every connection; never slow.

        A connection that does not acknowledge within ``_CLOSE_WAIT`` (a cut
        network) is dropped.
        """
        if self._scratch:
            scratch, self._scratch = set(self._scratch), set()
            self.spawn(self._remove(sorted(scratch)), "removing staged transfers")
        self._closing = True
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=_QUICK)
            for task in pending:
                log.info("%s: clean-up still running at close, cancelled: %s", self.name, task)
                task.cancel()
        self._closed = True
        conns, self._conns = self._conns, []
        closing: list[asyncssh.SSHClientConnection] = []
        for slot in conns:
            slot.alive = False
            if slot.task is not None and not slot.task.done():
                slot.task.cancel()
            if slot.conn is not None:
                slot.conn.close()
                closing.append(slot.conn)
        self._wake()
        if not closing:
            return
        waits = {asyncio.ensure_future(conn.wait_closed()): conn for conn in closing}
        try:
            await asyncio.wait(waits, timeout=_CLOSE_WAIT)
        finally:
            # Also when our caller is cancelled: no connection outlives close().
            for wait, conn in waits.items():
                if not wait.done():
                    log.info("%s: no goodbye within %gs; dropped", self.name, _CLOSE_WAIT)
                    wait.cancel()
                    conn.abort()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason
    if isinstance(exc, OSError):
        return os_reason(exc)
    return str(exc) or type(exc).__name__


def safe_path(path: str) -> str:
    """``path`` such that a command cannot take it for an option (``-x`` -> ``./-x``)."""
    return "./" + path if path.startswith("-") else path


def _signal(chan: asyncssh.SSHClientChannel[bytes], signal: str, where: str) -> None:
    """Ask the server to signal the channel's process group (OpenSSH >= 7.9: killpg)."""
    try:
        chan.send_signal(signal)
    except (OSError, asyncssh.Error) as exc:
        log.debug("%s: could not send SIG%s: %s", where, signal, _reason(exc))


async def _closed_within(chan: asyncssh.SSHClientChannel[bytes], seconds: float) -> bool:
    wait = asyncio.ensure_future(chan.wait_closed())
    try:
        done, _ = await asyncio.wait({wait}, timeout=seconds)
    finally:
        if not wait.done():
            wait.cancel()  # also when our caller is cancelled: nothing outlives this
    return bool(done)


class _Channel(asyncssh.SSHClientSession[bytes]):
    """A session channel that gives its pool slot back when it closes."""

    on_close: Callable[[], None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.on_close is not None:
            self.on_close()
            self.on_close = None
        self.closed(exc)

    def closed(self, exc: Exception | None) -> None:
        """The channel is gone."""


class _ShellSession(_Channel):
    def __init__(self, owner: SshShell) -> None:
        self._owner = owner

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._owner._data(data)

    def exit_status_received(self, status: int) -> None:
        self._owner._exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self._owner._exit_signal = signal

    def pause_writing(self) -> None:
        self._owner._can_write.clear()

    def resume_writing(self) -> None:
        self._owner._can_write.set()

    def closed(self, exc: Exception | None) -> None:
        self._owner._lost(exc)


class SshShell(ShellTransport):
    """A shell channel (a pty on request) on one of the host's SSH connections."""

    def __init__(self, link: SshLink, *, pty: bool = False) -> None:
        self._link = link
        self.pty = pty
        self.description = link.description
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._receiver: Receiver | None = None
        self._exit_status: int | None = None
        self._exit_signal: str | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._closing = False
        self._reported = False
        self._shell_pid: int | None = None

    async def open(self, receiver: Receiver) -> None:
        self._receiver = receiver
        kwargs: dict[str, Any] = {}
        if self.pty:
            kwargs = {"term_type": "xterm-256color", "term_size": (200, 50)}
        self._chan, _ = await self._link.open_channel(
            lambda: _ShellSession(self), step=SHELL_START, **kwargs
        )

    def _data(self, data: bytes) -> None:
        if self._receiver is not None and not self._reported:
            self._receiver.data_received(data)

    def _lost(self, exc: Exception | None) -> None:
        if self._exit_status is not None:
            self.report_lost(self._exit_status, f"shell exited with {self._exit_status}")
        elif self._exit_signal is not None:
            self.report_lost(None, f"shell killed by SIG{self._exit_signal}")
        else:
            why = _reason(exc) if exc is not None else "no answer from the host"
            self.report_lost(None, f"SSH connection lost: {why}")

    def write(self, data: bytes) -> None:
        if self._chan is not None and not self._closing and not self._reported:
            try:
                self._chan.write(data)
            except (OSError, asyncssh.Error) as exc:
                self._lost(exc)

    def _give_up(self) -> None:
        """The host does not answer: drop its connection, so the next call reconnects."""
        if self._chan is not None:
            conn = self._chan.get_extra_info("connection")
            if conn is not None:
                conn.abort()
        self._lost(None)

    async def drain(self) -> None:
        await self._can_write.wait()

    async def interrupt(self, shell_pid: int | None) -> None:
        self._shell_pid = shell_pid or self._shell_pid
        if self.pty:
            self.write(b"\x03")
        elif shell_pid:
            # The shell leads its own process group (sshd calls setsid): signal all of it.
            command = f"kill -INT -- -{shell_pid} 2>/dev/null || kill -INT {shell_pid}"
            if not await self._link.quick(command):
                self._give_up()

    async def kill_children(self, shell_pid: int | None) -> None:
        self._shell_pid = shell_pid or self._shell_pid
        if shell_pid:
            await self._link.quick(
                f"for p in $(pgrep -g {shell_pid}) $(pgrep -P {shell_pid}); do "
                f'[ "$p" = {shell_pid} ] || kill -KILL "$p"; done 2>/dev/null'
            )
        if self.pty:
            self.write(b"\x03")

    def resize(self, rows: int, cols: int) -> None:
        if self._chan is not None and self.pty:
            self._chan.change_terminal_size(cols, rows)

    @property
    def _end_signal(self) -> str:
        # An interactive shell passes SIGHUP on to its jobs (their own process
        # groups); without a pty everything the shell started is in its group.
        return "HUP" if self.pty else "KILL"

    async def close(self) -> None:
        """End the shell's process group, then the channel.

        sshd keeps a channel open until its shell exits, and a shell waiting
        for a command never reads the end of its input: signal first.
        """
        if self._chan is None or self._closing:
            return
        self._closing = True
        chan = self._chan
        _signal(chan, self._end_signal, self.description)
        chan.close()
        if await _closed_within(chan, _SIGNAL_WAIT):
            return
        pid = self._shell_pid
        if pid:
            log.debug(
                "%s: the shell ignored the signal; killing process group %d", self._link.name, pid
            )
            await self._link.quick(
                f"kill -KILL -- -{pid} $(pgrep -P {pid}) 2>/dev/null || kill -KILL {pid}"
            )
            if await _closed_within(chan, _QUICK):
                return
        log.info(
            "%s: a shell channel did not close within %gs; left to the server",
            self._link.name,
            _SIGNAL_WAIT + (_QUICK if pid else 0),
        )

    def abandon(self) -> None:
        # No loop will run again: the signal goes out now or not at all.
        if self._chan is not None and not self._closing and not self._reported:
            _signal(self._chan, self._end_signal, self.description)


class _CollectSession(_Channel):
    """Collects an exec channel's output; the first bytes carry the command's PID."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.head = b""
        self.pid: int | None = None
        self.status: int | None = None
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.pid is None and self.head is not None:
            self.head += data
            end = self.head.find(b"\x1f")
            if end < 0 and len(self.head) < 64:
                return
            if self.head.startswith(_PID_MARK) and end > 0:
                self.pid = int(self.head[len(_PID_MARK) : end])
                data = self.head[end + 1 :]
            else:
                data = self.head
            self.head = b""
        if data:
            self.chunks.append(data)

    def exit_status_received(self, status: int) -> None:
        self.status = status

    def closed(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(exc)


_PID_MARK = b"\x1eotto-pid:"


async def _make_sure_ended(link: SshLink, session: _CollectSession) -> None:
    """Kill a cancelled exec command by PID if the signal did not end it (old servers)."""
    done, _ = await asyncio.wait({session.done}, timeout=_SIGNAL_WAIT)
    if not done and session.pid:
        await link.quick(f"kill -KILL -- -{session.pid} 2>/dev/null")


async def exec_ssh(
    link: SshLink, command: str, *, timeout: float | None = None
) -> tuple[bytes, int | None, bool, str]:
    """Run ``command`` on an exec channel; return (output, status, timed out, error).

    stderr is merged into stdout in the order written. On timeout the
    command's process group gets SIGINT, then SIGKILL, through another channel.
    """
    wrapped = "printf '\\036otto-pid:%d\\037' $$; exec 2>&1\n" + command
    chan, session = await link.open_channel(_CollectSession, command=wrapped)
    assert isinstance(session, _CollectSession)
    timed_out = False
    exc: Exception | None = None
    ended = False
    try:
        done, _ = await asyncio.wait({session.done}, timeout=timeout)
        if done:
            exc = session.done.result()
        else:
            timed_out = True
            for sig in ("INT", "KILL"):
                if session.pid:
                    await link.quick(f"kill -{sig} -- -{session.pid} 2>/dev/null")
                done, _ = await asyncio.wait({session.done}, timeout=0.5)
                if done:
                    break
        ended = True
    finally:
        if not ended and not session.done.done():
            # The caller was cancelled: end the command, without holding it up.
            _signal(chan, "KILL", link.name)
            link.spawn(_make_sure_ended(link, session), "ending a cancelled command")
        chan.close()
    if session.head:
        session.chunks.insert(0, session.head)
    error = ""
    if exc is not None and session.status is None:
        error = f"{link.name}: SSH connection lost: {_reason(exc)}"
    return b"".join(session.chunks), session.status, timed_out, error
