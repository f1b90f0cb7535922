"""``otto host NAME power on|off|cycle|status`` and ``otto host NAME reboot``.

``power status`` prints ``NAME: on`` or ``NAME: off`` (exit 0), read back from the
host's power control; the others print ``NAME: power ACTION done``.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from otto import redact
from otto.cli.interrupt import run_interruptible
from otto.cli.output import EXIT_ERROR
from otto.errors import OttoError

if TYPE_CHECKING:
    from otto.hosts import Host
    from otto.hosts.power import PowerAction
    from otto.lab import Lab

__all__ = ["power_hosts", "reboot_hosts"]


async def _each(
    lab: Lab, names: Sequence[str], what: str, act: Callable[[Host], Awaitable[str | None]]
) -> int:
    async def one(name: str) -> int:
        try:
            said = await act(lab.host(name))
        except (OttoError, ValueError) as exc:
            text = redact.redact(str(exc))
            sys.stderr.write(f"otto: {text if text.startswith(name) else f'{name}: {text}'}\n")
            return EXIT_ERROR
        sys.stdout.write(f"{name}: {said or what}\n")
        sys.stdout.flush()
        return 0

    codes = await asyncio.gather(*(one(name) for name in names))
    return max(codes, default=0)


def power_hosts(lab: Lab, names: Sequence[str], action: PowerAction) -> int:
    """Run each host's power command for ``action`` (``status``: print its state); the
    exit status (0 or 255)."""

    async def act(host: Host) -> str | None:
        state = await host.power(action)
        return state if action == "status" else None

    return run_interruptible(_each(lab, names, f"power {action} done", act), lab)


def reboot_hosts(lab: Lab, names: Sequence[str], *, hard: bool, wait: bool, timeout: float) -> int:
    """Reboot each host (and wait until it is back, with ``wait``); the exit status."""

    async def act(host: Host) -> None:
        if lab.spec(host.name).term == "none" and not (hard and not wait):
            # No shell to run `reboot` in or to see it come back: only its power.
            raise OttoError(
                f"{host.name}: has no shell (term 'none'), so it can only be power-cycled "
                "without waiting: otto host "
                f"{shlex.quote(host.name)} reboot --hard --no-wait"
            )
        await host.reboot(hard=hard, timeout=timeout, wait=wait)

    what = "back up after the reboot" if wait else "reboot started"
    return run_interruptible(_each(lab, names, what, act), lab)
