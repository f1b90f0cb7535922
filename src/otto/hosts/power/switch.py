"""``power(host, action)``: switch a host through its power spec's driver, or read its state."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from otto.hosts.power.base import POWER_ACTIONS, PowerAction, PowerState, limit_of

if TYPE_CHECKING:
    from otto.hosts.base import Host

__all__ = ["forget_shells", "power"]

log = logging.getLogger("otto.power")


async def power(host: Host, action: PowerAction, *, deadline: float | None = None) -> PowerState:
    """Switch ``host`` ``on``, ``off`` or ``cycle`` it, or read its ``status``; the state
    it is in after (``"on"`` or ``"off"``; for a switch, what was asked, not read back).

    ``deadline`` (a ``time.monotonic()`` value) bounds each step besides its own
    ``POWER_COMMAND_TIMEOUT``: a reboot's timeout. A cycle the driver cannot do
    itself is ``off`` then ``on``.

    Raises:
        ValueError: ``action`` is not one of ``POWER_ACTIONS``, or the host has
            no way to do it.
        ConnectError: the controller, agent or server cannot be reached, the step
            failed or hung (named, with what came back), or the state read is
            neither on nor off.
    """
    if action not in POWER_ACTIONS:
        raise ValueError(f"power action must be one of {', '.join(POWER_ACTIONS)}, not {action!r}")
    spec = host.power_spec
    if spec is None:
        raise ValueError(f"{host.name}: no power commands (lab field 'power')")
    driver = spec.resolve()
    if action == "status":
        if not driver.native("status"):
            raise ValueError(
                f"{host.name}: no power 'status' to read the state with (lab field 'power')"
            )
        return await driver.state(host, limit_of(deadline))
    if action == "cycle" and not driver.native("cycle"):
        if not (driver.native("off") and driver.native("on")):
            raise ValueError(f"{host.name}: power cycle needs 'cycle', or 'off' and 'on'")
        await driver.switch(host, "off", limit_of(deadline))
        log.info("%s: power off done (%s)", host.name, driver.kind)
        await forget_shells(host, "the host was powered off")
        await driver.switch(host, "on", limit_of(deadline))
        log.info("%s: power on done (%s)", host.name, driver.kind)
        return "on"
    if not driver.native(action):
        raise ValueError(f"{host.name}: no power {action!r} command (lab field 'power')")
    await driver.switch(host, action, limit_of(deadline))
    log.info("%s: power %s done (%s)", host.name, action, driver.kind)
    if action != "on":
        await forget_shells(host, f"the host was powered {'off' if action == 'off' else 'cycled'}")
    return "off" if action == "off" else "on"


async def forget_shells(host: Host, reason: str) -> None:
    """Tell every session of ``host`` its shell is gone, and close its connections.

    Each session starts a fresh shell on next use, with a warning that its state is lost.
    """
    for session in host.sessions.values():
        session.reset(reason)
    await host.disconnect()
