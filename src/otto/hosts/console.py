"""Console hosts: a serial console over TCP (``term="console"``) or a local serial line
(``term="serial"``), one stream shared by every session.

The host's sessions, its ``oneshot`` calls and its transfers all run in the
console's one shell (see ``otto.transports.console``), serialized by one lock:
a ``cd`` in one session is seen by the others, and a long command in one makes
the others wait.

A serial line is named by a path (a ``/dev/serial/by-id`` link is followed at
every open) or by USB attributes; a device that disappears (a USB adapter
re-enumerated by a board's reset) is reopened at the next verb, and the gap is
noted in ``console_log`` (see ``otto.transports.serial_identity``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from otto import shellxfer
from otto.hosts.connection import Connection
from otto.hosts.telnet import oneshot_in_shell, transfer_via_shell
from otto.result import CommandStatus, TransferResult
from otto.session import SessionLock
from otto.transfer import Progress
from otto.transports.base import ShellTransport
from otto.transports.console import (
    ConsoleLink,
    ConsoleShell,
    ConsoleStream,
    ConsoleStreamView,
    StreamSink,
    TcpConsoleStream,
)
from otto.transports.serial_identity import SerialLine, UsbIdentity

if TYPE_CHECKING:
    from otto.hosts.remote import RemoteHost

__all__ = ["CONSOLE_PROTOCOLS", "ConsoleConnection", "split_console_address"]

CONSOLE_PROTOCOLS = ("telnet", "raw")


def split_console_address(address: str, port: int) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) -> (host, port); ``port`` when the address has none."""
    host, sep, tail = address.rpartition(":")
    if sep and tail.isdigit() and (host.endswith("]") or ":" not in host):
        return host.strip("[]"), int(tail)
    return address.strip("[]"), port


class ConsoleConnection(Connection):
    """A host behind a console: one stream, one shell, every session serialized on it.

    ``oneshot`` runs in that shell too (there is no other process to start), and
    files move through it in base64 chunks (see ``otto.shellxfer``).
    """

    terms: ClassVar[tuple[str, ...]] = ("console", "serial")
    always_pty: ClassVar[bool] = True

    def __init__(self, host: RemoteHost) -> None:
        super().__init__(host)
        self.serial_line: SerialLine | None = None
        if host.term == "serial":
            usb = UsbIdentity.from_mapping(host.usb) if host.usb else None
            self.serial_line = SerialLine(host.name, host.address, usb)
            where = self.serial_line.where
        else:
            address, port = split_console_address(host.address, host.port)
            if not port:
                raise ValueError(
                    f"console host {host.name!r}: address must be host:port, not {host.address!r}"
                )
            where = f"{address}:{port}"
        if host.console_protocol not in CONSOLE_PROTOCOLS:
            raise ValueError(
                f"console_protocol must be one of {list(CONSOLE_PROTOCOLS)}, "
                f"not {host.console_protocol!r}"
            )
        self._lock = SessionLock()
        self.link = ConsoleLink(
            host.name,
            opener=self._open_stream,
            where=where,
            user=host.user,
            password=lambda: self.host.credentials.password,
            connect_timeout=host.connect_timeout,
            login_prompt=host.login_prompt,
            password_prompt=host.password_prompt,
            console_log=None if host.console_log is None else str(host.console_log),
            secrets=self._secrets,
        )

    def _secrets(self) -> list[str]:
        words = [self.host.credentials.password]
        become = getattr(self.host, "_become_password", None)  # a Secret, when set
        if become is not None:
            words.append(str(become.reveal()))
        return [w for w in words if w]

    async def _open_stream(self, sink: StreamSink) -> ConsoleStream:
        host = self.host
        if self.serial_line is not None:
            from otto.transports.serial import SerialStream  # pyserial only where used

            async def opener(watch: StreamSink, device: str) -> ConsoleStream:
                return await SerialStream.open(watch, device, host.baud)

            # A link (by-id, by-path) or the usb attributes are resolved at every open.
            return await self.serial_line.open(
                sink,
                opener,
                connect_timeout=host.connect_timeout,
                console_log=None if host.console_log is None else str(host.console_log),
            )
        address, port = split_console_address(host.address, host.port)
        return await TcpConsoleStream.open(
            sink,
            address,
            port,
            telnet=host.console_protocol == "telnet",
            keepalive_interval=host.keepalive_interval,
        )

    def shell_transport(self, *, pty: bool) -> ShellTransport:
        return ConsoleShell(self.link)

    def stream_transport(self) -> ShellTransport:
        return ConsoleStreamView(self.link)

    def session_lock(self) -> SessionLock:
        return self._lock

    async def connect(self) -> None:
        await self.link.connect()

    async def oneshot(self, command: str, timeout: float | None) -> CommandStatus:
        return await oneshot_in_shell(
            self.host, command, timeout, f"no shell on the console {self.link.where} within {{}}s"
        )

    async def put(self, sources: list[str], dest: str, progress: Progress | None) -> TransferResult:
        return await transfer_via_shell(self.host, shellxfer.put, sources, dest, progress)

    async def get(self, sources: list[str], dest: str, progress: Progress | None) -> TransferResult:
        return await transfer_via_shell(self.host, shellxfer.get, sources, dest, progress)

    async def close(self) -> None:
        await self.link.close()
        if self.serial_line is not None:
            self.serial_line.forget()

    def abandon(self) -> None:
        self.link.abandon()
