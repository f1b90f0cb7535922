"""``otto host NAME goto off|bootloader|shell``: bring hosts to a state (see
``otto.hosts.lifecycle``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from otto.cli.interrupt import run_interruptible
from otto.cli.output import EXIT_ERROR
from otto.errors import OttoError

if TYPE_CHECKING:
    from otto.lab import Lab

__all__ = ["goto_hosts"]


def goto_hosts(lab: Lab, names: Sequence[str], state: str, timeout: float) -> int:
    """Bring each host to ``state``, all at once; 0 when every one got there, else 255.

    Prints ``NAME: STATE`` for each host that got there; for each that did not,
    the failing step and what its console printed last, on stderr.
    """

    async def one(name: str) -> int:
        try:
            await lab.host(name).goto(state, timeout=timeout)
        except (OttoError, ValueError) as exc:
            text = str(exc)
            sys.stderr.write(f"otto: {text if text.startswith(name) else f'{name}: {text}'}\n")
            return EXIT_ERROR
        sys.stdout.write(f"{name}: {state}\n")
        sys.stdout.flush()
        return 0

    async def each() -> int:
        codes = await asyncio.gather(*(one(name) for name in names))
        return max(codes, default=0)

    return run_interruptible(each(), lab)
