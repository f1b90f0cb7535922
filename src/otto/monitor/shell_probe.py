"""Reading a host's metrics over its shell: one short ``run`` per round on a session of its own.

The footprint on the target is what matters here: the device under test must
not be disturbed by watching it. So a round starts no process on the host for
what it can read with the shell's own builtins:

- On the first round of a session the probe defines a shell function (POSIX
  sh: bash, dash, busybox ash) holding every section of the round; every
  later round sends only its name and one argument, a line of ~40 bytes.
- A ``cat FILE`` command (the defaults' ``/proc/stat``, ``/proc/meminfo``, ...)
  is read by builtins, with no subshell and no ``cat``: ``mapfile`` and
  ``printf -v`` on bash 4+, else a ``while IFS= read -r`` loop. The text is
  gathered in a shell variable and printed at once (one or two packets a
  round), byte for byte what ``cat`` prints.
- ``df -P`` is a program: it runs only every ``df_every``-th round (the rounds
  between repeat its last reading). Any other command (a user's parser) runs
  in a subshell of its own, as before: it costs processes, and they are counted.

Each section is followed by a separator line with its exit status, so a file
missing on a host, or a missing program, only loses its own section.

The processes a round started are measured, not assumed: see ``round_processes``.
"""

from __future__ import annotations

import functools
import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from otto.monitor.parsers import MetricParser, Sample
from otto.monitor.probe import HostRound, RoundCost
from otto.periodic import Clock, HostLike, SessionLike
from otto.result import Status

__all__ = [
    "DF_COMMAND",
    "DF_EVERY",
    "ShellProbe",
    "builtin_path",
    "join_commands",
    "monitor_script",
    "round_processes",
    "split_output",
]

logger = logging.getLogger("otto.monitor")

DF_COMMAND = "df -P"
"""The one default command that is a program: run on every ``df_every``-th round only."""

DF_EVERY = 12
"""Default rounds between two ``df`` runs (once a minute at the default 5 s interval)."""

_CAT = re.compile(r"cat (/[A-Za-z0-9_./:@%+,-]+)\Z")


def builtin_path(command: str) -> str | None:
    """The file ``command`` prints, when it is a plain ``cat FILE`` that builtins can read."""
    found = _CAT.match(command)
    return found.group(1) if found is not None else None


def join_commands(commands: Sequence[str], separator: str) -> str:
    """One shell command running ``commands`` in turn, a separator line after each.

    After command ``i`` the line ``<separator> i <exit status>`` is printed. Each
    command runs in a subshell, reads no stdin and has its stderr dropped: a
    missing program leaves only its exit status (127) behind, and a command that
    calls ``exit`` or ``cd`` cannot end or move the monitor's shell.
    """
    return "; ".join(_subshell(command, separator, i) for i, command in enumerate(commands))


def _subshell(command: str, separator: str, index: int) -> str:
    # The newline before ")" lets a command end in "&" or a comment.
    return f"( {command}\n) </dev/null 2>/dev/null; printf '\\n{separator} {index} %d\\n' $?"


def split_output(text: str, separator: str, count: int) -> list[tuple[int | None, str]]:
    """Split the output of ``join_commands`` back into ``(exit status, output)`` per command.

    A command whose separator line is missing (the run was cut short, or the
    section did not run this round) gets ``(None, "")``. Lines of the round's
    cost (``<separator> c ...``) are skipped.
    """
    sections: list[tuple[int | None, str]] = [(None, "")] * count
    pieces = text.split("\n" + separator + " ")
    body = pieces[0]
    for piece in pieces[1:]:
        header, _, rest = piece.partition("\n")
        index, _, status = header.partition(" ")
        if index.isdigit() and status.lstrip("-").isdigit() and int(index) < count:
            sections[int(index)] = (int(status), body)
        body = rest
    return sections


