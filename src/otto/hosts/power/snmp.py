"""The SNMP driver: an outlet of a PDU, switched with a SET and read back with a GET.

Two OID sets (numeric: no MIB is loaded):

- ``apc``, PowerNet-MIB ``sPDUOutletCtl`` (1.3.6.1.4.1.318.1.1.4.4.2.1.3.N):
  set 1 (outletOn), 2 (outletOff), 3 (outletReboot); a GET of the same object
  gives 1 (on) or 2 (off).
- ``raritan``, PDU2-MIB ``switchingOperation`` (1.3.6.1.4.1.13742.6.4.1.2.1.2.1.N,
  PDU 1): set 0 (off), 1 (on), 2 (cycle); the state is
  ``measurementsOutletSensorState`` of the outlet's onOff sensor (type 14)
  (1.3.6.1.4.1.13742.6.5.4.3.1.3.1.N.14): 7 (on) or 8 (off).

The requests go through ``otto.transports.snmp_client.SnmpClient`` (one
pysnmp engine per event loop and credentials, shared with the monitor's
probes), v2c with a community or v3 with a user and keys; those secrets are
registered with ``otto.redact``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from otto import redact
from otto.errors import ConnectError
from otto.hosts.power.driver import PowerAction, PowerDriver, PowerState, SwitchAction, why_late
from otto.transports.snmp import SnmpSettings
from otto.transports.snmp_client import SnmpClient, SnmpFailure

if TYPE_CHECKING:
    from otto.hosts.base import Host

__all__ = ["OUTLET_OIDS", "OutletOids", "SnmpOutlet"]

log = logging.getLogger("otto.power")

OidSet = Literal["apc", "raritan"]


@dataclass(frozen=True)
class OutletOids:
    """Where a PDU's outlet N is switched and read, and what the values mean."""

    control: str
    """The object SET to switch outlet N (``{n}`` is its number)."""
    values: dict[SwitchAction, int]
    """The value SET for each action."""
    state: str
    """The object whose value says the state."""
    states: dict[int, PowerState]
    """What the state object's values mean (any other is neither)."""


OUTLET_OIDS: dict[OidSet, OutletOids] = {
    "apc": OutletOids(
        control="1.3.6.1.4.1.318.1.1.4.4.2.1.3.{n}",
        values={"on": 1, "off": 2, "cycle": 3},
        state="1.3.6.1.4.1.318.1.1.4.4.2.1.3.{n}",
        states={1: "on", 2: "off"},
    ),
    "raritan": OutletOids(
        control="1.3.6.1.4.1.13742.6.4.1.2.1.2.1.{n}",
        values={"off": 0, "on": 1, "cycle": 2},
        state="1.3.6.1.4.1.13742.6.5.4.3.1.3.1.{n}.14",
        states={7: "on", 8: "off"},
    ),
}


def _oid(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


class SnmpOutlet(PowerDriver):
    """Outlet ``outlet`` of the PDU whose agent ``settings`` reach (``settings.address``).

    Args:
        settings: the agent's address, port and credentials (registered as secrets).
        outlet: the outlet's number (1-based, as the PDU numbers them).
        oids: ``"apc"`` or ``"raritan"`` (see ``OUTLET_OIDS``).

    Raises:
        ValueError: no address, an outlet below 1, an unknown OID set.
    """

    kind = "snmp"

    def __init__(self, settings: SnmpSettings, outlet: int, oids: str = "apc") -> None:
        if not settings.address:
            raise ValueError("an SNMP outlet needs the PDU's 'address'")
        if isinstance(outlet, bool) or not isinstance(outlet, int) or outlet < 1:
            raise ValueError(f"'outlet' must be an outlet number from 1, not {outlet!r}")
        if oids not in OUTLET_OIDS:
            raise ValueError(f"'oids' must be one of {', '.join(OUTLET_OIDS)}, not {oids!r}")
        redact.register(settings.community, settings.auth_key, settings.priv_key)
        self.settings = settings
        self.outlet = outlet
        self.oids: OidSet = "apc" if oids == "apc" else "raritan"
        self.table = OUTLET_OIDS[self.oids]
        self.where = f"SNMP {settings.security} at udp:{settings.address}:{settings.port}"

    def __repr__(self) -> str:
        return f"SnmpOutlet({self.oids} outlet {self.outlet}, {self.where})"

    def native(self, action: PowerAction) -> bool:
        return True

    def describe(self, action: PowerAction) -> str:
        n = self.outlet
        if action == "status":
            return f"{self.where}: GET {self.table.state.format(n=n)} ({self.oids} outlet {n})"
        value = self.table.values[action]
        control = self.table.control.format(n=n)
        return f"{self.where}: SET {control} = {value} ({self.oids} outlet {n})"

    def _client(self, action: PowerAction) -> SnmpClient:
        settings = self.settings
        if action == "cycle":
            # A SET sent again after a lost answer would cycle the outlet twice.
            settings = replace(settings, retries=0)
        return SnmpClient(settings)

    async def _ask(self, host: Host, action: PowerAction, limit: float) -> object:
        """SET (a switch) or GET (the status) the outlet's object; the value answered."""
        doing = self.describe(action).removeprefix(f"{self.where}: ")
        client = self._client(action)
        try:
            async with asyncio.timeout(limit):
                await client.open()
                if action == "status":
                    got = await client.get([_oid(self.table.state.format(n=self.outlet))])
                    return next(iter(got.values()), None)
                oid = _oid(self.table.control.format(n=self.outlet))
                return await client.set(oid, self.table.values[action])
        except TimeoutError as exc:
            raise ConnectError(
                host.name,
                redact.redact(
                    f"power {action}: {self.where}: {doing} {why_late(limit)} with no answer "
                    "(the agent is down or unreachable, or refused the credentials: an agent "
                    "ignores a wrong community)"
                ),
            ) from exc
        except SnmpFailure as exc:
            raise ConnectError(
                host.name, redact.redact(f"power {action}: {self.where}: {doing}: {exc}")
            ) from exc
        except Exception as exc:  # pysnmp's own errors: a bad address, a closed socket
            log.debug("%s: SNMP power request failed", host.name, exc_info=True)
            raise ConnectError(
                host.name,
                redact.redact(
                    f"power {action}: {self.where}: {doing}: {type(exc).__name__}: {exc}"
                ),
            ) from exc
        finally:
            await client.close()

    async def switch(self, host: Host, action: SwitchAction, limit: float) -> None:
        await self._ask(host, action, limit)

    async def state(self, host: Host, limit: float) -> PowerState:
        value = await self._ask(host, "status", limit)
        found = self.table.states.get(value) if isinstance(value, int) else None
        if found is None:
            meaning = ", ".join(f"{k} {v}" for k, v in self.table.states.items())
            raise ConnectError(
                host.name,
                redact.redact(
                    f"power status: {self.describe('status')} answered {value!r}, which is "
                    f"neither on nor off ({meaning})"
                ),
            )
        return found
