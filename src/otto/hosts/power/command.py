"""The command driver: shell commands run on a controller (``via``; this machine when absent).

A PDU's command-line tool, ``ipmitool``, a relay board's script. ``status``
is a command whose output says the state: ``on_pattern`` / ``off_pattern``
are searched in it (by default the word ``on`` / ``off``, any case); its
exit status does not matter when exactly one of them matches (``systemctl
is-active`` says "inactive" with status 3).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from otto import redact
from otto.errors import ConnectError, OttoError, tail
from otto.framing import clean_output
from otto.hosts.power.driver import PowerAction, PowerDriver, PowerState, SwitchAction
from otto.hosts.power.driver import why_late as _why_late
from otto.result import Status
from otto.transports.local import exec_local

if TYPE_CHECKING:
    # Only a type here: base.py builds this driver, so a runtime import would be a circle.
    from otto.hosts.base import Host
    from otto.hosts.power.base import PowerSpec

__all__ = ["DEFAULT_OFF_PATTERN", "DEFAULT_ON_PATTERN", "CommandDriver", "match_state"]

log = logging.getLogger("otto.power")

DEFAULT_ON_PATTERN = r"(?i)\bon\b"
DEFAULT_OFF_PATTERN = r"(?i)\boff\b"


def match_state(text: str, on_pattern: str | None, off_pattern: str | None) -> PowerState | None:
    """``"on"`` or ``"off"`` when exactly one pattern is found in ``text``; else None."""
    on = re.search(on_pattern or DEFAULT_ON_PATTERN, text) is not None
    off = re.search(off_pattern or DEFAULT_OFF_PATTERN, text) is not None
    if on == off:
        return None
    return "on" if on else "off"


class CommandDriver(PowerDriver):
    """Shell commands of a ``PowerSpec``, run on its controller."""

    kind = "command"

    def __init__(self, spec: PowerSpec) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return repr(self.spec)

    def _command(self, action: PowerAction) -> str | None:
        spec = self.spec
        return {"on": spec.on, "off": spec.off, "cycle": spec.cycle, "status": spec.status}[action]

    def native(self, action: PowerAction) -> bool:
        return self._command(action) is not None

    @property
    def where(self) -> str:
        return self.spec.via.name if self.spec.via is not None else "this machine"

    def describe(self, action: PowerAction) -> str:
        return redact.redact(f"run on {self.where}: {self._command(action)}")

    async def _run(self, host: Host, action: PowerAction, limit: float) -> tuple[str, int | None]:
        """Run ``action``'s command; its output and exit status (``ConnectError`` if it hung)."""
        command = self._command(action)
        assert command is not None
        via = self.spec.via
        via_name = via.name if via is not None else "local"
        if via is None:
            raw, retcode, timed_out = await exec_local(command, timeout=limit)
            output = clean_output(raw)
        else:
            try:
                status = await via.oneshot(command, timeout=limit)
            except OttoError as exc:
                raise ConnectError(
                    host.name,
                    redact.redact(
                        f"power {action}: controller {via_name} cannot be reached: {exc}"
                    ),
                ) from exc
            if status.status is Status.Error and status.retcode is None and not status.timed_out:
                raise ConnectError(
                    host.name,
                    redact.redact(
                        f"power {action}: controller {via_name} cannot be reached: {status.error}"
                    ),
                )
            output, retcode, timed_out = status.output, status.retcode, status.timed_out
        if timed_out:
            raise ConnectError(
                host.name,
                redact.redact(
                    f"power {action}: `{command}` on {via_name} {_why_late(limit)}; "
                    f"output: {tail(output)!r}"
                ),
            )
        return output, retcode

    async def switch(self, host: Host, action: SwitchAction, limit: float) -> None:
        output, retcode = await self._run(host, action, limit)
        if retcode != 0:
            via_name = self.spec.via.name if self.spec.via is not None else "local"
            raise ConnectError(
                host.name,
                redact.redact(
                    f"power {action}: `{self._command(action)}` on {via_name} exited with "
                    f"status {retcode}; output: {tail(output)!r}"
                ),
            )

    async def state(self, host: Host, limit: float) -> PowerState:
        output, retcode = await self._run(host, "status", limit)
        found = match_state(output, self.spec.on_pattern, self.spec.off_pattern)
        if found is not None:
            return found
        on = self.spec.on_pattern or DEFAULT_ON_PATTERN
        off = self.spec.off_pattern or DEFAULT_OFF_PATTERN
        both = re.search(on, output) is not None
        via_name = self.spec.via.name if self.spec.via is not None else "local"
        raise ConnectError(
            host.name,
            redact.redact(
                f"power status: `{self.spec.status}` on {via_name} (exit status {retcode}) "
                f"printed {tail(output)!r}, which matches "
                f"{'both' if both else 'neither'} on_pattern {on!r} "
                f"{'and' if both else 'nor'} off_pattern {off!r}"
            ),
        )
