"""Port forwards through an SSH host and its hops: local, remote and SOCKS.

``host.forward(8080, "10.0.0.5:80")`` listens here on 127.0.0.1:8080; each
connection to it is carried by its own channel of the host's SSH connection
(which runs through the host's hops), and the host connects to the target.
``host.forward_remote(9000, "127.0.0.1:8000")`` is the other way round: the
host listens, this machine connects to the target. ``host.socks(1080)`` is a
SOCKS4/5 proxy whose connections all leave from the host.

Each is an async context manager yielding a ``Forward`` that tells the bound
port (``0`` asks for a free one). When the context exits, the listener closes
and so does every connection it carried; the host's SSH connection stays open
for other work. A new connection to a local forward or SOCKS proxy reconnects
the host if its SSH connection was lost meanwhile.

A target that refuses or cannot be reached is reported when a connection
through the forward first fails (a warning in the log, ``Forward.failures``,
``Forward.on_failure``); ``Forward.probe()`` tries the target once, up front.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from otto.errors import ConnectError, ForwardError
from otto.transports.sshlib import SSHLocalPortForwarder, SSHSOCKSForwarder, asyncssh
from otto.transports.steps import os_reason

__all__ = [
    "Endpoint",
    "Forward",
    "Forwarder",
    "local_forward",
    "parse_target",
    "remote_forward",
    "socks_forward",
]

log = logging.getLogger("otto.forward")

Kind = Literal["local", "remote", "socks"]
Connect = Callable[[], Awaitable[asyncssh.SSHClientConnection]]

WINDOW = 8 * 1024 * 1024
"""Bytes a forwarded channel may have in flight unacknowledged (OpenSSH: 2 MiB)."""

PACKET = 255 * 1024
"""Largest SSH packet the host may send on a forwarded channel (OpenSSH asks for
32 KiB). Bigger packets mean fewer to decrypt and fewer writes here: through two
hops, 255 KiB packets and an 8 MiB window carried about twice the throughput of
OpenSSH's sizes on a loaded machine (bench/bench_forward.py)."""

CLOSE_WAIT = 2.0
"""Seconds the forwarded connections get to close when a forward ends."""

_KEPT_FAILURES = 100


class Forwarder(Protocol):
    """What carries forwards for a host: its SSH connection (``otto.hosts.ssh``)."""

    def forward(
        self, local_port: int, target: str, *, bind: str = "127.0.0.1"
    ) -> AbstractAsyncContextManager[Forward]: ...

    def forward_remote(
        self, remote_port: int, target: str, *, bind: str = "127.0.0.1"
    ) -> AbstractAsyncContextManager[Forward]: ...

    def socks(
        self, local_port: int, *, bind: str = "127.0.0.1"
    ) -> AbstractAsyncContextManager[Forward]: ...


