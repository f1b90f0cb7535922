"""The console side of a board's states: what the console shows, catching the countdown,
booting, waiting for the system's prompt.

Every wait here is on what the console prints, with its own bound. What otto
types into a console is only what it knows to be harmless where it types it:

- Ctrl-C, to see a prompt on a silent console: at U-Boot's prompt it prints a
  new prompt, at a shell's it does the same, during U-Boot's countdown or its
  autoboot it stops them (the board is then at its prompt, which otto sees).
- the lab's ``interrupt``, only once the countdown text was seen, once per
  countdown tick until the prompt shows; when it is not Ctrl-C, one Ctrl-C
  afterwards clears what it may have left on the prompt's line.
- the lab's ``boot_command``, only at the bootloader's prompt.

Never an empty line: U-Boot runs its last command again on one.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from otto.hosts.apps import anchored_prompt
from otto.hosts.lifecycle.spec import BootSpec
from otto.hosts.lifecycle.watch import ConsoleWatch
from otto.transports.login import LOGIN_PROMPT, anchored

__all__ = [
    "INTERRUPT_TRIES",
    "TICK",
    "ConsolePatterns",
    "StepFailed",
    "boot",
    "catch_countdown",
    "look",
    "press",
    "wait_for_system",
]

log = logging.getLogger("otto.lifecycle")

TICK = 1.0
"""Seconds of one countdown tick: how long a console is watched before a key is pressed,
and between two interrupts."""
INTERRUPT_TRIES = 10
"""How many times the interrupt is sent (once per tick) before giving up."""

_CTRL_C = "\x03"
_ESC = r"(?:\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_])"
SHELL_PROMPT = re.compile(rf"(?m)^[^\n]{{0,80}}?[$#>%] {_ESC}*\Z")
"""A shell's prompt: a short last line ending in ``$ # > %`` and a space (U-Boot's
``<INTERRUPT>`` is no prompt)."""


PROMPT_SETTLE = 0.3
"""Seconds a console must stay quiet after what looks like a shell's prompt, on a board
with a bootloader, for otto to take it for one."""


class StepFailed(Exception):
    """A step could not be done; the message says what was seen instead."""


@dataclass(frozen=True)
class ConsolePatterns:
    """What a console may show, as the regexes looked for (None: not known for the host)."""

    bootloader: re.Pattern[str] | None
    countdown: re.Pattern[str] | None
    login: re.Pattern[str]
    shell: re.Pattern[str]

    @classmethod
    def of(cls, spec: BootSpec | None, login_prompt: str = LOGIN_PROMPT) -> ConsolePatterns:
        bootloader = countdown = None
        if spec is not None and spec.bootloader_prompt:
            bootloader = anchored_prompt(spec.bootloader_prompt)
        if spec is not None and spec.autoboot:
            countdown = re.compile(spec.autoboot)
        return cls(bootloader, countdown, anchored(login_prompt), SHELL_PROMPT)

    def states(self) -> list[tuple[str, re.Pattern[str]]]:
        """Each pattern with the state it shows; the bootloader's prompt before a shell's
        (``=> `` also ends in ``>``)."""
        found: list[tuple[str, re.Pattern[str]]] = []
        if self.countdown is not None:
            found.append(("powered", self.countdown))
        if self.bootloader is not None:
            found.append(("bootloader", self.bootloader))
        found += [("login", self.login), ("login", self.shell)]
        return found


async def look(watch: ConsoleWatch, patterns: ConsolePatterns, *, kept: bool) -> str | None:
    """Where the board is, from what its console shows by itself; None when it shows
    nothing known (then ``press`` asks it).

    ``kept``: the watch saw the stream without a break since the last step, so a
    prompt at the end of what it saw is where the board still is. Otherwise the
    console is watched for one tick (a countdown prints each tick). Nothing is typed.
    """
    states = patterns.states()
    if kept:
        for state, pattern in states:
            if state != "powered" and watch.shows(pattern):
                log.debug("%s: the console still shows the %s prompt", watch.host.name, state)
                return state
    found = await watch.wait([pattern for _, pattern in states], TICK)
    return None if found is None else states[found.index][0]


async def press(watch: ConsoleWatch, patterns: ConsolePatterns) -> str | None:
    """Press Ctrl-C and watch one tick: the prompt it shows (``bootloader``, ``login``),
    ``loading`` when output that matches nothing came, None when it stayed silent.

    A prompt prints nothing until a key is pressed; Ctrl-C is harmless at each.
    """
    states = [(state, pattern) for state, pattern in patterns.states() if state != "powered"]
    heard = watch.heard
    await watch.send(_CTRL_C)
    found = await watch.wait([pattern for _, pattern in states], TICK)
    if found is not None:
        return states[found.index][0]
    return "loading" if watch.heard > heard else None


async def catch_countdown(
    watch: ConsoleWatch, spec: BootSpec, patterns: ConsolePatterns, deadline: float, *, seen: bool
) -> None:
    """Stop the autoboot: wait for the countdown text (unless ``seen``), then send the
    interrupt at once, and again each tick, until the bootloader's prompt shows."""
    assert patterns.countdown is not None and patterns.bootloader is not None
    if not seen:
        found = await watch.wait(
            [patterns.countdown, patterns.bootloader, patterns.login],
            deadline - time.monotonic(),
        )
        if found is None:
            raise StepFailed(f"no countdown ({patterns.countdown.pattern!r}) was shown")
        if found.index == 1:
            log.warning(
                "%s: the bootloader's prompt showed with no countdown before it",
                watch.host.name,
            )
            return
        if found.index == 2:
            raise StepFailed("the system booted without a countdown: a login prompt shows")
    for _ in range(INTERRUPT_TRIES):
        await watch.send(spec.interrupt)
        if await watch.wait([patterns.bootloader], TICK) is not None:
            break
    else:
        raise StepFailed(
            f"the interrupt {spec.interrupt!r} was sent {INTERRUPT_TRIES} times, once a "
            f"second, and the prompt {spec.bootloader_prompt!r} did not show"
        )
    if spec.interrupt != _CTRL_C:
        # What the interrupt left on the prompt's line goes with Ctrl-C (U-Boot drops the line).
        await watch.send(_CTRL_C)
        if await watch.wait([patterns.bootloader], TICK) is None:
            raise StepFailed("the prompt did not show again after Ctrl-C")


