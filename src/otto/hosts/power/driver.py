"""What every power driver does: ``PowerDriver``, its actions and its time limits.

A driver switches one host's power ``on``, ``off`` or ``cycle`` and reads its
state back (``status``: ``"on"`` or ``"off"``), each within a limit in seconds
(what is left of the caller's deadline, at most ``POWER_COMMAND_TIMEOUT``).
``base.py`` re-exports these names beside ``PowerSpec``; the drivers import
them from here, so that ``PowerSpec`` can build its command driver without a
circle.
"""

from __future__ import annotations

import abc
import time
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from otto.hosts.base import Host

__all__ = [
    "POWER_ACTIONS",
    "POWER_COMMAND_TIMEOUT",
    "SWITCH_ACTIONS",
    "PowerAction",
    "PowerDriver",
    "PowerState",
    "SwitchAction",
    "limit_of",
    "why_late",
]

PowerAction = Literal["on", "off", "cycle", "status"]
SwitchAction = Literal["on", "off", "cycle"]
PowerState = Literal["on", "off"]
POWER_ACTIONS: tuple[PowerAction, ...] = ("on", "off", "cycle", "status")
SWITCH_ACTIONS: tuple[SwitchAction, ...] = ("on", "off", "cycle")

POWER_COMMAND_TIMEOUT = 120.0
"""Seconds one power command (or request) may take."""


def limit_of(deadline: float | None) -> float:
    """Seconds one power step may take: ``POWER_COMMAND_TIMEOUT``, less when ``deadline``
    (a ``time.monotonic()`` value) comes first."""
    if deadline is None:
        return POWER_COMMAND_TIMEOUT
    return max(0.0, min(POWER_COMMAND_TIMEOUT, deadline - time.monotonic()))


def why_late(limit: float) -> str:
    """How a step that ran out of ``limit`` seconds is described."""
    if limit < POWER_COMMAND_TIMEOUT:
        return f"did not finish within {limit:g}s (what was left of the call's timeout)"
    return f"timed out after {limit:g}s"


class PowerDriver(abc.ABC):
    """How one host's power is switched and read back.

    Messages of every driver go through ``otto.redact``: a command, URL or
    body may hold a password.
    """

    kind: str = ""
    """The lab's ``driver`` name: ``command``, ``snmp``, ``http``."""

    @abc.abstractmethod
    def native(self, action: PowerAction) -> bool:
        """True when the driver does ``action`` itself (a ``cycle`` it has not is done
        as ``off`` then ``on`` by the caller)."""

    @abc.abstractmethod
    def describe(self, action: PowerAction) -> str:
        """What doing ``action`` means, for a dry run and messages (redacted)."""

    @abc.abstractmethod
    async def switch(self, host: Host, action: SwitchAction, limit: float) -> None:
        """Do ``action`` (a native one) within ``limit`` seconds.

        Raises:
            ConnectError: it failed or did not finish; names what was done and
                what came back.
        """

    @abc.abstractmethod
    async def state(self, host: Host, limit: float) -> PowerState:
        """Read the power state back within ``limit`` seconds.

        Raises:
            ConnectError: it could not be read, or the answer is neither on nor off.
        """

    def can(self, action: PowerAction) -> bool:
        """True when ``action`` can be done: natively, or a cycle as off then on."""
        if action == "cycle":
            return self.native("cycle") or (self.native("on") and self.native("off"))
        return self.native(action)

    async def close(self) -> None:
        """Let go of what the driver holds (a shared SNMP engine)."""