def _cost_marks(text: str, separator: str) -> list[int | None]:
    """The last PIDs of the round's first and last cost lines.

    They stand at the very start and end of the output: only those ends are searched.
    """
    needle = "\n" + separator + " c "
    marks: list[int | None] = []
    first = text.find(needle, 0, 256 + len(needle))
    last = text.rfind(needle)
    for start in (first, last) if first != last else (first,):
        if start < 0:
            continue
        end = text.find("\n", start + len(needle))
        pid = text[start + len(needle) : end if end >= 0 else len(text)].strip()
        marks.append(int(pid) if pid.isdigit() else None)
    return marks


def round_processes(marks: Sequence[int | None]) -> int | None:
    """Processes started on the host while the round ran, from its first and last cost line.

    A cost line holds the last PID the kernel handed out in the shell's PID
    namespace (the fifth field of ``/proc/loadavg``, read by the ``read``
    builtin: no process of its own). The first line is printed before any
    section runs, the last after all of them. Every process (or thread) created
    in the namespace in between took a new PID, so the difference is an upper
    bound of what the round started, never an estimate below it: it counts the
    round's own (``df``, a user's command) and anyone else's in that window.
    Otto itself starts nothing else on the host then (the round is one command
    on a persistent shell), so on an idle device the figure is exact; on a busy
    one it can only over-count, by what the rest of the host started in those
    milliseconds.

    ``/proc/stat``'s ``processes`` counter would say the same for the whole
    kernel, but reading it means generating all of ``/proc/stat`` again, twice
    a round: dearer than what is measured.

    Returns:
        The difference, or None when the lines are missing (not a Linux host,
        or the round was cut short) or the PIDs wrapped around in between.
    """
    if len(marks) < 2:
        return None
    before, after = marks[0], marks[-1]
    if before is None or after is None or after < before:
        return None
    return after - before


@dataclass(frozen=True, slots=True)
class _Section:
    command: str
    path: str | None
    """Read with builtins (a ``cat FILE`` command), or None: run in a subshell."""
    sometimes: bool
    """Run on ``df_every``-th rounds only."""


def monitor_script(sections: Sequence[tuple[str, bool]], separator: str, name: str) -> str:
    """Shell text defining the function ``name`` that runs one round.

    ``name 1`` runs every section; ``name 0`` leaves out those marked
    ``sometimes``. Section ``i`` prints its output, then ``\\n<separator> i
    <status>``; a cost line ``\\n<separator> c <last pid>`` comes first and
    last (see ``round_processes``). Helper functions ``<name>_r`` (read a file),
    ``<name>_s`` (a separator line), ``<name>_c`` (a cost line) and ``<name>_f``
    (flush) are defined alongside.

    What the builtins read is gathered in a variable and printed at once, before
    a command in a subshell and at the end: a round of builtin reads is one or
    two writes, so one or two packets from the host, not one per line.

    Args:
        sections: ``(command, sometimes)`` in order.
        separator: a shell word of letters, digits and ``_``.
        name: the function's name, likewise.

    Raises:
        ValueError: ``separator`` or ``name`` is not such a word.
    """
    for word in (separator, name):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", word):
            raise ValueError(f"not a plain shell word: {word!r}")
    read, cost, flush, mark = f"{name}_r", f"{name}_c", f"{name}_f", f"{name}_s"
    lines = [
        "__otto_n='\n'",
        # bash >= 4: three builtins per file. Defined through eval, so that other
        # shells never parse the array syntax.
        'if [ "${BASH_VERSINFO:-0}" -ge 4 ] 2>/dev/null; then',
        f'eval \'{read}() {{ mapfile __otto_a <"$1" || return 1; '
        'printf -v __otto_t %s "${__otto_a[@]}"; __otto_o+=$__otto_t; }\'',
        # += appends in place: "$__otto_o..." would expand the whole buffer again.
        f"eval '{mark}() {{ __otto_o+=\"${{__otto_n}}{separator} $1 $2$__otto_n\"; }}'",
        "else",
        # Any POSIX sh: IFS= keeps leading blanks, -r backslashes; a last line
        # without a newline is kept as it is.
        f'{read}() {{ [ -r "$1" ] || return 1; __otto_l=; '
        "while IFS= read -r __otto_l; do __otto_o=$__otto_o$__otto_l$__otto_n; "
        'done <"$1"; __otto_o=$__otto_o$__otto_l; }',
        f'{mark}() {{ __otto_o="$__otto_o${{__otto_n}}{separator} $1 $2$__otto_n"; }}',
        "fi",
        f'{flush}() {{ printf %s "$__otto_o"; __otto_o=; }}',
        f"{cost}() {{ __otto_p=; read -r __otto_p __otto_p __otto_p __otto_p __otto_p "
        f'</proc/loadavg; {mark} c "$__otto_p"; }} '
        "2>/dev/null",
        f"{name}() {{",
        "__otto_o=",
        cost,
    ]
    for i, (command, sometimes) in enumerate(sections):
        path = builtin_path(command)
        if path is not None:
            text = f"{read} {shlex.quote(path)} 2>/dev/null; {mark} {i} $?"
        else:
            # The newline before ")" lets a command end in "&" or a comment.
            text = f"{flush}; ( {command}\n) </dev/null 2>/dev/null; {mark} {i} $?"
        lines.append(f'if [ "$1" = 1 ]; then {text}\nfi' if sometimes else text)
    lines += [cost, flush, "}"]
    return "\n".join(lines)


