"""The power interface: what a host's power spec is, and what every driver does.

A driver switches one host's power ``on``, ``off`` or ``cycle`` and reads its
state back (``status``: ``"on"`` or ``"off"``), each within a limit in seconds
(what is left of the caller's deadline, at most ``POWER_COMMAND_TIMEOUT``).
Drivers: ``command`` (shell commands on a controller), ``snmp`` (a PDU's
outlet), ``http`` (a PDU's or relay's web API). ``PowerDriver`` and the
action types live in ``driver.py`` (which the drivers import) and are
re-exported here beside ``PowerSpec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from otto import redact
from otto.hosts.power.driver import (
    POWER_ACTIONS,
    POWER_COMMAND_TIMEOUT,
    SWITCH_ACTIONS,
    PowerAction,
    PowerDriver,
    PowerState,
    SwitchAction,
    limit_of,
    why_late,
)

if TYPE_CHECKING:
    from otto.hosts.base import Host

__all__ = [
    "POWER_ACTIONS",
    "POWER_COMMAND_TIMEOUT",
    "SWITCH_ACTIONS",
    "PowerAction",
    "PowerDriver",
    "PowerSpec",
    "PowerState",
    "SwitchAction",
    "limit_of",
    "why_late",
]


@dataclass(frozen=True)
class PowerSpec:
    """How a host's power is switched: shell commands run on the controller ``via``,
    or a ``driver`` (an SNMP outlet, an HTTP API).

    ``cycle`` falls back to ``off`` then ``on`` when it is not given; ``via``
    None is this machine. ``status`` is a command whose output tells the state:
    ``on_pattern`` / ``off_pattern`` (regexes, searched in it; by default the
    word ``on`` / ``off``, any case). With ``driver`` the commands are unused.
    """

    on: str | None = None
    off: str | None = None
    cycle: str | None = None
    via: Host | None = None
    status: str | None = None
    on_pattern: str | None = None
    off_pattern: str | None = None
    driver: PowerDriver | None = None

    def __repr__(self) -> str:
        if self.driver is not None:
            return f"PowerSpec(driver={self.driver!r})"
        given = [
            f"{k}={v!r}"
            for k, v in (
                ("on", self.on),
                ("off", self.off),
                ("cycle", self.cycle),
                ("status", self.status),
                ("on_pattern", self.on_pattern),
                ("off_pattern", self.off_pattern),
            )
            if v
        ]
        given.append(f"via={self.via.name if self.via is not None else 'local'!r}")
        return redact.redact(f"PowerSpec({', '.join(given)})")

    def resolve(self) -> PowerDriver:
        """The driver that does the work: ``driver``, or the commands."""
        if self.driver is not None:
            return self.driver
        from otto.hosts.power.command import CommandDriver

        return CommandDriver(self)

    def can(self, action: PowerAction) -> bool:
        """True when ``action`` can be done (``cycle``: natively, or as off then on)."""
        return self.resolve().can(action)
