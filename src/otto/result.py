"""Result records: what a command, a list of commands, or a transfer came to."""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["CommandStatus", "RunResult", "Status", "TransferResult"]


class Status(enum.Enum):
    """How a command ended. Ordered so that ``max`` gives the worst."""

    Success = 0
    """It ran and exited 0."""
    Failed = 1
    """It ran and exited non-zero."""
    Error = 2
    """It could not run or finish: timeout, connection lost, session closed."""
    NotRun = 3
    """It was never started: a dry run (``otto -n``) only said what it would do.

    Such a record has no output, ``retcode`` -1 and an ``error`` saying why;
    it is not a success, so code that checks ``is_ok`` never takes it for one."""

    @property
    def is_ok(self) -> bool:
        """True only for ``Success``."""
        return self is Status.Success

    @classmethod
    def worst(cls, statuses: Sequence[Status]) -> Status:
        """The worst of ``statuses``; ``Success`` when there are none."""
        return max(statuses, key=lambda s: s.value, default=cls.Success)


@dataclass(frozen=True, slots=True)
class CommandStatus:
    """One command's outcome.

    ``output`` is stdout and stderr as a terminal would show them: no echo, no
    prompt, ``\\r\\n`` folded to ``\\n``, at most one trailing newline stripped.
    ``retcode`` is the exit status, or -1 when none is known (``Status.Error``).
    """

    command: str
    output: str
    status: Status
    retcode: int
    timed_out: bool = False
    duration: float = 0.0
    error: str = ""
    """Why a ``Status.Error`` result could not run or finish, naming the host."""
    host: str = ""
    session: str = ""
    started: float = 0.0
    """Wall-clock time (``time.time()``) the command started."""

    @property
    def is_ok(self) -> bool:
        return self.status.is_ok

    @classmethod
    def finished(
        cls,
        command: str,
        output: str,
        retcode: int | None,
        *,
        started: tuple[float, float],
        host: str = "",
        session: str = "",
        timed_out: bool = False,
        error: str = "",
    ) -> CommandStatus:
        """The record of a command that ended now.

        The status follows from how it ended: ``Error`` when it timed out or no
        exit status is known (``retcode`` None, recorded as -1), else
        ``Success`` for 0 and ``Failed`` for any other status.

        Args:
            started: ``(time.monotonic(), time.time())`` when the command started.
        """
        if timed_out or retcode is None:
            status = Status.Error
            if not error:
                error = f"{host}: the command ended without an exit status"
            retcode = -1
        else:
            status = Status.Success if retcode == 0 else Status.Failed
        duration = time.monotonic() - started[0]
        if cls is not CommandStatus:
            return cls(
                command, output, status, retcode, timed_out, duration, error, host, session,
                started[1],
            )  # fmt: skip
        # This is on every command's path: the slots are filled on a plain
        # twin of the class (same slots, so the same layout; a plain store
        # costs a tenth of the frozen __init__'s object.__setattr__), which
        # then becomes a CommandStatus, frozen like any other.
        record = _Filling()
        record.command = command
        record.output = output
        record.status = status
        record.retcode = retcode
        record.timed_out = timed_out
        record.duration = duration
        record.error = error
        record.host = host
        record.session = session
        record.started = started[1]
        record.__class__ = CommandStatus  # type: ignore[assignment]
        return record  # type: ignore[return-value]


_new_object = object.__new__


class _Filling:
    """A CommandStatus being filled (see ``CommandStatus.finished``)."""

    __slots__ = CommandStatus.__slots__
    command: str
    output: str
    status: Status
    retcode: int
    timed_out: bool
    duration: float
    error: str
    host: str
    session: str
    started: float


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of ``run``: the worst status and one record per command that ran."""

    status: Status
    statuses: list[CommandStatus] = field(default_factory=list)

    @classmethod
    def of(cls, statuses: list[CommandStatus]) -> RunResult:
        return cls(Status.worst([s.status for s in statuses]), statuses)

    @classmethod
    def of_one(cls, status: CommandStatus) -> RunResult:
        """The result of one command (built without the frozen ``__init__``: it is hot)."""
        result = _new_object(cls)
        _SET_RUN_STATUS(result, status.status)
        _SET_RUN_STATUSES(result, [status])
        return result

    @property
    def is_ok(self) -> bool:
        return self.status.is_ok

    @property
    def only(self) -> CommandStatus:
        """The single ``CommandStatus``; ``ValueError`` unless exactly one command ran."""
        if len(self.statuses) != 1:
            commands = [s.command for s in self.statuses]
            raise ValueError(
                f"RunResult.only needs exactly one command, this result has "
                f"{len(self.statuses)}: {commands!r}"
            )
        return self.statuses[0]

    @property
    def output(self) -> str:
        """The outputs of all commands, joined by newlines."""
        return "\n".join(s.output for s in self.statuses)


@dataclass(frozen=True, slots=True)
class TransferResult:
    """The outcome of ``put`` or ``get``."""

    status: Status
    files: list[str] = field(default_factory=list)
    """Destination paths of the files written."""
    bytes: int = 0
    duration: float = 0.0
    error: str = ""

    @property
    def is_ok(self) -> bool:
        return self.status.is_ok


_SET_RUN_STATUS, _SET_RUN_STATUSES = (getattr(RunResult, n).__set__ for n in ("status", "statuses"))
