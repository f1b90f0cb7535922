"""LocalHost: this machine, its shells on pipes or a pty, files copied locally."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from otto.hosts.base import Host, process_status
from otto.transports.local import LocalShell, default_shell, exec_local

if TYPE_CHECKING:
    from collections.abc import Sequence

    from otto.hosts.power import PowerSpec
    from otto.result import CommandStatus, TransferResult
    from otto.transfer import PathArg, Progress
    from otto.transports.base import ShellTransport

__all__ = ["LocalHost"]


class LocalHost(Host):
    """This machine. Sessions are local shells; files are copied locally.

    Args:
        name: how the host is called in results and messages.
        shell: the shell for sessions (default: bash if installed, else /bin/sh).
            One-shot commands run with ``/bin/sh -c``, as ``subprocess`` does.
        env: the environment for new shells (default: this process's).
        cwd: the starting directory of new shells (default: this process's).
        become_password: answers sudo's or su's password prompt in sessions
            opened with ``as_user``; never shown.
        power: how to switch the machine on and off (see ``otto.hosts.power``).
    """

    def __init__(
        self,
        name: str = "local",
        *,
        shell: str | None = None,
        env: dict[str, str] | None = None,
        cwd: PathArg | None = None,
        become_password: str | None = None,
        power: PowerSpec | None = None,
    ) -> None:
        super().__init__(name, become_password=become_password, power=power)
        self.shell = shell or default_shell()
        self._env = env
        self._cwd = None if cwd is None else os.fspath(cwd)

    def _shell_transport(self, *, pty: bool) -> ShellTransport:
        return LocalShell(self.shell, pty=pty, env=self._env, cwd=self._cwd)

    async def _oneshot(self, command: str, timeout: float | None) -> CommandStatus:
        started = (time.monotonic(), time.time())
        raw, code, timed_out = await exec_local(
            command, timeout=timeout, env=self._env, cwd=self._cwd
        )
        return process_status(
            self.name, command, raw, code, started=started, timed_out=timed_out, timeout=timeout
        )

    async def _put(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult:
        from otto.transfer import copy_local

        return await copy_local(src, dest_dir, progress, host=self.name)

    async def _get(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult:
        from otto.transfer import copy_local

        return await copy_local(src, dest_dir, progress, host=self.name)
