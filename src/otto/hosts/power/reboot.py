"""Reboot and the waits for up and down: what "up" and "down" mean here.

- up: a shell answers. A fresh short-lived session starts and runs ``true``.
- down: the shell otto watched is gone. ``wait_until_down`` and ``reboot``
  keep a session open on the host and ask it for its PID (``echo $$``) until
  it no longer answers, or a different shell answers (the host went down and
  came back between two looks, which a fast reboot does).

After a reboot or a power-off, the host's sessions are told their shell is
gone, and its connections are closed: each session starts a fresh shell on
next use (its state is lost, and a warning says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import TYPE_CHECKING

from otto.errors import ConnectError, ExpectTimeout, OttoError, tail
from otto.hosts.power.switch import forget_shells, power
from otto.loop import cancel_and_wait
from otto.result import Status

if TYPE_CHECKING:
    from otto.hosts.base import Host
    from otto.result import CommandStatus
    from otto.session import Session

__all__ = ["reboot", "wait_until_down", "wait_until_up"]

log = logging.getLogger("otto.power")

_POLL = 0.5
"""Seconds between two looks at a host that is not yet up (or down)."""
_MIN_TRY = 0.25
"""Seconds a last look needs to be worth taking (a shorter one could not see a host up)."""


class _Watch:
    """A shell on the host, to see it go away."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.session: Session | None = None
        self.pid = ""
        self.last = "nothing yet"

    async def start(self, timeout: float) -> bool:
        """Open the watch; False if no shell answers now."""
        session = self.host.private_session("power-watch")
        self.session = session
        try:
            async with asyncio.timeout(timeout):
                result = await session.run("echo $$")
        except (OttoError, TimeoutError) as exc:
            self.last = f"no shell: {exc}"
            return False
        if not result.status.is_ok:
            self.last = f"no shell: {result.only.error or result.only.output}"
            return False
        self.pid = result.only.output.strip()
        self.last = f"shell {self.pid} answered"
        return True

    async def gone(self, timeout: float) -> bool:
        """True once the watched shell no longer answers, or another one does."""
        assert self.session is not None
        try:
            async with asyncio.timeout(timeout):
                result = await self.session.run("echo $$", timeout=timeout)
        except (OttoError, TimeoutError) as exc:
            self.last = f"no shell: {exc}"
            return True
        only = result.only
        if not only.status.is_ok:
            self.last = f"no shell: {only.error or tail(only.output)}"
            return True
        if only.output.strip() != self.pid:
            self.last = f"a new shell ({only.output.strip()}) answered instead of {self.pid}"
            return True
        self.last = f"shell {self.pid} still answers"
        return False

    async def close(self) -> None:
        if self.session is not None:
            await _close_quietly(self.session)


async def _close_quietly(session: Session) -> None:
    try:
        await session.close()
    except OttoError as exc:  # the host is going down or coming up: expected
        log.debug("%s: closing a probe session: %s", session.where, exc)


async def _probe_up(host: Host, timeout: float) -> str | None:
    """None if a fresh shell on ``host`` runs ``true`` within ``timeout``; else why not."""
    session = host.private_session("power-probe")
    try:
        async with asyncio.timeout(timeout):
            result = await session.run("true", timeout=timeout)
    except (OttoError, TimeoutError) as exc:
        # The caller says how long it waited in all (a last try may be short).
        return str(exc) or "no shell answered"
    finally:
        await _close_quietly(session)
    if result.status.is_ok:
        return None
    return result.only.error or f"`true` gave {result.only.retcode}"


async def _probe_prompt(host: Host, prompt: re.Pattern[str], timeout: float) -> str | None:
    """None if ``prompt`` shows on the host's raw stream within ``timeout``; else why not.

    Ctrl-C asks for it each second, never Enter: on U-Boot an empty line runs
    the last command again, and Ctrl-C at its prompt does nothing.
    """
    session = host.private_session("power-probe", raw=True)
    received = ""
    try:
        await session.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await session.send("\x03")
            try:
                await session.expect(prompt, max(0.05, min(1.0, deadline - loop.time())))
                return None
            except ExpectTimeout as exc:
                received = exc.received or received
                if loop.time() >= deadline:
                    return f"no {prompt.pattern!r} shown; received {tail(received)!r}"
    except OttoError as exc:
        return str(exc)
    finally:
        await _close_quietly(session)


def _budget(host: Host, deadline: float) -> float:
    return max(0.05, min(host.connect_timeout, deadline - time.monotonic()))


