"""RemoteHost: a machine reached over the network (SSH, Telnet; one file per way).

Everything ``LocalHost`` does works here. What depends on how the machine is
reached (shells, one-shot commands, files, tunnels) is done by one
``Connection`` chosen by ``term`` when the host is built: ``hosts.ssh`` and
``hosts.telnet``. ``hop`` reaches the host through another SSH host.

A kind's module is imported when the first host of that kind is built, so a
program that never makes an SSH host never imports asyncssh.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from otto import redact
from otto.errors import ConnectError, ForwardError
from otto.hosts.base import Host
from otto.hosts.connection import Connection
from otto.hosts.power import PowerSpec
from otto.result import CommandStatus, TransferResult
from otto.session import SessionLock
from otto.transfer import PathArg, Progress, source_list
from otto.transports.base import ShellTransport
from otto.transports.login import LOGIN_PROMPT, PASSWORD_PROMPT

if TYPE_CHECKING:
    from otto.hosts.forward import Forwarder
    from otto.transports.sshlib import asyncssh

__all__ = ["CONNECTIONS", "DEFAULT_KNOWN_HOSTS", "Credentials", "RemoteHost", "connection_kind"]

DEFAULT_KNOWN_HOSTS = os.path.join("~", ".ssh", "known_hosts")

CONNECTIONS: dict[str, str] = {
    "ssh": "otto.hosts.ssh:SshConnection",
    "telnet": "otto.hosts.telnet:TelnetConnection",
    "console": "otto.hosts.console:ConsoleConnection",
    "serial": "otto.hosts.console:ConsoleConnection",
}
"""The connection kind for each ``term``, as ``module:Class`` (imported on first use)."""


def connection_kind(term: str) -> type[Connection]:
    """The ``Connection`` class for ``term``, its module imported now."""
    where = CONNECTIONS.get(term)
    if where is None:
        raise ValueError(f"term must be one of {sorted(CONNECTIONS)}, not {term!r}")
    module, _, name = where.partition(":")
    kind = getattr(importlib.import_module(module), name)
    if not (isinstance(kind, type) and issubclass(kind, Connection) and term in kind.terms):
        raise TypeError(f"{where} is not a Connection for term {term!r}")
    return kind


@dataclass(frozen=True)
class Credentials:
    """Secrets a connection needs; never shown in reprs, masked in otto's messages."""

    password: str | None = None

    def __post_init__(self) -> None:
        redact.register(self.password)

    def __repr__(self) -> str:
        return "Credentials(password=***)" if self.password is not None else "Credentials()"