@dataclass(frozen=True)
class Endpoint:
    """A host (name or address) and a TCP port; IPv6 addresses print in brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_target(text: str) -> Endpoint:
    """``"10.0.0.5:80"``, ``"web:8080"`` or ``"[::1]:80"`` as an ``Endpoint``.

    Raises:
        ValueError: not ``HOST:PORT``, a port out of 1-65535, or an IPv6
            address without brackets.
    """
    given = text.strip()
    if given.startswith("["):
        end = given.find("]")
        if end < 0 or given[end + 1 : end + 2] != ":":
            raise ValueError(f"target {text!r}: write an IPv6 target as [ADDRESS]:PORT")
        host, port_text = given[1:end], given[end + 2 :]
    else:
        host, sep, port_text = given.rpartition(":")
        if not sep:
            raise ValueError(f"target {text!r}: write HOST:PORT (for IPv6: [::1]:80)")
        if ":" in host:
            raise ValueError(
                f"target {text!r}: put an IPv6 address in brackets: [{host}]:{port_text}"
            )
    if not host:
        raise ValueError(f"target {text!r}: the host is missing (write HOST:PORT)")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"target {text!r}: the port must be a number from 1 to 65535")
    return Endpoint(host, int(port_text))


def _check_port(port: int, what: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{what} must be a number from 0 (any free port) to 65535, not {port!r}")
    return port


class Forward:
    """An open port forward: where it listens, where it leads, and what failed.

    Attributes:
        kind: ``"local"``, ``"remote"`` or ``"socks"``.
        listen: where it listens: here (local, SOCKS) or on the host (remote),
            with the port actually bound.
        target: where connections go (None for SOCKS: the client says).
        route: the hosts the traffic goes through, nearest first, ending with
            the forwarding host.
        failures: why connections through it failed, oldest first (the last 100).
        on_failure: called with each failure's message as it happens.
    """

    def __init__(
        self, kind: Kind, listen: Endpoint, target: Endpoint | None, route: Sequence[str]
    ) -> None:
        self.kind: Kind = kind
        self.listen = listen
        self.target = target
        self.route = tuple(route)
        self.failures: list[str] = []
        self.on_failure: Callable[[str], None] | None = None
        self._connect: Connect | None = None
        self._carrier: asyncssh.SSHClientConnection | None = None
        self._pairs: set[_Tracked] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def host(self) -> str:
        """The host that forwards (the last of ``route``)."""
        return self.route[-1]

    @property
    def port(self) -> int:
        """The port it listens on (the one chosen when 0 was asked)."""
        return self.listen.port

    @property
    def address(self) -> str:
        """``bind:port`` it listens on (``[::1]:port`` for IPv6)."""
        return str(self.listen)

    @property
    def open_channels(self) -> int:
        """Connections it carries now (each is one SSH channel)."""
        return sum(1 for pair in self._pairs if pair.chan is not None)

    def __str__(self) -> str:
        via = " -> ".join(self.route)
        if self.kind == "local":
            return f"{self.listen} -> {self.target} via {via}"
        if self.kind == "remote":
            return f"{self.listen} on {self.host} -> {self.target} from here, via {via}"
        return f"{self.listen} (SOCKS) -> where {self.host} connects, via {via}"

    def __repr__(self) -> str:
        return f"<Forward {self.kind} {self}>"

    async def probe(self, target: str | None = None, *, timeout: float = 10.0) -> None:
        """Open one connection to the target and close it: raise if that fails.

        For a local forward or SOCKS the host connects (give ``target`` for
        SOCKS); for a remote forward, this machine does.

        Raises:
            ForwardError: the target refused the connection, cannot be reached,
                or did not answer within ``timeout`` seconds.
        """
        where = parse_target(target) if target is not None else self.target
        if where is None:
            raise ValueError("a SOCKS forward has no target of its own: give probe() one")
        if self.kind == "remote":
            try:
                async with asyncio.timeout(timeout):
                    _, writer = await asyncio.open_connection(where.host, where.port)
            except TimeoutError:
                raise ForwardError(
                    self.host, f"target {where} did not answer within {timeout:g}s (from here)"
                ) from None
            except OSError as exc:
                raise ForwardError(self.host, self._unreachable_here(where, exc)) from None
            writer.close()
            return
        assert self._connect is not None
        conn = await self._connect()
        opening = asyncio.ensure_future(
            conn.create_connection(asyncssh.SSHTCPSession, where.host, where.port)
        )
        try:
            done, _ = await asyncio.wait({opening}, timeout=timeout)
        finally:
            if not opening.done():
                # The host is still connecting: close the channel if it ever opens.
                opening.add_done_callback(_close_opened)
        if not done:
            raise ForwardError(
                self.host,
                f"target {where} did not answer within {timeout:g}s (through {self.host})",
            )
        try:
            chan, _ = opening.result()
        except asyncssh.ChannelOpenError as exc:
            raise ForwardError(self.host, self._refusal(where, exc.reason)) from None
        except (OSError, asyncssh.Error) as exc:
            raise ForwardError(self.host, self._refusal(where, _reason(exc))) from None
        chan.close()

    async def wait_broken(self) -> str:
        """Wait until the forward can serve no more; returns why.

        A remote forward ends with the SSH connection that asked the host to
        listen. A local forward or SOCKS proxy reconnects the host for its next
        connection, so for them this waits until cancelled.
        """
        if self._carrier is None:
            await asyncio.get_running_loop().create_future()  # never set
        assert self._carrier is not None
        await self._carrier.wait_closed()
        return (
            f"the SSH connection to {self.host} was lost, so it no longer listens on {self.listen}"
        )

    # --- what connections through it report ---------------------------------------------------

    def _refusal(self, target: Endpoint, reason: str) -> str:
        if "refused" in reason.lower():
            return f"target {target} refused the connection (through {self.host})"
        return f"target {target} cannot be reached through {self.host}: {reason}"

    def _unreachable_here(self, target: Endpoint, exc: OSError) -> str:
        if exc.errno == errno.ECONNREFUSED:
            return f"target {target} refused the connection (from this machine)"
        return f"target {target} cannot be reached from this machine: {os_reason(exc)}"

    def _failed(self, message: str) -> None:
        first = not self.failures
        self.failures.append(message)
        del self.failures[:-_KEPT_FAILURES]
        log.log(logging.WARNING if first else logging.INFO, "%s: %s", self.host, message)
        if self.on_failure is not None:
            self.on_failure(message)

    # --- what asyncssh's forwarders call ---------------------------------------------------------

    def create_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start ``coro`` in a task this forward owns (cancelled when it ends)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("%s: a forwarded connection failed: %s", self.host, task.exception())

    async def _channel(
        self,
        session_factory: Callable[[], asyncssh.SSHTCPSession[bytes]],
        target: Endpoint,
        orig_host: str,
        orig_port: int,
    ) -> tuple[asyncssh.SSHTCPChannel[bytes], asyncssh.SSHTCPSession[bytes]]:
        """A channel from the host to ``target`` for one forwarded connection."""
        assert self._connect is not None
        try:
            conn = await self._connect()
            return await conn.create_connection(
                session_factory,
                target.host,
                target.port,
                orig_host,
                orig_port,
                window=WINDOW,
                max_pktsize=PACKET,
            )
        except asyncssh.ChannelOpenError as exc:
            self._failed(self._refusal(target, exc.reason))
            raise
        except ConnectError as exc:
            self._failed(f"cannot forward to {target}: {exc}")
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, exc.reason) from None
        except (OSError, asyncssh.Error) as exc:
            self._failed(self._refusal(target, _reason(exc)))
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, _reason(exc)) from None

    # --- ending -----------------------------------------------------------------------------------

    async def _end(self) -> None:
        """Close every connection it carries (the listener is already closed)."""
        for task in list(self._tasks):
            task.cancel()
        waits: list[asyncio.Future[Any]] = list(self._tasks)
        for pair in list(self._pairs):
            waits.extend(pair.end())
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=CLOSE_WAIT)
        if pending:
            log.info("%s: %d forwarded connections did not close in time", self.host, len(pending))
        for wait in pending:
            wait.cancel()


def _close_opened(opening: asyncio.Future[Any]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result()[0].close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason
    if isinstance(exc, OSError):
        return os_reason(exc)
    return str(exc) or type(exc).__name__


class _Tracked(asyncssh.SSHForwarder):
    """One forwarded connection: a TCP socket here, paired with a channel of the host.

    The forward keeps every pair it carries, so it can end them all when it ends.
    """

    owner: Forward
    chan: asyncssh.SSHTCPChannel[bytes] | None = None
    transport: asyncio.Transport | None = None
    lost: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.lost = asyncio.get_running_loop().create_future()
        self.owner._pairs.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._pairs.discard(self)
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)
        super().connection_lost(exc)

    def _opened(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self.chan = chan
        if self.lost is not None and self.lost.done():
            chan.close()  # the client left while its channel was opening

    def end(self) -> list[asyncio.Future[Any]]:
        """Drop the socket and close the channel; what to wait on until both are gone."""
        waits: list[asyncio.Future[Any]] = []
        if self.lost is not None:
            waits.append(self.lost)
        if self.chan is not None:
            waits.append(asyncio.ensure_future(self.chan.wait_closed()))
        if self.transport is not None:
            self.transport.abort()
        self.close()  # the channel too, through the pair
        return waits


class _LocalInbound(_Tracked, SSHLocalPortForwarder):
    """A connection to a local forward's port."""

    def __init__(self, forward: Forward) -> None:
        # asyncssh's forwarder only starts tasks on its "connection": the forward
        # owns them instead, so they end with it.
        super().__init__(cast("asyncssh.connection.SSHConnection", forward), self._open)
        self.owner = forward

    async def _open(
        self,
        session_factory: Callable[[], asyncssh.SSHTCPSession[bytes]],
        orig_host: str,
        orig_port: int,
    ) -> tuple[asyncssh.SSHTCPChannel[bytes], asyncssh.SSHTCPSession[bytes]]:
        assert self.owner.target is not None
        chan, session = await self.owner._channel(
            session_factory, self.owner.target, orig_host, orig_port
        )
        self._opened(chan)
        return chan, session


