"""One fake host for the periodic and monitor unit tests: sessions answer on a FakeClock.

A session's ``run`` records when it was called and with what timeout, then follows
the host's ``plan`` for that call (``"ok"``, ``"raise"``, ``"timeout"``, ``"hang"``),
takes ``durations`` fake seconds, and answers with ``answer(command)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from otto.periodic import FakeClock
from otto.result import CommandStatus, RunResult, Status

__all__ = ["FakeHost", "FakeSession", "ok"]


def ok(cmd: str) -> CommandStatus:
    """A command that succeeds, printing ``fine``."""
    return CommandStatus(command=cmd, output="fine", status=Status.Success, retcode=0)


class FakeSession:
    """A session of a ``FakeHost``."""

    def __init__(self, host: FakeHost, name: str) -> None:
        self.host = host
        self.name = name
        self.closed = False

    async def run(self, cmds: str | Sequence[str], *, timeout: float | None = None) -> RunResult:
        host = self.host
        clock = host.clock
        cmd = cmds if isinstance(cmds, str) else cmds[0]
        host.calls.append(clock.monotonic())
        host.timeouts.append(timeout)
        plan = host.plan.pop(0) if host.plan else "ok"
        if plan == "raise":
            raise ConnectionError(f"{host.name}: connection refused")
        if plan == "timeout":
            return RunResult.of([CommandStatus(cmd, "", Status.Error, -1, timed_out=True)])
        if plan == "hang":
            # A host that does not even honour the timeout: the caller must cut it off.
            await clock.sleep_until(clock.monotonic() + 1000)
        duration = host.durations.pop(0) if host.durations else 0.0
        if duration:
            await clock.sleep_until(clock.monotonic() + duration)
        return RunResult.of([host.answer(cmd)])

    async def close(self) -> None:
        self.closed = True


class FakeHost:
    """A host whose sessions answer ``answer(command)`` on ``clock``.

    Args:
        clock: the fake clock the sessions take their time on.
        answer: what a command gives.
        name: the host's name.
    """

    def __init__(
        self,
        clock: FakeClock,
        answer: Callable[[str], CommandStatus] = ok,
        *,
        name: str = "fake",
    ) -> None:
        self.name = name
        self.clock = clock
        self.answer = answer
        self.calls: list[float] = []
        """``clock.monotonic()`` at each ``run``."""
        self.timeouts: list[float | None] = []
        self.plan: list[str] = []
        self.durations: list[float] = []
        self.sessions: list[FakeSession] = []
        self.open_errors: list[Exception] = []

    async def open_session(self, name: str) -> FakeSession:
        if self.open_errors:
            raise self.open_errors.pop(0)
        session = FakeSession(self, name)
        self.sessions.append(session)
        return session
