"""SSH hosts: shells and exec channels on a pooled asyncssh connection, files by SFTP or SCP."""

from __future__ import annotations

import os
import posixpath
import secrets
import shlex
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from otto.errors import ConnectError, TransferError
from otto.hosts.base import process_status
from otto.hosts.connection import Connection
from otto.result import CommandStatus, Status, TransferResult
from otto.transfer import PART, Progress, place_staged, remove_staged, staging_dir
from otto.transports.base import ShellTransport
from otto.transports.ssh import SshLink, SshShell, exec_ssh, safe_path
from otto.transports.sshlib import asyncssh

if TYPE_CHECKING:
    from otto.hosts.forward import Forward
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
            assert host.user is not None  # RemoteHost requires it for SSH
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
        # Read at each use: a timeout set after the host was built (--connect-timeout) counts.
        self._link.connect_timeout = host.connect_timeout
        return self._link

    async def tunnel(self) -> asyncssh.SSHClientConnection:
        """A live connection to carry another host's traffic through this one."""
        return await self.link.connection()

    async def connect(self) -> None:
        await self.link.connection()

    # --- port forwards (otto.hosts.forward), on the connection that runs through the hops ---

    def _route(self) -> list[str]:
        return [hop.name for hop in self.host.hop_chain()] + [self.host.name]

    def forward(
        self, local_port: int, target: str, *, bind: str = "127.0.0.1"
    ) -> AbstractAsyncContextManager[Forward]:
        """Listen here on ``bind:local_port``; the host connects to ``target``."""
        from otto.hosts.forward import local_forward  # what a command does not use: not loaded

        return local_forward(self.host.tunnel, self._route(), local_port, target, bind=bind)

    def forward_remote(
        self, remote_port: int, target: str, *, bind: str = "127.0.0.1"
    ) -> AbstractAsyncContextManager[Forward]:
        """The host listens on ``bind:remote_port``; this machine connects to ``target``."""
        from otto.hosts.forward import remote_forward

        return remote_forward(self.host.tunnel, self._route(), remote_port, target, bind=bind)

    def socks(
        self, local_port: int, *, bind: str = "127.0.0.1"
    ) -> AbstractAsyncContextManager[Forward]:
        """A SOCKS4/5 proxy here on ``bind:local_port`` whose connections leave from the host."""
        from otto.hosts.forward import socks_forward

        return socks_forward(self.host.tunnel, self._route(), local_port, bind=bind)

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
        scp = self.host.transfer == "scp"
        try:
            if direction == "put":
                files, moved = await self._put(sources, dest, progress, scp=scp)
            else:
                files, moved = await self._get(sources, dest, progress, scp=scp)
        except (OSError, asyncssh.Error, ConnectError, TransferError) as exc:
            reason = exc.reason if isinstance(exc, (asyncssh.Error, ConnectError)) else str(exc)
            return TransferResult(
                Status.Error,
                duration=time.monotonic() - started,
                error=f"{self.host.name}: {direction} {', '.join(sources)}: {reason}",
            )
        return TransferResult(Status.Success, files, moved, time.monotonic() - started)

    async def _remote(self, script: str) -> None:
        """Run a transfer's helper script; raise ``TransferError`` with its output if it fails."""
        raw, code, _, error = await exec_ssh(self.link, script, timeout=None)
        if error:
            raise TransferError(error)
        if code != 0:
            raise TransferError(raw.decode("utf-8", "replace").strip() or f"exit status {code}")

    async def _put(
        self, sources: list[str], dest: str, progress: Progress | None, *, scp: bool
    ) -> tuple[list[str], int]:
        for source in sources:
            if not os.path.exists(source):
                raise TransferError(f"{source} does not exist")
            if scp:
                _check_scp_names(source)
        link = self.link
        stage = posixpath.join(dest, f"{PART}-{secrets.token_hex(4)}")
        qdest, qstage = _quote(dest), _quote(stage)
        await self._remote(
            f"if [ -d {qdest} ]; then mkdir -- {qstage}; "
            f"else echo destination folder {qdest} does not exist >&2; exit 1; fi"
        )
        link.add_scratch(stage)
        placed = False
        try:
            meter = _Meter(stage, dest, progress, posixpath.join)
            conn = await link.connection()
            options = _options(meter)
            if scp:
                await asyncssh.scp(sources, (conn, qstage), **options)
            else:
                async with conn.start_sftp_client() as sftp:
                    await sftp.put(sources, stage, **options)
            # Folders are merged, files renamed over their targets ("$0" is dest).
            await self._remote(
                f"cd -- {qstage} && "
                "find . ! -name . -type d -exec sh -c "
                """'for d; do mkdir -p -- "$0/$d" || exit 1; done' .. {} + && """
                "find . ! -type d -exec sh -c "
                """'for f; do mv -f -- "$f" "$0/$f" || exit 1; done' .. {} + && """
                f"cd / && rm -rf -- {qstage}"
            )
            placed = True
        finally:
            link.drop_scratch(stage, delete=not placed)
        return _put_files(sources, dest), meter.moved

    async def _get(
        self, sources: list[str], dest: str, progress: Progress | None, *, scp: bool
    ) -> tuple[list[str], int]:
        target = Path(dest)
        if not target.is_dir():
            raise TransferError(f"local destination folder {dest} does not exist")
        if scp:
            for source in sources:
                _check_scp_names(source)
        conn = await self.link.connection()
        stage = staging_dir(target)
        try:
            meter = _Meter(str(stage), dest, progress, os.path.join)
            options = _options(meter)
            if scp:
                await asyncssh.scp([(conn, _quote(s)) for s in sources], stage, **options)
            else:
                async with conn.start_sftp_client() as sftp:
                    await sftp.get(sources, stage, **options)
            files = place_staged(stage, target)
        finally:
            remove_staged(stage)
        return files, meter.moved

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    def abandon(self) -> None:
        if self._link is not None:
            self._link.abort()


