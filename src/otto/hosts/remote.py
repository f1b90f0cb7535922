"""RemoteHost: a machine reached over SSH (asyncssh) or Telnet (telnetlib3).

Everything ``LocalHost`` does works here: the sessions are shell channels on
one reused SSH connection (more connections when the server's channel limit
is reached), or Telnet logins; ``oneshot`` is an SSH exec channel or a Telnet
login of its own; files move by SFTP or SCP, or through the shell over Telnet.
``hop`` reaches the host through another ``RemoteHost``'s SSH connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import asyncssh

from otto import shellxfer
from otto.errors import ConnectError
from otto.hosts.base import Host
from otto.result import CommandStatus, Status, TransferResult
from otto.session import Session
from otto.transfer import PathArg, Progress, source_list
from otto.transports.base import ShellTransport
from otto.transports.ssh import SshLink, SshShell, exec_ssh
from otto.transports.telnet import LOGIN_PROMPT, PASSWORD_PROMPT, TelnetShell

__all__ = ["DEFAULT_KNOWN_HOSTS", "RemoteHost"]

DEFAULT_KNOWN_HOSTS = os.path.join("~", ".ssh", "known_hosts")


class RemoteHost(Host):
    """A machine reached over SSH or Telnet.

    Args:
        address: host name or IP address (as seen from ``hop`` if there is one).
        user: who to log in as.
        password: password for SSH password auth or the Telnet login. Never
            shown in reprs, logs or errors.
        key: a private key file for SSH (else the agent and default keys).
        port: default 22 for SSH, 23 for Telnet.
        term: ``"ssh"`` or ``"telnet"``.
        hop: another ``RemoteHost`` (SSH) to tunnel through; hops chain.
        known_hosts: the known_hosts file host keys are checked against, as
            OpenSSH does; ``None`` (explicitly) turns checking off.
        name: how the host is called in results (default: the address).
        connect_timeout: seconds to connect, log in and get a ready shell.
        transfer: ``"sftp"`` (default) or ``"scp"`` for SSH file transfer.
        keepalive_interval: seconds between SSH keepalives (a dead link is
            noticed after three missed ones).
        max_channels: session channels per SSH connection (OpenSSH MaxSessions).
        login_prompt, password_prompt: regexes for the Telnet login.
    """

    def __init__(
        self,
        address: str,
        *,
        user: str,
        password: str | None = None,
        key: PathArg | None = None,
        port: int | None = None,
        term: Literal["ssh", "telnet"] = "ssh",
        hop: RemoteHost | None = None,
        known_hosts: PathArg | None = DEFAULT_KNOWN_HOSTS,
        name: str | None = None,
        connect_timeout: float = 10.0,
        transfer: Literal["sftp", "scp"] = "sftp",
        keepalive_interval: float = 5.0,
        max_channels: int = 10,
        login_prompt: str = LOGIN_PROMPT,
        password_prompt: str = PASSWORD_PROMPT,
    ) -> None:
        if term not in ("ssh", "telnet"):
            raise ValueError(f"term must be 'ssh' or 'telnet', not {term!r}")
        if hop is not None and hop.term != "ssh":
            raise ValueError(f"hop {hop.name!r} must be an SSH host to tunnel through")
        if transfer not in ("sftp", "scp"):
            raise ValueError(f"transfer must be 'sftp' or 'scp', not {transfer!r}")
        super().__init__(name or address)
        self.term: Literal["ssh", "telnet"] = term
        self.address = address
        self.user = user
        self._password = password
        self.key = key
        self.port = port or (22 if term == "ssh" else 23)
        self.hop = hop
        self.known_hosts = known_hosts
        self.connect_timeout = connect_timeout
        self.transfer = transfer
        self.keepalive_interval = keepalive_interval
        self.max_channels = max_channels
        self.login_prompt = login_prompt
        self.password_prompt = password_prompt
        self._link: SshLink | None = None
        # Telnet daemons (busybox telnetd among them) drop logins that arrive in a
        # burst; a few at a time per host all get through.
        self._telnet_logins = asyncio.Semaphore(2)

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

    def _known_hosts_arg(self) -> Any:
        if self.known_hosts is None:
            return None
        return os.path.expanduser(os.fspath(self.known_hosts))

    def ssh_link(self) -> SshLink:
        """This host's SSH connection pool (created on first use)."""
        if self.term != "ssh":
            raise ConnectError(self.name, "is a Telnet host; it has no SSH connection")
        self.hop_chain()
        if self._link is None:
            hop = self.hop
            self._link = SshLink(
                self.name,
                self.address,
                port=self.port,
                user=self.user,
                password=self._password,
                key=self.key,
                known_hosts=self._known_hosts_arg(),
                connect_timeout=self.connect_timeout,
                keepalive_interval=self.keepalive_interval,
                hop=None if hop is None else hop._tunnel_connection,
                hop_name="" if hop is None else hop.name,
                max_channels=self.max_channels,
            )
        return self._link

    async def _tunnel_connection(self) -> asyncssh.SSHClientConnection:
        self._bind()
        return await self.ssh_link().connection()

    async def connect(self) -> None:
        """Connect now rather than on first use (raises ``ConnectError`` and subclasses)."""
        self._bind()
        if self.term == "ssh":
            await self.ssh_link().connection()
        else:
            session = await self.open_session("__connect__")
            await session.close()

    def _shell_transport(self, *, pty: bool) -> ShellTransport:
        if self.term == "ssh":
            return SshShell(self.ssh_link(), pty=pty)
        self.hop_chain()
        return TelnetShell(
            self.name,
            self.address,
            port=self.port,
            user=self.user,
            password=self._password,
            connect_timeout=self.connect_timeout,
            login_prompt=self.login_prompt,
            password_prompt=self.password_prompt,
            tunnel=None if self.hop is None else self._telnet_tunnel,
            logins=self._telnet_logins,
        )

    async def _telnet_tunnel(self) -> tuple[str, int, Callable[[], None]]:
        assert self.hop is not None
        try:
            conn = await self.hop._tunnel_connection()
        except ConnectError as exc:
            raise ConnectError(
                self.name, f"cannot reach hop {self.hop.name}: {exc.reason}"
            ) from exc
        listener = await conn.forward_local_port("127.0.0.1", 0, self.address, self.port)
        return "127.0.0.1", listener.get_port(), listener.close

    def _new_session(self, name: str, pty: bool) -> Session:
        # Telnet always gives the shell a terminal: frame it as one.
        return super()._new_session(name, pty or self.term == "telnet")

    async def open_session(self, name: str, *, pty: bool = False) -> Session:
        return await super().open_session(name, pty=pty or self.term == "telnet")

    # --- one-shot commands -------------------------------------------------------------

    async def _oneshot(self, command: str, timeout: float | None) -> CommandStatus:
        if self.term == "telnet":
            return await self._oneshot_telnet(command, timeout)
        started = (time.monotonic(), time.time())
        raw, code, timed_out, error = await exec_ssh(self.ssh_link(), command, timeout=timeout)
        return self._process_status(
            command, started, raw=raw, code=code, timed_out=timed_out, timeout=timeout, error=error
        )

    async def _oneshot_telnet(self, command: str, timeout: float | None) -> CommandStatus:
        session = super()._new_session(f"oneshot-{id(command):x}", True)
        try:
            return (await session.run(command, timeout=timeout)).only
        finally:
            await session.close()

    # --- files -------------------------------------------------------------------------------

    async def _put(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult:
        sources = source_list(src)
        if self.term == "telnet":
            return await self._via_shell(shellxfer.put, sources, os.fspath(dest_dir), progress)
        return await self._ssh_transfer("put", sources, os.fspath(dest_dir), progress)

    async def _get(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult:
        sources = source_list(src)
        if self.term == "telnet":
            return await self._via_shell(shellxfer.get, sources, os.fspath(dest_dir), progress)
        return await self._ssh_transfer("get", sources, os.fspath(dest_dir), progress)

    async def _via_shell(
        self,
        how: Callable[..., Any],
        sources: list[str],
        dest: str,
        progress: Progress | None,
    ) -> TransferResult:
        started = time.monotonic()
        session = super()._new_session(f"transfer-{id(sources):x}", True)
        try:
            files, moved = await how(session, sources, dest, progress)
        except (OSError, shellxfer.ShellTransferError) as exc:
            return TransferResult(
                Status.Error, duration=time.monotonic() - started, error=f"{self.name}: {exc}"
            )
        finally:
            await session.close()
        return TransferResult(Status.Success, files, moved, time.monotonic() - started)

    async def _ssh_transfer(
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
            conn = await self.ssh_link().connection()
            if direction == "put":
                missing = [s for s in sources if not os.path.exists(s)]
                if missing:
                    raise FileNotFoundError(f"{missing[0]} does not exist")
            if self.transfer == "scp":
                if direction == "put":
                    await asyncssh.scp(
                        sources, (conn, dest), recurse=True, preserve=True, progress_handler=handler
                    )
                else:
                    await asyncssh.scp(
                        [(conn, s) for s in sources],
                        dest,
                        recurse=True,
                        preserve=True,
                        progress_handler=handler,
                    )
            else:
                async with conn.start_sftp_client() as sftp:
                    if direction == "put":
                        await sftp.put(
                            sources, dest, recurse=True, preserve=True, progress_handler=handler
                        )
                    else:
                        await sftp.get(
                            sources, dest, recurse=True, preserve=True, progress_handler=handler
                        )
        except (OSError, asyncssh.Error, ConnectError) as exc:
            reason = exc.reason if isinstance(exc, (asyncssh.Error, ConnectError)) else str(exc)
            return TransferResult(
                Status.Error,
                files,
                moved,
                time.monotonic() - started,
                error=f"{self.name}: {direction} {', '.join(sources)}: {reason}",
            )
        if direction == "get":
            files = [f for f in files if Path(f).exists()]
        return TransferResult(Status.Success, files, moved, time.monotonic() - started)

    # --- closing -----------------------------------------------------------------------------

    async def _close_links(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception):
                await link.close()

    def abandon(self) -> None:
        super().abandon()
        if self._link is not None:
            for slot in self._link._conns:
                if slot.conn is not None:
                    with contextlib.suppress(Exception):
                        slot.conn.abort()