class _SocksInbound(_Tracked, SSHSOCKSForwarder):
    """A connection to a SOCKS forward's port; asyncssh reads the SOCKS request."""

    def __init__(self, forward: Forward) -> None:
        super().__init__(cast("asyncssh.connection.SSHConnection", forward), self._open)
        self.owner = forward

    async def _open(
        self,
        session_factory: Callable[[], asyncssh.SSHTCPSession[bytes]],
        dest_host: str,
        dest_port: int,
        orig_host: str,
        orig_port: int,
    ) -> tuple[asyncssh.SSHTCPChannel[bytes], asyncssh.SSHTCPSession[bytes]]:
        target = Endpoint(dest_host, dest_port)
        chan, session = await self.owner._channel(session_factory, target, orig_host, orig_port)
        self._opened(chan)
        return chan, session


class _Outbound(_Tracked):
    """A remote forward's connection from here to its target.

    It reads nothing until its channel is open: what the target says first
    (a greeting) would otherwise reach a channel side with nowhere to write it.
    """

    def __init__(self, forward: Forward) -> None:
        super().__init__()
        self.owner = forward

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.pause_reading()


class _ChannelSide(asyncssh.SSHForwarder):
    """A remote forward's channel, paired with its ``_Outbound`` connection."""

    def __init__(self, outbound: _Outbound) -> None:
        super().__init__(outbound)
        self._outbound = outbound

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._outbound._opened(cast("asyncssh.SSHTCPChannel[bytes]", transport))
        super().connection_made(transport)
        if self._outbound.transport is not None and not self._outbound.transport.is_closing():
            self._outbound.resume_reading()


