"""A board's states and the steps between them, as data; the shortest way from one to another.

The states a host can be brought to are ``off``, ``bootloader`` and
``shell``. On the way, a host may also be found in a passing state:

- ``powered``: power was just applied (or the board reset): the bootloader is
  counting down to its autoboot, or about to.
- ``loading``: the bootloader was told to boot (or its countdown ran out):
  the system is starting; nothing is typed until it shows a prompt.
- ``login``: a login or shell prompt shows on the console; otto has no shell yet.
- ``unknown``: it may be on, but the console shows nothing otto recognises.

Each ``Step`` goes from one state to another and needs one capability of the
host (a power command, a ``boot`` field with a countdown, a console); ``way``
picks the cheapest chain of the steps a host can take. There is no class per
board: a board is its capabilities.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

__all__ = ["NEEDS", "PASSING", "STATES", "STEPS", "State", "Step", "way"]

State = Literal["off", "bootloader", "shell"]
STATES: tuple[State, ...] = ("off", "bootloader", "shell")
"""The states ``goto`` brings a host to."""
PASSING = ("powered", "loading", "login", "unknown")
"""States a host may be found in on the way, never a destination."""

NEEDS = {
    "power on": "a power 'on' command (lab field 'power')",
    "power off": "a power 'off' command (lab field 'power')",
    "power cycle": "a power 'cycle' command, or 'off' and 'on' (lab field 'power')",
    "countdown": "a console and the lab field 'boot' with 'autoboot' and 'bootloader_prompt'",
    "bootloader": "a console and the lab field 'boot' with 'bootloader_prompt'",
    "console": "a console (term 'console' or 'serial')",
    "shell": "a shell",
}
"""What each capability is, for the message of a host that lacks one."""


@dataclass(frozen=True)
class Step:
    """One move: from ``source`` to ``target``, which the host can take if it ``needs``."""

    name: str
    source: str
    target: str
    needs: str
    cost: int
    """Rough seconds it takes, to pick the shortest way (power is slow, waiting for an
    operating system slower)."""


_ON = ("powered", "bootloader", "loading", "login", "shell", "unknown")
STEPS: tuple[Step, ...] = (
    *(Step("power off", s, "off", "power off", 2) for s in _ON),
    Step("power on", "off", "powered", "power on", 2),
    *(Step("power cycle", s, "powered", "power cycle", 4) for s in _ON if s != "powered"),
    Step("interrupt the autoboot", "powered", "bootloader", "countdown", 1),
    Step("boot command", "bootloader", "loading", "bootloader", 1),
    Step("wait for the shell", "powered", "login", "console", 30),
    Step("wait for the shell", "loading", "login", "console", 30),
    Step("wait for the shell", "powered", "shell", "shell", 60),
    Step("log in", "login", "shell", "console", 2),
)
"""Every step a host may take. Those a host cannot take (no power command, no
console) are left out by ``way``."""


def way(source: str, target: str, able: Collection[str]) -> list[Step] | None:
    """The cheapest chain of steps from ``source`` to ``target`` using only capabilities in
    ``able``; ``[]`` when already there, None when there is none."""
    if source == target:
        return []
    queue: list[tuple[int, int, str, list[Step]]] = [(0, 0, source, [])]
    done: set[str] = set()
    order = 0
    while queue:
        cost, _, state, steps = heapq.heappop(queue)
        if state == target:
            return steps
        if state in done:
            continue
        done.add(state)
        for step in STEPS:
            if step.source == state and step.needs in able and step.target not in done:
                order += 1
                heapq.heappush(queue, (cost + step.cost, order, step.target, [*steps, step]))
    return None