async def boot(watch: ConsoleWatch, spec: BootSpec) -> None:
    """Type the boot command at the bootloader's prompt."""
    await watch.forget()
    await watch.send(spec.boot_command + "\r")


async def wait_for_system(watch: ConsoleWatch, patterns: ConsolePatterns, timeout: float) -> None:
    """Wait, typing nothing, until a login or shell prompt shows on the console.

    Raises:
        StepFailed: the bootloader's prompt showed instead (the boot failed), or
            nothing did within ``timeout``.
    """
    wanted = [patterns.login, patterns.shell]
    if patterns.bootloader is not None:
        wanted.insert(0, patterns.bootloader)
    deadline = time.monotonic() + timeout
    while True:
        found = await watch.wait(wanted, deadline - time.monotonic())
        if found is None:
            raise StepFailed(f"no login or shell prompt showed within {timeout:g}s")
        if patterns.bootloader is not None and found.index == 0:
            raise StepFailed("the bootloader's prompt showed instead: the boot failed")
        if patterns.bootloader is None or found.index != len(wanted) - 1:
            return
        # A shell's prompt is loose (a short line ending "# "): a bootloader's own
        # output can end that way where a read happens to end ("## Executing script").
        # A prompt waits for input, so it is one only if the console then stays quiet.
        if await watch.quiet(PROMPT_SETTLE):
            return
        log.debug("%s: more came after %r: no prompt", watch.host.name, found.match.group(0))
