"""DryRunHost: a host that says what it would do and does nothing (``otto -n run``).

Every verb writes one line, ``[name] would run: CMD``, ``[name] would put:
SRC -> name:DEST`` and so on, and contacts nothing: no connection, no process,
no file written. What a verb returns is marked as not done, never as a
success:

- commands (``run``, ``oneshot``, a session's ``run``): one ``CommandStatus``
  per command with ``Status.NotRun``, no output, ``retcode`` -1 and an
  ``error`` saying it was a dry run; ``run`` with a list reports every command
  (a real run stops at the first failure, which a dry run cannot know);
- transfers: ``Status.NotRun`` and no files, or ``Status.Error`` when a real
  ``put`` would fail the same way (a local source that does not exist);
- waiting for output (``expect``, ``exchange``, an app's prompt) cannot be
  imitated: it raises ``DryRunStop``, which ends the dry run of an
  instruction there, saying where.

Power, reboot and the waits for up and down say what they would do and return.
A periodic task (``start_repeat``) runs as on any host: each tick says what it
would run and records ``Status.NotRun``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn, overload

from otto.errors import OttoError
from otto.expect import ExpectMatch
from otto.hosts.base import DEFAULT_SESSION, Host
from otto.hosts.power import POWER_ACTIONS, PowerAction, PowerSpec, PowerState
from otto.hosts.privilege import Become
from otto.result import CommandStatus, RunResult, Status, TransferResult
from otto.session import Observer, Pattern, Patterns, Session
from otto.transfer import PathArg, Progress, source_list
from otto.transports.base import ShellTransport

__all__ = ["DryRunHost", "DryRunSession", "DryRunStop", "Say", "not_run"]

log = logging.getLogger("otto.hosts.dryrun")

Say = Callable[[str], None]
"""Where a dry-run host writes what it would do: one line, without its newline."""


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class DryRunStop(OttoError):
    """A dry run cannot go past this call: it waits for output, and nothing ran."""


def not_run(command: str, *, host: str, session: str) -> CommandStatus:
    """The record of a command a dry run did not run."""
    return CommandStatus(
        command=command,
        output="",
        status=Status.NotRun,
        retcode=-1,
        error=f"{host}: dry run: not run",
        host=host,
        session=session,
        started=time.time(),
    )


def _shown(pattern: Pattern | Patterns) -> str:
    items = [pattern] if isinstance(pattern, str | re.Pattern) else list(pattern)
    return " | ".join(repr(p.pattern if isinstance(p, re.Pattern) else p) for p in items)


class DryRunSession(Session):
    """A named session of a ``DryRunHost``: says what it would send, runs nothing."""

    def __init__(
        self,
        name: str,
        *,
        host: str,
        say: Say,
        pty: bool = False,
        as_user: str | None = None,
        shell: bool = True,
        on_close: Callable[[Session], None] | None = None,
        observers: list[Observer] | None = None,
    ) -> None:
        super().__init__(
            name,
            host=host,
            transport_factory=self._no_transport,
            pty=pty,
            on_close=on_close,
            shell=shell,
            observers=observers,
        )
        self._say = say
        self.as_user = as_user

    def _no_transport(self) -> ShellTransport:
        raise DryRunStop(f"{self.where}: a dry run opens no shell")

    def _line(self, verb: str, what: str) -> None:
        where = "" if self.name == DEFAULT_SESSION else f" (session {self.name})"
        self._say(f"[{self.host_name}] would {verb}{where}: {what}")

    async def start(self) -> None:
        """Say the session would be opened (nothing is started)."""
        self._check_open()
        how = []
        if self.as_user is not None:
            how.append(f"as {self.as_user}")
        if self.pty:
            how.append("on a terminal")
        if not self.shell:
            how.append("raw stream")
        suffix = f" ({', '.join(how)})" if how else ""
        self._say(f"[{self.host_name}] would open session {self.name}{suffix}")

    async def run(self, cmds: str | Sequence[str], *, timeout: float | None = None) -> RunResult:
        """Say each command would run; every record is ``Status.NotRun``."""
        self._check_open()
        if not self.shell:
            raise OttoError(
                f"{self.where}: this session has no shell (a raw stream): "
                "drive it with send/expect or open_app"
            )
        commands = [cmds] if isinstance(cmds, str) else list(cmds)
        limit = f"  (timeout {timeout:g}s)" if timeout is not None else ""
        statuses = []
        for command in commands:
            self._line("run", command + limit)
            status = not_run(command, host=self.host_name, session=self.name)
            for observe in self._observers:
                observe(status)
            statuses.append(status)
        return RunResult.of(statuses)

    async def send(self, text: str) -> None:
        """Say the text would be sent."""
        self._check_open()
        self._line("send", repr(text))

    def _stop(self, pattern: Pattern | Patterns) -> NoReturn:
        self._line("wait for", _shown(pattern))
        raise DryRunStop(
            f"{self.where}: expect({_shown(pattern)}) waits for output, and a dry run runs nothing"
        )

    @overload
    async def expect(self, pattern: Pattern, timeout: float = 30.0) -> str: ...

    @overload
    async def expect(self, pattern: Patterns, timeout: float = 30.0) -> ExpectMatch: ...

    async def expect(self, pattern: Pattern | Patterns, timeout: float = 30.0) -> str | ExpectMatch:
        """Raise ``DryRunStop``: there is no output to wait for."""
        self._check_open()
        self._stop(pattern)

    async def exchange(
        self, text: str, patterns: Pattern | Patterns, timeout: float = 30.0
    ) -> ExpectMatch:
        """Say the text would be sent, then raise ``DryRunStop`` (as ``expect``)."""
        await self.send(text)
        self._stop(patterns)


class DryRunHost(Host):
    """A host that writes what each verb would do, and returns results marked not run.

    Args:
        name: the host's name, as in the lab.
        reaches: how the real host would be reached (``ssh user@addr:22 via gw``),
            said once, when the host is first used.
        say: where the lines go (default: standard output).
        power: the host's power commands, to say what ``power`` would run.
    """

    def __init__(
        self,
        name: str,
        *,
        reaches: str = "",
        say: Say | None = None,
        power: PowerSpec | None = None,
    ) -> None:
        super().__init__(name, power=power)
        self.reaches = reaches
        self._say = say if say is not None else _stdout
        self._introduced = False

    def _emit(self, line: str, *, contact: bool = True) -> None:
        if contact and not self._introduced:
            self._introduced = True
            if self.reaches:
                self._say(f"[{self.name}] would connect: {self.reaches}")
        log.info("dry run: %s", line)
        self._say(line)

    def _line(self, text: str, *, contact: bool = True) -> None:
        """Say ``text``; the first time the host would be contacted, say how first."""
        self._emit(f"[{self.name}] {text}", contact=contact)

    # --- what a kind of host provides -------------------------------------------------

    def _new_session(
        self, name: str, pty: bool, become: Become | None = None, raw: bool = False
    ) -> Session:
        return DryRunSession(
            name,
            host=self.name,
            say=self._emit,
            pty=pty or become is not None or raw,
            as_user=become.user if become is not None else None,
            shell=not raw,
            on_close=self._forget,
            observers=self._observers,
        )

    def _shell_transport(self, *, pty: bool) -> ShellTransport:
        raise DryRunStop(f"{self.name}: a dry run opens no shell")

    async def _oneshot(self, command: str, timeout: float | None) -> CommandStatus:
        limit = f"  (timeout {timeout:g}s)" if timeout is not None else ""
        self._line(f"would run (one-shot): {command}{limit}")
        return not_run(command, host=self.name, session="oneshot")

    async def _put(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult:
        sources = source_list(src)
        missing = [s for s in sources if not os.path.lexists(s)]
        for source in sources:
            self._line(f"would put: {source} -> {self.name}:{os.fspath(dest_dir)}")
        if missing:
            return TransferResult(
                Status.Error, error=f"{self.name}: no such local file or folder: {missing[0]}"
            )
        return TransferResult(Status.NotRun, error=f"{self.name}: dry run: nothing copied")

    async def _get(
        self, src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None
    ) -> TransferResult:
        for source in source_list(src):
            self._line(f"would get: {self.name}:{source} -> {os.fspath(dest_dir)}")
        return TransferResult(Status.NotRun, error=f"{self.name}: dry run: nothing copied")

    # --- power, reboot, waits ---------------------------------------------------------

    async def power(self, action: PowerAction) -> PowerState:
        """Say what power step would run, and where; ``ValueError`` as a real host.

        Nothing is contacted: a ``status`` is not read, and ``"off"`` is returned.
        """
        if action not in POWER_ACTIONS:
            raise ValueError(
                f"power action must be one of {', '.join(POWER_ACTIONS)}, not {action!r}"
            )
        spec = self.power_spec
        if spec is None:
            raise ValueError(f"{self.name}: no power commands (lab field 'power')")
        driver = spec.resolve()
        if action == "cycle" and not driver.native("cycle"):
            if not (driver.native("off") and driver.native("on")):
                raise ValueError(f"{self.name}: power cycle needs 'cycle', or 'off' and 'on'")
            steps: list[PowerAction] = ["off", "on"]
        elif not driver.native(action):
            raise ValueError(f"{self.name}: no power {action!r} command (lab field 'power')")
        else:
            steps = [action]
        what = "read power status" if action == "status" else f"switch power {action}"
        for step in steps:  # on the controller: the host itself is not contacted
            self._line(f"would {what}: {driver.describe(step)}", contact=False)
        return "on" if action in ("on", "cycle") else "off"

    async def wait_until_up(
        self, timeout: float = 300.0, *, prompt: str | re.Pattern[str] | None = None
    ) -> None:
        """Say it would wait until the host is up."""
        what = f"its prompt {_shown(prompt)} shows" if prompt is not None else "a shell answers"
        self._line(f"would wait until {what} (up to {timeout:g}s)")

    async def wait_until_down(self, timeout: float = 300.0) -> None:
        """Say it would wait until the host is down."""
        self._line(f"would wait until it stops answering (up to {timeout:g}s)")

    async def reboot(
        self,
        *,
        hard: bool = False,
        timeout: float = 300.0,
        wait: bool = True,
        command: str = "reboot",
    ) -> None:
        """Say how it would restart the host, and whether it would wait."""
        if hard:
            await self.power("cycle")
        else:
            self._line(f"would run to reboot: {command}")
        if wait:
            self._line(f"would wait until it goes down and is up again (up to {timeout:g}s)")
