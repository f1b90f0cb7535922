"""Power and reboot: switch a host off and on, read its state back, wait for it.

A host's ``power_spec`` (``PowerSpec``) says how its power is switched:

- ``command`` (``command.py``): shell commands for ``on``, ``off``, ``cycle``
  and ``status``, run on a controller host (``via``; this machine when
  absent): a PDU's command-line tool, ``ipmitool``, a relay board's script;
- ``snmp`` (``snmp.py``): an outlet of a PDU that speaks APC PowerNet or
  Raritan PDU2 MIBs;
- ``http`` (``http.py``): request templates for a PDU's or relay's web API.

Each is a ``PowerDriver`` (``driver.py``): on, off, cycle and status, each
bounded by the caller's deadline. ``power()`` (``switch.py``) runs one;
``reboot``, ``wait_until_up`` and ``wait_until_down`` (``reboot.py``) wait
for the host to go and come back.
"""

from __future__ import annotations

from otto.hosts.power.base import (
    POWER_ACTIONS,
    POWER_COMMAND_TIMEOUT,
    SWITCH_ACTIONS,
    PowerAction,
    PowerDriver,
    PowerSpec,
    PowerState,
    SwitchAction,
)
from otto.hosts.power.reboot import reboot, wait_until_down, wait_until_up
from otto.hosts.power.switch import forget_shells, power

__all__ = [
    "POWER_ACTIONS",
    "POWER_COMMAND_TIMEOUT",
    "SWITCH_ACTIONS",
    "PowerAction",
    "PowerDriver",
    "PowerSpec",
    "PowerState",
    "SwitchAction",
    "forget_shells",
    "power",
    "reboot",
    "wait_until_down",
    "wait_until_up",
]
