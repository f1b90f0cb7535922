"""SSH hosts: shells and exec channels on a pooled asyncssh connection, files by SFTP or SCP."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import asyncssh

from otto.errors import ConnectError
from otto.hosts.base import process_status
from otto.hosts.connection import Connection
from otto.result import CommandStatus, Status, TransferResult
from otto.transfer import Progress
from otto.transports.base import ShellTransport
from otto.transports.ssh import SshLink, SshShell, exec_ssh

if TYPE_CHECKING:
    from otto.hosts.remote import RemoteHost

__all__ = ["SshConnection"]


class SshConnection(Connection):
    """A host reached over SSH; it can also carry tunnels for hosts behind it."""

    terms: ClassVar[tuple[str, ...]] = ("ssh",)
    default_port: ClassVar[int] = 22

    def __init__(self, host: RemoteHost) -> None:
        super().__init__(host)
        self._link: SshLink | None = None

    @property
    def link(self) -> SshLink:
        """The host's SSH connection pool (created on first use)."""
        host = self.host
        chain = host.hop_chain()
        if self._link is None:
            hop = chain[-1] if chain else None
            self._link = SshLink(
                host.name,
                host.address,
                port=host.port,
                user=host.user,
                password=host.credentials.password,
                key=host.key,
                known_hosts=host.known_hosts_path(),
                connect_timeout=host.connect_timeout,
                keepalive_interval=host.keepalive_interval,
                hop=None if hop is None else hop.tunnel,
                hop_name="" if hop is None else hop.name,
                max_channels=host.max_channels,
            )
        return self._link

    async def tunnel(self) -> asyncssh.SSHClientConnection:
        """A live connection to carry another host's traffic through this one."""
        return await self.link.connection()

    async def connect(self) -> None:
        await self.link.connection()

    def shell_transport(self, *, pty: bool) -> ShellTransport:
        return SshShell(self.link, pty=pty)

    async def oneshot(self, command: str, timeout: float | None) -> CommandStatus:
        started = (time.monotonic(), time.time())
        raw, code, timed_out, error = await exec_ssh(self.link, command, timeout=timeout)
        return process_status(
            self.host.name,
            command,
            raw,
            code,
            started=started,
            timed_out=timed_out,
            timeout=timeout,
            error=error,
        )

    async def put(self, sources: list[str], dest: str, progress: Progress | None) -> TransferResult:
        return await self._transfer("put", sources, dest, progress)

    async def get(self, sources: list[str], dest: str, progress: Progress | None) -> TransferResult:
        return await self._transfer("get", sources, dest, progress)

    async def _transfer(
        self, direction: str, sources: list[str], dest: str, progress: Progress | None
    ) -> TransferResult:
        started = time.monotonic()
        files: list[str] = []
        moved = 0

        def handler(srcpath: bytes, dstpath: bytes, done: int, total: int) -> None:
            nonlocal moved
            if done == total:
                files.append(os.fsdecode(dstpath))
                moved += total
            if progress is not None:
                progress(os.fsdecode(dstpath), done, total)

        try:
            conn = await self.link.connection()
            if direction == "put":
                missing = [s for s in sources if not os.path.exists(s)]
                if missing:
                    raise FileNotFoundError(f"{missing[0]} does not exist")
            kwargs: dict[str, Any] = {
                "recurse": True,
                "preserve": True,
                "progress_handler": handler,
            }
            if self.host.transfer == "scp":
                if direction == "put":
                    await asyncssh.scp(sources, (conn, dest), **kwargs)
                else:
                    await asyncssh.scp([(conn, s) for s in sources], dest, **kwargs)
            else:
                async with conn.start_sftp_client() as sftp:
                    if direction == "put":
                        await sftp.put(sources, dest, **kwargs)
                    else:
                        await sftp.get(sources, dest, **kwargs)
        except (OSError, asyncssh.Error, ConnectError) as exc:
            reason = exc.reason if isinstance(exc, (asyncssh.Error, ConnectError)) else str(exc)
            return TransferResult(
                Status.Error,
                files,
                moved,
                time.monotonic() - started,
                error=f"{self.host.name}: {direction} {', '.join(sources)}: {reason}",
            )
        if direction == "get":
            files = [f for f in files if Path(f).exists()]
        return TransferResult(Status.Success, files, moved, time.monotonic() - started)

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    def abandon(self) -> None:
        if self._link is not None:
            self._link.abort()
