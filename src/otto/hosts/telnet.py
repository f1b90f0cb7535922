"""Telnet hosts: a login per shell, one-shot commands and files through a shell."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from otto import shellxfer
from otto.errors import ConnectError
from otto.hosts.connection import Connection
from otto.result import CommandStatus, Status, TransferResult
from otto.transfer import Progress
from otto.transports.base import ShellTransport
from otto.transports.telnet import TelnetShell

if TYPE_CHECKING:
    from otto.hosts.remote import RemoteHost

__all__ = ["TelnetConnection", "oneshot_in_shell", "transfer_via_shell"]


class TelnetConnection(Connection):
    """A host reached over Telnet: every shell is a login of its own, on a terminal.

    ``oneshot`` runs in a login of its own (there is no exec channel), and
    files move through a shell in base64 chunks (see ``otto.shellxfer``).
    """

    terms: ClassVar[tuple[str, ...]] = ("telnet",)
    default_port: ClassVar[int] = 23
    always_pty: ClassVar[bool] = True

    def __init__(self, host: RemoteHost) -> None:
        super().__init__(host)
        # Telnet daemons (busybox telnetd among them) drop logins that arrive in a
        # burst; a few at a time per host all get through.
        self._logins = asyncio.Semaphore(2)

    def shell_transport(self, *, pty: bool) -> ShellTransport:
        host = self.host
        chain = host.hop_chain()
        assert host.user is not None  # RemoteHost requires it for Telnet
        return TelnetShell(
            host.name,
            host.address,
            port=host.port,
            user=host.user,
            password=host.credentials.password,
            connect_timeout=host.connect_timeout,
            keepalive_interval=host.keepalive_interval,
            login_prompt=host.login_prompt,
            password_prompt=host.password_prompt,
            tunnel=self._tunnel if chain else None,
            logins=self._logins,
        )

    async def _tunnel(self) -> tuple[str, int, Callable[[], None]]:
        hop = self.host.hop
        assert hop is not None
        try:
            conn = await hop.tunnel()
        except ConnectError as exc:
            raise ConnectError(
                self.host.name, f"cannot reach hop {hop.name}: {exc.reason}", step=exc.step
            ) from exc
        listener = await conn.forward_local_port("127.0.0.1", 0, self.host.address, self.host.port)
        return "127.0.0.1", listener.get_port(), listener.close

    async def connect(self) -> None:
        session = self.host.private_session("connect")
        try:
            await session.start()
        finally:
            await session.close()

    async def oneshot(self, command: str, timeout: float | None) -> CommandStatus:
        where = f"no Telnet shell within {{}}s (connecting to {self.host.address}:{self.host.port})"
        return await oneshot_in_shell(self.host, command, timeout, where)

    async def put(self, sources: list[str], dest: str, progress: Progress | None) -> TransferResult:
        return await transfer_via_shell(self.host, shellxfer.put, sources, dest, progress)

    async def get(self, sources: list[str], dest: str, progress: Progress | None) -> TransferResult:
        return await transfer_via_shell(self.host, shellxfer.get, sources, dest, progress)


async def oneshot_in_shell(
    host: RemoteHost, command: str, timeout: float | None, no_shell: str
) -> CommandStatus:
    """``oneshot`` for kinds with no exec channel: a private session, ``timeout`` bounding
    its start too (``no_shell`` says what did not start, ``{}`` standing for the seconds)."""
    session = host.private_session("oneshot")
    try:
        if timeout is None:
            return (await session.run(command)).only
        started = (time.monotonic(), time.time())
        try:
            async with asyncio.timeout(timeout):
                await session.start()
        except TimeoutError:
            return CommandStatus.finished(
                command,
                "",
                None,
                started=started,
                host=host.name,
                session=session.name,
                timed_out=True,
                error=f"{host.name}: " + no_shell.format(f"{timeout:g}"),
            )
        left = max(0.0, timeout - (time.monotonic() - started[0]))
        return (await session.run(command, timeout=left)).only
    finally:
        await session.close()


async def transfer_via_shell(
    host: RemoteHost,
    how: shellxfer.Transfer,
    sources: list[str],
    dest: str,
    progress: Progress | None,
) -> TransferResult:
    """``put``/``get`` through a private session's shell (base64 chunks, see ``otto.shellxfer``)."""
    started = time.monotonic()
    session = host.private_session("transfer")
    try:
        files, moved = await how(session, sources, os.fspath(dest), progress)
    except (OSError, shellxfer.ShellTransferError) as exc:
        return TransferResult(
            Status.Error, duration=time.monotonic() - started, error=f"{host.name}: {exc}"
        )
    finally:
        await session.close()
    return TransferResult(Status.Success, files, moved, time.monotonic() - started)