async def wait_until_up(
    host: Host, timeout: float, *, prompt: str | re.Pattern[str] | None = None
) -> None:
    """Return once a fresh shell on ``host`` answers (or ``prompt`` shows on its stream).

    Raises:
        ConnectError: none did within ``timeout``; says what the last try saw.
    """
    deadline = time.monotonic() + timeout
    wanted = re.compile(prompt) if isinstance(prompt, str) else prompt
    await _wait_up(host, deadline, timeout, "up", wanted)


async def _wait_up(
    host: Host, deadline: float, timeout: float, what: str, prompt: re.Pattern[str] | None = None
) -> None:
    why = ""
    while True:
        left = deadline - time.monotonic()
        if why and left < _MIN_TRY:
            raise ConnectError(host.name, f"not {what} within {timeout:g}s; last try: {tail(why)}")
        budget = _budget(host, deadline)
        if prompt is None:
            why = await _probe_up(host, budget) or ""
        else:
            why = await _probe_prompt(host, prompt, budget) or ""
        if not why:
            return
        # A link left from before may be dead without knowing it: start the next try afresh.
        await host.disconnect()
        if time.monotonic() >= deadline:
            raise ConnectError(host.name, f"not {what} within {timeout:g}s; last try: {tail(why)}")
        await asyncio.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))


async def wait_until_down(host: Host, timeout: float) -> None:
    """Return once ``host`` stops answering (or its shell was replaced by a new one).

    Raises:
        ConnectError: it still answered after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    watch = _Watch(host)
    try:
        if await watch.start(_budget(host, deadline)):
            await _wait_down(host, watch, deadline, timeout)
    finally:
        await watch.close()


async def _wait_down(host: Host, watch: _Watch, deadline: float, timeout: float) -> None:
    while not await watch.gone(_budget(host, deadline)):
        if time.monotonic() >= deadline:
            raise ConnectError(host.name, f"still up after {timeout:g}s; last look: {watch.last}")
        await asyncio.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))


async def reboot(
    host: Host,
    *,
    hard: bool = False,
    timeout: float = 300.0,
    wait: bool = True,
    command: str = "reboot",
) -> None:
    """Restart ``host``: power-cycle it (``hard``) or run ``command``; then wait down, then up.

    ``command`` is started and not waited for (it usually ends with the
    connection); if it fails before the host goes down, that is the error.
    With ``wait=False`` it returns once the restart is under way. ``timeout``
    bounds every step, the power command too (its own bound is
    ``POWER_COMMAND_TIMEOUT``); the error names the command when it hung.

    Raises:
        ConnectError: the restart could not be started, or the host was not
            back within ``timeout`` (the message says what was seen last).
    """
    deadline = time.monotonic() + timeout
    watch = _Watch(host)
    started: asyncio.Task[CommandStatus] | None = None
    try:
        watching = await watch.start(_budget(host, deadline))
        if not watching and not hard:
            raise ConnectError(host.name, f"cannot reboot: {watch.last}")
        if hard:
            await power(host, "cycle", deadline=deadline)
        else:
            log.info("%s: rebooting with `%s`", host.name, command)
            started = asyncio.create_task(host.oneshot(command, timeout=timeout))
        if not wait:
            if started is not None:
                # Wait only until the command is surely under way or over.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(started), _budget(host, deadline))
                _raise_if_failed(host, started)
            return
        if watching:
            await _wait_reboot_down(host, watch, started, deadline, timeout)
        await watch.close()
        await forget_shells(host, "the host rebooted")
        log.warning("%s: rebooted; every session will start a fresh shell", host.name)
        await _wait_up(host, deadline, timeout, "back after the reboot")
    finally:
        await watch.close()
        if started is not None and not started.done():
            await cancel_and_wait(started)


def _raise_if_failed(host: Host, started: asyncio.Future[CommandStatus]) -> None:
    """Raise ``ConnectError`` when the reboot command has ended with a failure status."""
    if started.done() and not started.cancelled() and started.exception() is None:
        result = started.result()
        if result.status is Status.Failed:
            raise ConnectError(
                host.name,
                f"`{result.command}` failed with status {result.retcode}: {tail(result.output)!r}",
            )


async def _wait_reboot_down(
    host: Host,
    watch: _Watch,
    started: asyncio.Future[CommandStatus] | None,
    deadline: float,
    timeout: float,
) -> None:
    while not await watch.gone(_budget(host, deadline)):
        if started is not None:
            _raise_if_failed(host, started)
        if time.monotonic() >= deadline:
            raise ConnectError(
                host.name, f"did not go down within {timeout:g}s; last look: {watch.last}"
            )
        await asyncio.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))
