"""A board's life: its states (off, bootloader, shell) and the steps between them.

One file per concern: ``states`` (the states and steps as data, the shortest
way), ``spec`` (the lab field ``boot``), ``watch`` (the console, watched as it
is), ``bootloader`` (what the console shows, the countdown, the boot) and
``goto`` (observing the host and taking the steps).
"""

from __future__ import annotations

from otto.hosts.lifecycle.goto import GOTO_TIMEOUT, capabilities, goto
from otto.hosts.lifecycle.spec import BootSpec
from otto.hosts.lifecycle.states import STATES, State

__all__ = ["GOTO_TIMEOUT", "STATES", "BootSpec", "State", "capabilities", "goto"]