# --- the three kinds ---------------------------------------------------------------------


async def _listen(
    forward: Forward, factory: Callable[[], asyncio.BaseProtocol], bind: str, port: int
) -> asyncio.Server:
    """A listening socket here on ``bind:port``; one clear error when it cannot be had."""
    loop = asyncio.get_running_loop()
    where = str(Endpoint(bind, port))
    try:
        infos = await loop.getaddrinfo(
            bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
        )
        family, _, _, _, sockaddr = infos[0]
        return await loop.create_server(
            factory, host=str(sockaddr[0]), port=port, family=family, reuse_address=True
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = "the port is taken (address already in use)"
        elif exc.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need root)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            why = "this machine has no such address"
        else:
            why = os_reason(exc)
        raise ForwardError(forward.host, f"cannot listen on {where} here: {why}") from None


def _bound(server: asyncio.Server, bind: str) -> Endpoint:
    sockname = server.sockets[0].getsockname()
    return Endpoint(bind, int(sockname[1]))


async def _close_server(server: asyncio.Server) -> None:
    server.close()
    try:
        async with asyncio.timeout(CLOSE_WAIT):
            await server.wait_closed()
    except TimeoutError:
        log.info("listener %s did not close in time", server)


@asynccontextmanager
async def local_forward(
    connect: Connect, route: Sequence[str], local_port: int, target: str, *, bind: str
) -> AsyncIterator[Forward]:
    """Listen here on ``bind:local_port``; the host (last of ``route``) connects to ``target``.

    ``connect`` returns the host's live SSH connection (reconnecting if needed).

    Raises:
        ValueError: a bad port or ``target``.
        ForwardError: the port cannot be had here.
        ConnectError: the host cannot be reached.
    """
    _check_port(local_port, "the local port")
    endpoint = parse_target(target)
    forward = Forward("local", Endpoint(bind, local_port), endpoint, route)
    forward._connect = connect
    await connect()  # an unreachable host fails here, not at the first connection
    server = await _listen(forward, lambda: _LocalInbound(forward), bind, local_port)
    forward.listen = _bound(server, bind)
    log.info("%s: forward %s", forward.host, forward)
    try:
        yield forward
    finally:
        await _close_server(server)
        await forward._end()