class RemoteHost(Host):
    """A machine reached over SSH or Telnet.

    Args:
        address: host name or IP address (as seen from ``hop`` if there is one).
        user: who to log in as (optional for a console or serial line that
            shows a shell without a login).
        password: password for SSH password auth or the Telnet login. Never
            shown in reprs, logs or errors.
        key: a private key file for SSH (else the agent and default keys).
        port: default 22 for SSH, 23 for Telnet.
        term: ``"ssh"``, ``"telnet"``, ``"console"`` (a serial console on a TCP
            port: ``address`` is ``host:port``) or ``"serial"`` (a local serial
            device: ``address`` is ``/dev/ttyUSB0``). A console is one stream:
            every session and ``oneshot`` share its one shell, one at a time
            (see ``otto.hosts.console``).
        hop: another ``RemoteHost`` (SSH) to tunnel through; hops chain.
        known_hosts: the known_hosts file host keys are checked against, as
            OpenSSH does; ``None`` (explicitly) turns checking off.
        name: how the host is called in results (default: the address).
        connect_timeout: seconds to connect, log in and get a ready shell.
        transfer: ``"sftp"`` (default) or ``"scp"`` for SSH file transfer.
        keepalive_interval: seconds between keepalives (a dead link is
            noticed after three missed ones).
        max_channels: session channels per SSH connection (OpenSSH MaxSessions).
        login_prompt, password_prompt: regexes for the Telnet and console login.
        console_protocol: for ``term="console"``: ``"telnet"`` (ser2net, most
            terminal servers) or ``"raw"`` (plain TCP, QEMU ``-serial tcp:``).
        baud: for ``term="serial"``: the line's speed.
        usb: for ``term="serial"``: find the device by its USB attributes
            (``serial``, ``vendor``, ``product`` hex, ``port``) at every open,
            instead of ``address`` (see ``otto.transports.serial_identity``).
        console_log: for consoles: a file every byte the console prints is
            appended to, a timestamp per line, while the host is open.
        become_password: answers sudo's or su's password prompt in sessions
            opened with ``as_user``. Never shown in reprs, logs or errors.
        power: how to switch the machine on and off (see ``otto.hosts.power``).
    """

    def __init__(
        self,
        address: str,
        *,
        user: str | None = None,
        password: str | None = None,
        key: PathArg | None = None,
        port: int | None = None,
        term: Literal["ssh", "telnet", "console", "serial"] = "ssh",
        hop: RemoteHost | None = None,
        known_hosts: PathArg | None = DEFAULT_KNOWN_HOSTS,
        name: str | None = None,
        connect_timeout: float = 10.0,
        transfer: Literal["sftp", "scp"] = "sftp",
        keepalive_interval: float = 5.0,
        max_channels: int = 10,
        login_prompt: str = LOGIN_PROMPT,
        password_prompt: str = PASSWORD_PROMPT,
        console_protocol: Literal["telnet", "raw"] = "telnet",
        baud: int = 115200,
        console_log: PathArg | None = None,
        become_password: str | None = None,
        power: PowerSpec | None = None,
        usb: Mapping[str, str] | None = None,
    ) -> None:
        kind = connection_kind(term)
        if hop is not None and hop.term != "ssh":
            raise ValueError(f"hop {hop.name!r} must be an SSH host to tunnel through")
        if user is None and term not in ("console", "serial"):
            raise ValueError(f"user is required for a {term} host")
        if hop is not None and term in ("console", "serial"):
            raise ValueError("a console or serial host cannot be reached through a hop")
        if transfer not in ("sftp", "scp"):
            raise ValueError(f"transfer must be 'sftp' or 'scp', not {transfer!r}")
        redact.register(become_password)
        super().__init__(name or address, become_password=become_password, power=power)
        self.term: str = term
        self.address = address
        self.user = user
        self.credentials = Credentials(password)
        self.key = key
        self.port = port or kind.default_port
        self.hop = hop
        self.known_hosts = known_hosts
        self.connect_timeout = connect_timeout
        self.transfer = transfer
        self.keepalive_interval = keepalive_interval
        self.max_channels = max_channels
        self.login_prompt = login_prompt
        self.password_prompt = password_prompt
        self.console_protocol = console_protocol
        self.baud = baud
        self.console_log = console_log
        self.usb = dict(usb) if usb else None
        self.connection: Connection = kind(self)

    def __repr__(self) -> str:
        via = f", hop={self.hop.name!r}" if self.hop else ""
        return (
            f"RemoteHost({self.address!r}, user={self.user!r}, port={self.port}, "
            f"term={self.term!r}, name={self.name!r}{via})"
        )

    # --- reaching it -----------------------------------------------------------------

    def hop_chain(self) -> list[RemoteHost]:
        """The hops from the first (nearest to us) to this host's own; a cycle is an error."""
        chain: list[RemoteHost] = []
        seen = {id(self)}
        hop = self.hop
        while hop is not None:
            if id(hop) in seen:
                names = " -> ".join(h.name for h in [self, *chain, hop])
                raise ConnectError(self.name, f"hop cycle: {names}")
            seen.add(id(hop))
            chain.append(hop)
            hop = hop.hop
        return list(reversed(chain))

    def known_hosts_path(self) -> str | None:
        """``known_hosts`` expanded, or None when host keys are not checked."""
        if self.known_hosts is None:
            return None
        return os.path.expanduser(os.fspath(self.known_hosts))

    async def tunnel(self) -> asyncssh.SSHClientConnection:
        """This (SSH) host's live connection, to carry traffic to a host behind it."""
        self._bind()
        from otto.hosts.ssh import SshConnection  # an SSH host: its module is loaded already

        connection = self.connection
        if not isinstance(connection, SshConnection):
            raise ConnectError(self.name, "is not an SSH host; nothing can tunnel through it")
        return await connection.tunnel()

    def _forwarder(self) -> Forwarder:
        from otto.hosts.ssh import SshConnection  # an SSH host: its module is loaded already

        if isinstance(self.connection, SshConnection):
            return self.connection
        raise ForwardError(self.name, f"port forwards need an SSH host; this is a {self.term} host")

    async def connect(self) -> None:
        """Connect now rather than on first use (raises ``ConnectError`` and subclasses)."""
        self._bind()
        self.hop_chain()
        await self.connection.connect()

    def _shell_transport(self, *, pty: bool) -> ShellTransport:
        self.hop_chain()
        return self.connection.shell_transport(pty=pty)

    def _session_pty(self, pty: bool) -> bool:
        return pty or self.connection.always_pty

    def _session_lock(self) -> SessionLock | None:
        return self.connection.session_lock()

    def _stream_transport(self) -> ShellTransport:
        self.hop_chain()
        return self.connection.stream_transport()

    # --- verbs that depend on the connection --------------------------------------------

    async def _oneshot(self, command: str, timeout: float | None) -> CommandStatus:
        return await self.connection.oneshot(command, timeout)

    async def _put(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult:
        return await self.connection.put(source_list(src), os.fspath(dest_dir), progress)

    async def _get(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult:
        return await self.connection.get(source_list(src), os.fspath(dest_dir), progress)

    # --- closing -----------------------------------------------------------------------------

    async def _close_links(self) -> None:
        await self.connection.close()

    def abandon(self) -> None:
        super().abandon()
        self.connection.abandon()