@functools.lru_cache(maxsize=64)
def _shared_script(sections: tuple[tuple[str, bool], ...], separator: str, name: str) -> str:
    """``monitor_script``, one string for all the hosts polled with the same commands."""
    return monitor_script(sections, separator, name)


class ShellProbe:
    """A host read through its shell: the ``Probe`` of every host with one.

    Args:
        host: the host.
        commands: ``{command: parser}``, polled in this order.
        separator: the separator line's word (letters, digits, ``_``).
        session_name: the name of the monitor's own session on the host.
        clock: the collector's clock.
        df_every: run ``df -P`` (``DF_COMMAND``) on every this many rounds only,
            repeating its last reading in between (1: every round).
        patience: seconds a round's command may run past its round before it is
            interrupted (the collector's interval): an answer merely late is
            waited for, not interrupted round after round.

    Raises:
        ValueError: ``df_every`` below 1, or a separator that is not a shell word.
    """

    def __init__(
        self,
        host: HostLike,
        commands: Mapping[str, MetricParser],
        *,
        separator: str,
        session_name: str,
        clock: Clock,
        df_every: int = DF_EVERY,
        patience: float = 0.0,
    ) -> None:
        if df_every < 1:
            raise ValueError(f"df_every must be at least 1, got {df_every!r}")
        self.host = host
        self.name = host.name
        self.parsers = list(commands.items())
        self.separator = separator
        self.df_every = df_every
        self.sections = [
            _Section(c, builtin_path(c), df_every > 1 and c == DF_COMMAND) for c, _ in self.parsers
        ]
        self.function = f"{separator}m"
        self._calls = (f"{self.function} 0", f"{self.function} 1")
        self._table = [
            (command, parser, section.sometimes, getattr(parser, "__name__", command))
            for (command, parser), section in zip(self.parsers, self.sections, strict=True)
        ]
        """Per section: its command, parser, whether it runs on some rounds only, and
        the name its counters go by."""
        self._no_answer = f"\n{separator} c "
        self.script = _shared_script(
            tuple((s.command, s.sometimes) for s in self.sections), separator, self.function
        )
        self.session_name = session_name
        self.session: SessionLike | None = None
        self.previous: dict[str, Sample] = {}
        self.carried: dict[str, dict[str, float]] = {}
        """The last reading of each section that runs on some rounds only."""
        self._defined = False
        self._sometimes_due = 0
        self._clock = clock
        self.connecting = False
        """True while the probe's first connection is being made (and, if that took
        the whole round, until the first answer)."""
        self.patience = patience
        """Seconds a round's command may run past the round before it is interrupted."""
        self._tried = False

    def command(self, index: int) -> str:
        """The shell text of round ``index``: the call, with the definition on a new session."""
        call = self._calls[index >= self._sometimes_due]
        return call if self._defined else self.script + "\n" + call

    async def poll(self, index: int, deadline: float) -> HostRound:
        """Run the round's command once and parse what it printed.

        A new session's shell is started before the command, bounded by the
        host's own ``connect_timeout``, not by the round: a host slow to connect
        keeps its poll past the round (the collector records it as connecting,
        the first time, else as not answering) instead of never getting there.
        """
        first, self._tried = not self._tried, True
        self.connecting = first
        try:
            return await self._poll(index, deadline)
        finally:
            if first:
                self.connecting = False

    async def _poll(self, index: int, deadline: float) -> HostRound:
        clock = self._clock
        try:
            if self.session is None:
                self.session = await self.host.open_session(self.session_name)
                self._defined = False
                start = getattr(self.session, "start", None)
                if start is not None:
                    await start()
            if self.connecting and clock.monotonic() < deadline:
                # Connected within the round: its command is an ordinary one. Past
                # it, the host stays "connecting" until this first answer.
                self.connecting = False
            # A connection that took the whole round still sends the round's
            # command: its answer is late for this round, not lost for the next.
            budget = max(0.0, deadline - clock.monotonic())
            full = index >= self._sometimes_due
            command = self.command(index)
            sent = clock.monotonic()
            # Past the round's end the collector counts the host as not answering,
            # but the command is left to finish (a straggler): interrupting it
            # would cost the host a signal and the controller a channel, round
            # after round, for an answer that is merely late.
            budget += self.patience
            result = await self.session.run(command, timeout=budget)
            answered = clock.monotonic()
        except Exception as exc:
            await self.close()
            return HostRound(False, {}, f"{type(exc).__name__}: {exc}")
        if not result.statuses:
            return HostRound(False, {}, "no result")
        status = result.statuses[0]
        if status.status is Status.Error:
            reason = status.error or status.output[-200:] or "error"
            if status.timed_out:
                reason = f"no answer within {budget:.3g}s"
            return HostRound(False, {}, reason)
        marks = _cost_marks(status.output, self.separator)
        output = status.output
        received = len(output) if output.isascii() else len(output.encode())
        cost = RoundCost(answered - sent, received, round_processes(marks))
        outcome = self.parse(status.output, (sent + answered) / 2, cost, full=full)
        if full and any(s.sometimes for s in self.sections):
            self._sometimes_due = index + self.df_every
        return outcome

    def parse(
        self, output: str, taken: float, cost: RoundCost | None = None, *, full: bool = True
    ) -> HostRound:
        """The metrics in a round's ``output``, read at ``taken``.

        ``full``: the round ran the sections that run on some rounds only; on
        the others their last reading is repeated.
        """
        metrics: dict[str, float] = {}
        counters: dict[str, Mapping[str, int]] = {}
        problems: list[str] = []
        sections = split_output(output, self.separator, len(self._table))
        answered = 0
        previous, carried = self.previous, self.carried
        for (command, parser, sometimes, name), (code, text) in zip(
            self._table, sections, strict=True
        ):
            if sometimes and not full:
                metrics.update(carried.get(command, {}))
                continue
            if code is None:
                problems.append(f"{command}: no output")
                continue
            answered += 1
            if code != 0:
                problems.append(f"{command}: exit status {code}")
                previous.pop(command, None)
                carried.pop(command, None)
                continue
            try:
                parsed = parser(text, taken, previous.get(command))
            except Exception as exc:
                problems.append(f"{command}: {type(exc).__name__}: {exc}")
                previous.pop(command, None)
                carried.pop(command, None)
                continue
            metrics.update(parsed.metrics)
            if sometimes:
                carried[command] = dict(parsed.metrics)
            if parsed.counters:
                previous[command] = Sample(taken, parsed.counters)
                counters[name] = parsed.counters
        # The function is defined from the next round on, unless nothing came
        # back (a shell that lost it, or never took it): then define it again.
        self._defined = answered > 0 or self._no_answer in output
        # A host whose commands all failed gave nothing usable: that is down.
        up = bool(metrics) or not problems
        return HostRound(up, metrics, "; ".join(problems), cost, counters)

    async def close(self) -> None:
        """Close the monitor's session on the host."""
        session, self.session = self.session, None
        self._defined = False
        if session is None:
            return
        try:
            await session.close()
        except Exception:
            logger.debug("%s: closing the monitor session failed", self.name, exc_info=True)