def _quote(path: str) -> str:
    """``path`` as one shell word that no command takes for an option."""
    return shlex.quote(safe_path(path))


def _check_scp_names(path: str) -> None:
    """SCP's protocol ends a file name at a newline: refuse such names up front."""
    names = [path]
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            names.extend(os.path.join(root, n) for n in (*dirs, *files))
    for name in names:
        if "\n" in name:
            raise TransferError(f"SCP cannot carry a file name with a newline ({name!r}); use sftp")


def _put_files(sources: list[str], dest: str) -> list[str]:
    """The remote paths a put wrote, from the local sources."""
    files: list[str] = []
    for source in sources:
        top = posixpath.join(dest, os.path.basename(os.path.normpath(source)))
        if not os.path.isdir(source):
            files.append(top)
            continue
        for root, _dirs, names in os.walk(source):
            rel = os.path.relpath(root, source)
            base = top if rel == "." else posixpath.join(top, *Path(rel).parts)
            files.extend(posixpath.join(base, name) for name in sorted(names))
    return files


class _Meter:
    """asyncssh's progress handler: counts finished bytes, reports final paths."""

    def __init__(
        self,
        stage: str,
        dest: str,
        progress: Progress | None,
        join: Callable[[str, str], str],
    ) -> None:
        self._stage = stage.rstrip("/") + "/"
        self._dest = dest
        self._progress = progress
        self._join = join
        self.moved = 0

    def __call__(self, srcpath: bytes, dstpath: bytes, done: int, total: int) -> None:
        if done == total:
            self.moved += total
        if self._progress is not None:
            path = os.fsdecode(dstpath)
            rel = path[len(self._stage) :] if path.startswith(self._stage) else path
            self._progress(self._join(self._dest, rel), done, total)


def _options(meter: _Meter) -> dict[str, Any]:
    return {"recurse": True, "preserve": True, "progress_handler": meter}
