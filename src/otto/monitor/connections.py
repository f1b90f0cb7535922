"""Bounds on the dashboard's connections: header and idle timeouts, and a limit.

A connection that never sends a request would otherwise stay open for good,
and a few hundred of them use up the process's file descriptors: the token
holder is locked out, and the collector cannot reconnect to its hosts. The
dashboard's uvicorn speaks HTTP through ``bounded_protocol(limits)``, which:

- closes a connection whose request headers are not all in ``header_timeout``
  seconds after it opened (or after its first byte, between requests);
- leaves connections idle between requests to uvicorn's keep-alive timeout
  (``idle_timeout``);
- keeps at most ``max_connections`` open: a new one beyond it closes the oldest
  connection that has not shown the token yet (or, on a dashboard without a
  token, that has not sent a request yet), and is closed itself when every
  open one has;
- (with ``AccessGuard``) closes a connection after the 401 answer to a request
  without the token, instead of keeping it alive.

Every bound has a default; ``connection_limit`` keeps the limit below a quarter
of the process's file descriptor limit, and ``ACCEPT_BURST`` keeps asyncio from
accepting more at once than the rest leaves room for.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from otto.monitor.access import GRANTED

__all__ = [
    "ACCEPT_BURST",
    "HEADER_TIMEOUT",
    "IDLE_TIMEOUT",
    "LISTEN_BACKLOG",
    "MAX_CONNECTIONS",
    "ConnectionLimits",
    "bounded_protocol",
    "connection_limit",
]

log = logging.getLogger("otto.monitor.web")

HEADER_TIMEOUT = 10.0
"""Seconds a connection has to send its request's headers."""
IDLE_TIMEOUT = 5.0
"""Seconds a connection may stay idle between two requests."""
MAX_CONNECTIONS = 128
"""Connections the dashboard keeps open at most (see ``connection_limit``)."""


ACCEPT_BURST = 16
"""Connections accepted in one turn of the event loop at most (asyncio's accept loop).

Each accepted connection is a file descriptor before the limit above can close
an older one; and asyncio, once ``accept`` fails for want of descriptors, keeps
retrying in a storm of errors. A small burst, below the room the limit leaves,
keeps it from getting there. (The kernel's queue of waiting connections stays
long: see ``LISTEN_BACKLOG``.)
"""
LISTEN_BACKLOG = 128
"""Connections the kernel holds for the dashboard until it accepts them."""


def connection_limit(wanted: int = MAX_CONNECTIONS) -> int:
    """``wanted``, or a quarter of the process's soft file descriptor limit if lower.

    The rest is for the collector (its hosts' connections, the database) and
    for the connections accepted in a few turns of the loop before the limit
    closes older ones (``ACCEPT_BURST`` each).
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return wanted
    return max(1, min(wanted, soft // 4))


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds of ``bounded_protocol``.

    Args:
        max_connections: connections open at once.
        header_timeout: seconds to send a request's headers.
        idle_timeout: seconds idle between requests.
        guarded: an ``AccessGuard`` asks for a token: a connection counts as
            trusted once a request on it showed the token (else once it sent
            a request).
    """

    max_connections: int = MAX_CONNECTIONS
    header_timeout: float = HEADER_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    guarded: bool = False

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections}")
        if not self.header_timeout > 0 or not self.idle_timeout > 0:
            raise ValueError("the header and idle timeouts must be positive")


class _Open:
    """The open connections of one server, oldest first."""

    def __init__(self) -> None:
        self.connections: dict[_BoundedH11, None] = {}


class _BoundedH11(H11Protocol):
    """uvicorn's h11 protocol with ``ConnectionLimits`` (set on the subclass)."""

    limits: ConnectionLimits
    registry: _Open

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._trusted = False

    @property
    def trusted(self) -> bool:
        """Whether a request on this connection showed the token (or, unguarded, came)."""
        if not self._trusted and self.cycle is not None:
            if not self.limits.guarded:
                self._trusted = True
            else:
                state = self.cycle.scope.get("state")
                self._trusted = isinstance(state, Mapping) and state.get(GRANTED) is True
        return self._trusted

    @property
    def _serving(self) -> bool:
        """A request's headers are in and its answer is not complete."""
        return self.cycle is not None and not self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        registry = self.registry.connections
        if len(registry) >= self.limits.max_connections:
            oldest = next((c for c in registry if not c.trusted), None)
            if oldest is None:
                log.warning(
                    "dashboard: %d connections open, all in use: refused one from %s",
                    len(registry),
                    _peer(self.client),
                )
                self.transport.close()
                return
            log.info(
                "dashboard: %d connections open: closed the oldest without the token, from %s",
                len(registry),
                _peer(oldest.client),
            )
            oldest.drop()
        registry[self] = None
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.connections.pop(self, None)
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and not self._serving:
            self._arm()  # the first byte of the next request: its headers are due
        super().data_received(data)
        if self._serving:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._serving:
            self._disarm()  # a pipelined request, already started

    def drop(self) -> None:
        """Close the connection now, whatever it is doing."""
        self._disarm()
        self.registry.connections.pop(self, None)
        if not self.transport.is_closing():
            self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self._serving:
            return
        log.debug(
            "dashboard: no request from %s within %gs: closed",
            _peer(self.client),
            self.limits.header_timeout,
        )
        self.drop()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown client"


def bounded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """An HTTP protocol class for uvicorn (``Config(http=...)``) that keeps ``limits``.

    Each call makes a class of its own: its connections are counted apart from
    any other server's.
    """
    return type("BoundedH11Protocol", (_BoundedH11,), {"limits": limits, "registry": _Open()})
