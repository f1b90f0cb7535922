"""DeviceHost: a device with no shell (a switch, a PDU, an appliance), ``term="none"``.

It is monitored over SNMP (``snmp``) and can be switched on and off through its
``power`` spec, but it has no shell: ``run``, ``oneshot``, sessions, ``send`` /
``expect``, apps, transfers, repeats and the shell-based waits all fail at once
with a ``ConnectError`` that names the host, instead of trying to reach a
shell that is not there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from otto.errors import ConnectError
from otto.hosts.base import Host, OnResult
from otto.hosts.power import PowerSpec
from otto.hosts.power import power as switch_power
from otto.result import CommandStatus, TransferResult
from otto.transfer import PathArg, Progress
from otto.transports.base import ShellTransport
from otto.transports.snmp import SnmpSettings

__all__ = ["DeviceHost"]


class DeviceHost(Host):
    """A device reached without a shell: read over SNMP, powered by its power spec.

    Args:
        address: the device's address (where its SNMP agent listens unless
            ``snmp.address`` says otherwise).
        name: how the host is called in results (default: the address).
        snmp: how to read it over SNMP (``otto monitor`` does).
        power: how to switch it on and off (see ``otto.hosts.power``).
    """

    has_shell = False

    def __init__(
        self,
        address: str,
        *,
        name: str | None = None,
        snmp: SnmpSettings | None = None,
        power: PowerSpec | None = None,
    ) -> None:
        super().__init__(name or address, power=power)
        self.address = address
        self.snmp = snmp

    def __repr__(self) -> str:
        return f"DeviceHost({self.address!r}, name={self.name!r})"

    def _no_shell(self, what: str) -> ConnectError:
        return ConnectError(
            self.name,
            f"{what}: this host has no shell (term 'none': a device read over SNMP); "
            "only monitoring and power work on it",
        )

    def _shell_transport(self, *, pty: bool) -> ShellTransport:
        raise self._no_shell("cannot start a shell")

    def _stream_transport(self) -> ShellTransport:
        raise self._no_shell("cannot open a stream")

    async def _oneshot(self, command: str, timeout: float | None) -> CommandStatus:
        raise self._no_shell("cannot run a command")

    async def _put(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult:
        raise self._no_shell("cannot copy files to it")

    async def _get(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult:
        raise self._no_shell("cannot copy files from it")

    def start_repeat(
        self,
        name: str,
        cmds: str | Sequence[str],
        interval: float | timedelta,
        *,
        times: int | None = None,
        duration: float | timedelta | None = None,
        until: datetime | None = None,
        on_result: OnResult | None = None,
        max_history: int = 1000,
    ) -> None:
        """Refused: a repeat runs commands, and this host has none to run."""
        raise self._no_shell(f"cannot repeat commands ({name!r})")

    async def wait_until_up(
        self, timeout: float = 300.0, *, prompt: str | re.Pattern[str] | None = None
    ) -> None:
        """Refused: up means a shell answers, and this host has none."""
        raise self._no_shell("cannot wait until it is up")

    async def wait_until_down(self, timeout: float = 300.0) -> None:
        """Refused: down means a shell stops answering, and this host has none."""
        raise self._no_shell("cannot wait until it is down")

    async def reboot(
        self,
        *,
        hard: bool = False,
        timeout: float = 300.0,
        wait: bool = True,
        command: str = "reboot",
    ) -> None:
        """Power-cycle the device (``hard=True, wait=False``); anything else needs a shell.

        ``timeout`` bounds the power command (its own bound is 120 s).
        """
        if hard and not wait:
            self._bind()
            await switch_power(self, "cycle", deadline=time.monotonic() + timeout)
            return
        raise self._no_shell(
            "cannot reboot it through a shell or wait for one "
            "(use reboot(hard=True, wait=False) or power('cycle'))"
        )
