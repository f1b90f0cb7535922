"""The connection interface: how a ``RemoteHost`` reaches its machine.

``RemoteHost`` holds what a user configures (address, user, hop, ...) and the
verbs every host shares; it hands everything that depends on the way the
machine is reached to one ``Connection`` chosen by ``term`` at construction.
A new way of reaching a machine (a console, a serial line) is a new file in
this package with one class like ``SshConnection`` or ``TelnetConnection``.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

from otto.result import CommandStatus, TransferResult
from otto.session import SessionLock
from otto.transfer import Progress
from otto.transports.base import ShellTransport

if TYPE_CHECKING:
    from otto.hosts.remote import RemoteHost

__all__ = ["Connection"]


class Connection(abc.ABC):
    """One way of reaching a remote machine: shells, one-shot commands, files."""

    #: The ``term`` values this kind serves.
    terms: ClassVar[tuple[str, ...]] = ()
    #: The port when none is given.
    default_port: ClassVar[int] = 0
    #: Every shell sits on a terminal (the server gives one), so sessions are framed as pty.
    always_pty: ClassVar[bool] = False

    def __init__(self, host: RemoteHost) -> None:
        self.host = host

    @abc.abstractmethod
    def shell_transport(self, *, pty: bool) -> ShellTransport:
        """A new, unopened transport to a shell on the machine."""

    def stream_transport(self) -> ShellTransport:
        """A transport to the machine's stream with nothing of otto's on it.

        Only kinds with a raw stream (a console) differ: elsewhere it is a shell
        on a terminal, left as the server gives it.
        """
        return self.shell_transport(pty=True)

    @abc.abstractmethod
    async def oneshot(self, command: str, timeout: float | None) -> CommandStatus:
        """Run ``command`` without shell state (its own process where the kind allows)."""

    @abc.abstractmethod
    async def put(self, sources: list[str], dest: str, progress: Progress | None) -> TransferResult:
        """Copy local ``sources`` into the folder ``dest`` on the machine."""

    @abc.abstractmethod
    async def get(self, sources: list[str], dest: str, progress: Progress | None) -> TransferResult:
        """Copy ``sources`` on the machine into the local folder ``dest``."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Reach the machine now (log in, open the link); raise ``ConnectError``."""

    def session_lock(self) -> SessionLock | None:
        """The one lock all sessions share when the kind has one stream (a console)."""
        return None

    async def close(self) -> None:
        """Close what the sessions share (connections, tunnels); the host may reconnect."""

    def abandon(self) -> None:
        """Drop what can be dropped without an event loop (at interpreter exit)."""
