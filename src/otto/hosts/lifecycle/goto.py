"""``goto``: bring a host to ``off``, ``bootloader`` or ``shell`` from the state it is in now.

The state now is observed, cheapest look first: a shell otto already has is
asked to run ``true`` (one round trip: ``goto("shell")`` on a host at its
shell costs no more); a console is watched, then Ctrl-C is pressed (see
``otto.hosts.lifecycle.bootloader``), but a board whose power reads back off
(a power ``status``) is typed nothing into; a host that shows nothing and has
no status is in an unknown state, which a power cycle settles. Then
the cheapest way there (``otto.hosts.lifecycle.states``) is taken, one step
at a time, each with its own bound; a step that fails raises ``ConnectError``
naming the step (``step``), what went wrong, and what the console printed last.

The power-on of a board that is to be caught at its bootloader happens with
the console already watched, so its countdown cannot pass unseen: a power
cycle is the ``off`` command, then the watch, then ``on``. (A lab that gives
only a ``cycle`` command has the console reopened once the command returns.)

After ``goto("bootloader")`` the console stays watched: a second call finds the
prompt at the end of what it printed and types nothing (a board switched off
meanwhile by someone else prints nothing either: its power status tells, where
it has one). A board otto switched off stays watched too: while it prints
nothing, it is off.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from otto import redact
from otto.errors import ConnectError, OttoError, tail
from otto.hosts.lifecycle.bootloader import (
    ConsolePatterns,
    StepFailed,
    boot,
    catch_countdown,
    look,
    press,
    wait_for_system,
)
from otto.hosts.lifecycle.spec import DEFAULT_SHELL_TIMEOUT, BootSpec
from otto.hosts.lifecycle.states import NEEDS, STATES, Step, way
from otto.hosts.lifecycle.watch import ConsoleWatch
from otto.transports.login import LOGIN_PROMPT

if TYPE_CHECKING:
    from otto.hosts.base import Host
    from otto.hosts.power import PowerAction

__all__ = ["GOTO_TIMEOUT", "capabilities", "goto"]

log = logging.getLogger("otto.lifecycle")

GOTO_TIMEOUT = 300.0
"""Seconds ``goto`` may take in all, unless the caller says."""

T = TypeVar("T")

_controllers: weakref.WeakKeyDictionary[Host, _Lifecycle] = weakref.WeakKeyDictionary()


def capabilities(host: Host) -> set[str]:
    """What ``host`` can do on the way between states (the ``needs`` of ``STEPS``)."""
    able: set[str] = set()
    power = host.power_spec
    if power is not None:
        for action in ("on", "off", "cycle"):
            if power.can(action):
                able.add(f"power {action}")
    if host.one_stream:
        able.add("console")
        spec = host.boot_spec
        if spec is not None and spec.bootloader_prompt:
            able.add("bootloader")
            if spec.autoboot:
                able.add("countdown")
    elif host.has_shell:
        able.add("shell")
    return able


async def goto(host: Host, state: str, *, timeout: float = GOTO_TIMEOUT) -> str:
    """Bring ``host`` to ``state`` (``off``, ``bootloader`` or ``shell``); returns it.

    Raises:
        ValueError: ``state`` is not one of them.
        ConnectError: no way there (the message says what the host lacks), or a step
            failed (``step`` names it; the message holds what the console printed last).
    """
    controller = _controllers.get(host)
    asked = False
    if state == "shell" and (controller is None or not controller.watch.unbroken):
        # At its shell already, most likely: one round trip says so.
        if _has_shell(host):
            asked = True
            bound = max(0.05, min(host.connect_timeout, timeout))
            try:
                if (await host.run("true", timeout=bound)).is_ok:
                    return state
            except (OttoError, TimeoutError) as exc:
                log.debug("%s: no shell answered: %s", host.name, exc)
    elif state not in STATES:
        raise ValueError(f"goto takes one of {', '.join(STATES)}, not {state!r}")
    if controller is None:
        controller = _controllers[host] = _Lifecycle(host)
    return await controller.goto(state, timeout, asked=asked)


def _has_shell(host: Host) -> bool:
    """Whether a shell is worth asking first: any host but a console, and a console
    where otto has a shell now (a console otherwise is watched, never probed)."""
    if not host.one_stream:
        return True
    link = getattr(getattr(host, "connection", None), "link", None)
    return getattr(link, "state", "") in ("shell", "inner")


class _Lifecycle:
    """One host's way between states, and its console watch between calls."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.watch = ConsoleWatch(host)
        self.lock = asyncio.Lock()
        self._target = ""
        self._timeout = 0.0
        self._countdown_seen = False
        self._left_off = False
        """otto switched the board off, and has watched its console since."""

    @property
    def spec(self) -> BootSpec:
        return self.host.boot_spec or BootSpec()

    @property
    def patterns(self) -> ConsolePatterns:
        login = getattr(self.host, "login_prompt", LOGIN_PROMPT)
        return ConsolePatterns.of(self.host.boot_spec, login if isinstance(login, str) else "")

    async def goto(self, target: str, timeout: float, *, asked: bool = False) -> str:
        """Observe the host (its shell ``asked`` already: it did not answer), then take the
        cheapest way to ``target``."""
        async with self.lock:
            self._target, self._timeout = target, timeout
            deadline = time.monotonic() + timeout
            able = capabilities(self.host)
            try:
                if target == "bootloader" and "bootloader" not in able:
                    raise ConnectError(
                        self.host.name, f"goto bootloader: it needs {NEEDS['bootloader']}"
                    )
                found = await self._observe(target, deadline, asked=asked)
                steps = way(found, target, able)
                if steps is None:
                    raise self._no_way(found, target, able)
                log.info(
                    "%s: %s -> %s: %s",
                    self.host.name,
                    found,
                    target,
                    ", ".join(s.name for s in steps) or "there already",
                )
                for step in steps:
                    await self._take(step, deadline)
            except BaseException:
                await self.watch.close()
                raise
            if target == "shell" or not self.host.one_stream:
                await self.watch.close()
            elif target == "off" and not self._left_off:
                # Watched from now on: a board that prints nothing is still off, and
                # the next goto need not type into it to find out.
                await self._step("watch the console", self.watch.open(), deadline)
                self._left_off = True
            return target

    # --- where the host is now ------------------------------------------------------

    async def _observe(self, target: str, deadline: float, *, asked: bool) -> str:
        host = self.host
        left_off, self._left_off = self._left_off, False
        if left_off and self.watch.unbroken and self.watch.heard == 0:
            log.debug("%s: off since otto switched it off (its console printed nothing)", host.name)
            self._left_off = target == "off"
            return "off"
        if target == "off" or not host.one_stream:
            if target != "off" and not asked and await self._shell_answers(deadline):
                return "shell"
            # Off, or on and not at a shell: the power's state, when it is read back.
            return await self._power_state(deadline) or "unknown"
        if not asked and _has_shell(self.host) and await self._shell_answers(deadline):
            return "shell"
        kept = await self._step("look at the console", self.watch.open(), deadline)
        found = await self._step(
            "look at the console", look(self.watch, self.patterns, kept=kept), deadline
        )
        self._countdown_seen = found == "powered"
        if found is not None:
            if kept and await self._power_state(deadline) == "off":
                return "off"  # switched off by someone else: a silent console looks the same
            return found
        # Silent: an off board is not typed into, when its power says so.
        if await self._power_state(deadline) == "off":
            return "off"
        found = await self._step("look at the console", press(self.watch, self.patterns), deadline)
        # Still silent: off, or hung, with no power state to say which; a cycle settles it.
        return found or "unknown"

    async def _power_state(self, deadline: float) -> str | None:
        """``"off"`` when the host's power reads back off, ``"unknown"`` when on (not at a
        shell: hung, or on its way), None when its power has no status."""
        power = self.host.power_spec
        if power is None or not power.can("status"):
            return None
        from otto.hosts import power as switch

        state = await self._step(
            "read the power state", switch.power(self.host, "status", deadline=deadline), deadline
        )
        log.debug("%s: its power reads %s", self.host.name, state)
        return "off" if state == "off" else "unknown"

    async def _shell_answers(self, deadline: float) -> bool:
        """Whether the host's shell runs ``true`` (its own bound: the connect timeout)."""
        bound = max(0.05, min(self.host.connect_timeout, deadline - time.monotonic()))
        try:
            result = await self.host.run("true", timeout=bound)
        except (OttoError, TimeoutError) as exc:
            log.debug("%s: no shell answered: %s", self.host.name, exc)
            return False
        return result.is_ok

    # --- the steps ------------------------------------------------------------------

    async def _take(self, step: Step, deadline: float) -> None:
        action = self.actions.get((step.name, step.needs))
        if action is None:  # a step of STEPS with no action here: a mistake of otto's
            raise RuntimeError(f"no action for the step {step.name!r} ({step.needs})")
        await action(step.name, deadline)

    @property
    def actions(self) -> dict[tuple[str, str], Callable[[str, float], Awaitable[None]]]:
        """What each step of ``STEPS`` does, by its name and what it needs."""
        return {
            ("power off", "power off"): self._power_off,
            ("power on", "power on"): self._power_on,
            ("power cycle", "power cycle"): self._power_cycle,
            ("interrupt the autoboot", "countdown"): self._interrupt,
            ("boot command", "bootloader"): self._boot,
            ("wait for the shell", "console"): self._wait_on_console,
            ("wait for the shell", "shell"): self._wait_for_shell,
            ("log in", "console"): self._log_in,
        }

    async def _power_off(self, name: str, deadline: float) -> None:
        await self.watch.close()  # the power command closes the console
        await self._step(name, self._power("off", deadline), deadline)

    async def _power_on(self, name: str, deadline: float) -> None:
        await self._step(name, self._power_watched("on", deadline), deadline)

    async def _power_cycle(self, name: str, deadline: float) -> None:
        power = self.host.power_spec
        if power is not None and power.can("on") and power.can("off"):
            # Off, then on with the console watched: the countdown cannot pass unseen.
            await self.watch.close()
            await self._step(f"{name} (off)", self._power("off", deadline), deadline)
            await self._step(f"{name} (on)", self._power_watched("on", deadline), deadline)
        else:
            await self._step(name, self._power_watched("cycle", deadline), deadline)

    async def _interrupt(self, name: str, deadline: float) -> None:
        seen, self._countdown_seen = self._countdown_seen, False
        work = catch_countdown(self.watch, self.spec, self.patterns, deadline, seen=seen)
        await self._step(name, work, deadline)

    async def _boot(self, name: str, deadline: float) -> None:
        await self._step(name, boot(self.watch, self.spec), deadline)

    async def _wait_on_console(self, name: str, deadline: float) -> None:
        bound = min(self.spec.shell_timeout, deadline - time.monotonic())
        await self._step(name, wait_for_system(self.watch, self.patterns, bound), deadline)

    async def _wait_for_shell(self, name: str, deadline: float) -> None:
        bound = min(self._shell_timeout(), deadline - time.monotonic())
        await self._step(name, self.host.wait_until_up(bound), deadline)

    async def _log_in(self, name: str, deadline: float) -> None:
        await self.watch.close()  # a raw view keeps otto's shell probes off the console
        bound = min(max(2 * self.host.connect_timeout, 5.0), deadline - time.monotonic())
        await self._step(name, self.host.wait_until_up(bound), deadline)

    def _shell_timeout(self) -> float:
        spec = self.host.boot_spec
        return spec.shell_timeout if spec is not None else DEFAULT_SHELL_TIMEOUT

    async def _power(self, action: PowerAction, deadline: float) -> None:
        from otto.hosts import power

        await power.power(self.host, action, deadline=deadline)

    async def _power_watched(self, action: PowerAction, deadline: float) -> None:
        """Switch the power with the console watched from before, when there is one."""
        if self.host.one_stream:
            await self.watch.open()
            await self.watch.forget()  # what the board printed before is not this boot's
        await self._power(action, deadline)
        if self.host.one_stream and not self.watch.unbroken:
            await self.watch.open()  # the power command closed the console (cycle)

    async def _step(self, name: str, work: Coroutine[Any, Any, T], deadline: float) -> T:
        """Await ``work`` within what is left of ``deadline``; its failure becomes a
        ``ConnectError`` naming the step ``name``."""
        left = deadline - time.monotonic()
        if left <= 0:
            work.close()
            raise self._failed(name, f"the goto's {self._timeout:g}s ran out before it")
        try:
            async with asyncio.timeout(left):
                return await work
        except TimeoutError:
            raise self._failed(name, f"the goto's {self._timeout:g}s ran out") from None
        except StepFailed as exc:
            raise self._failed(name, str(exc)) from None
        except (OttoError, ValueError) as exc:
            raise self._failed(name, str(exc)) from exc

    def _failed(self, name: str, why: str) -> ConnectError:
        message = f"goto {self._target}: {name} failed: {why}"
        if self.host.one_stream:
            shown = self.watch.last()
            message += (
                f"; the console printed last: {shown!r}"
                if shown
                else ("; the console printed nothing")
            )
        return ConnectError(self.host.name, redact.redact(message), step=name)

    def _no_way(self, found: str, target: str, able: set[str]) -> ConnectError:
        kind = {"shell"} if not self.host.one_stream else {"console", "bootloader", "countdown"}
        given = {n for n in NEEDS if n.startswith("power")} | kind
        ideal = way(found, target, given) or []
        missing = sorted({s.needs for s in ideal} - able)
        lacks = "; ".join(NEEDS[m] for m in missing) or "a way otto knows"
        return ConnectError(
            self.host.name,
            f"goto {target}: no way from {found} to {target}: it needs {tail(lacks)}",
            step="plan",
        )