@asynccontextmanager
async def socks_forward(
    connect: Connect, route: Sequence[str], local_port: int, *, bind: str
) -> AsyncIterator[Forward]:
    """A SOCKS4/5 proxy here on ``bind:local_port``; the host makes each connection.

    Raises:
        ValueError: a bad port.
        ForwardError: the port cannot be had here.
        ConnectError: the host cannot be reached.
    """
    _check_port(local_port, "the local port")
    forward = Forward("socks", Endpoint(bind, local_port), None, route)
    forward._connect = connect
    await connect()
    server = await _listen(forward, lambda: _SocksInbound(forward), bind, local_port)
    forward.listen = _bound(server, bind)
    log.info("%s: SOCKS %s", forward.host, forward)
    try:
        yield forward
    finally:
        await _close_server(server)
        await forward._end()


@asynccontextmanager
async def remote_forward(
    connect: Connect, route: Sequence[str], remote_port: int, target: str, *, bind: str
) -> AsyncIterator[Forward]:
    """The host listens on ``bind:remote_port``; this machine connects to ``target``.

    Raises:
        ValueError: a bad port or ``target``.
        ForwardError: the host will not listen there (a port taken, forwarding
            not allowed by its sshd).
        ConnectError: the host cannot be reached.
    """
    _check_port(remote_port, "the remote port")
    endpoint = parse_target(target)
    forward = Forward("remote", Endpoint(bind, remote_port), endpoint, route)
    forward._connect = connect
    conn = await connect()
    loop = asyncio.get_running_loop()

    async def accept(orig_host: str, orig_port: int) -> asyncssh.SSHTCPSession[bytes]:
        try:
            _, outbound = await loop.create_connection(
                lambda: _Outbound(forward), endpoint.host, endpoint.port
            )
        except OSError as exc:
            forward._failed(forward._unreachable_here(endpoint, exc))
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, os_reason(exc)) from None
        return cast("asyncssh.SSHTCPSession[bytes]", _ChannelSide(outbound))

    def session_factory(orig_host: str, orig_port: int) -> Awaitable[asyncssh.SSHTCPSession[bytes]]:
        return forward.create_task(accept(orig_host, orig_port))

    try:
        listener = await conn.create_server(
            session_factory, bind, remote_port, window=WINDOW, max_pktsize=PACKET
        )
    except asyncssh.ChannelListenError as exc:
        raise ForwardError(
            forward.host,
            f"{forward.host} will not listen on {forward.listen}: {exc} "
            "(the port is taken there, or its sshd does not allow remote forwarding)",
        ) from None
    except (OSError, asyncssh.Error) as exc:
        raise ForwardError(
            forward.host, f"cannot ask {forward.host} to listen on {forward.listen}: {_reason(exc)}"
        ) from None
    forward.listen = Endpoint(bind, listener.get_port())
    forward._carrier = conn
    log.info("%s: remote forward %s", forward.host, forward)
    try:
        yield forward
    finally:
        listener.close()
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                await listener.wait_closed()
        except TimeoutError:
            log.info("%s: the remote listener did not close in time", forward.host)
        await forward._end()
