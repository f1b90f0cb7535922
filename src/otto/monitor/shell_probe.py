"""Reading a host's metrics over its shell: one ``run`` per round on a session of its own.

The metric commands are joined into one shell command, with a unique separator
and each command's exit status printed between their outputs. A command that is
missing (a busybox host without ``df``) only loses its own section.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from otto.monitor.parsers import MetricParser, Sample
from otto.monitor.probe import HostRound, RoundCost
from otto.periodic import Clock, HostLike, SessionLike
from otto.result import Status

__all__ = ["ShellProbe", "join_commands", "split_output"]

logger = logging.getLogger("otto.monitor")


def join_commands(commands: Sequence[str], separator: str) -> str:
    """One shell command running ``commands`` in turn, a separator line after each.

    After command ``i`` the line ``<separator> i <exit status>`` is printed. Each
    command runs in a subshell, reads no stdin and has its stderr dropped: a
    missing program leaves only its exit status (127) behind, and a command that
    calls ``exit`` or ``cd`` cannot end or move the monitor's shell.
    """
    return "; ".join(
        # The newline before ")" lets a command end in "&" or a comment.
        f"( {command}\n) </dev/null 2>/dev/null; printf '\\n{separator} {i} %d\\n' $?"
        for i, command in enumerate(commands)
    )


def split_output(text: str, separator: str, count: int) -> list[tuple[int | None, str]]:
    """Split the output of ``join_commands`` back into ``(exit status, output)`` per command.

    A command whose separator line is missing (the run was cut short) gets
    ``(None, "")``.
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


class ShellProbe:
    """A host read through its shell: the ``Probe`` of every host with one.

    Args:
        host: the host.
        commands: ``{command: parser}``, polled in this order.
        separator: the separator line ``join_commands`` prints.
        session_name: the name of the monitor's own session on the host.
        clock: the collector's clock.
    """

    def __init__(
        self,
        host: HostLike,
        commands: Mapping[str, MetricParser],
        *,
        separator: str,
        session_name: str,
        clock: Clock,
    ) -> None:
        self.host = host
        self.name = host.name
        self.parsers = list(commands.items())
        self.separator = separator
        self.command = join_commands([c for c, _ in self.parsers], separator)
        self.session_name = session_name
        self.session: SessionLike | None = None
        self.previous: dict[str, Sample] = {}
        self._clock = clock

    async def poll(self, index: int, deadline: float) -> HostRound:
        """Run the joined command once and parse what it printed."""
        clock = self._clock
        try:
            if self.session is None:
                self.session = await self.host.open_session(self.session_name)
            budget = deadline - clock.monotonic()
            if budget <= 0:
                return HostRound(False, {}, "no time left in the round")
            sent = clock.monotonic()
            result = await self.session.run(self.command, timeout=budget)
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
        cost = RoundCost(answered - sent, len(status.output.encode()), len(self.parsers))
        return self.parse(status.output, (sent + answered) / 2, cost)

    def parse(self, output: str, taken: float, cost: RoundCost | None = None) -> HostRound:
        """The metrics in the joined command's ``output``, read at ``taken``."""
        metrics: dict[str, float] = {}
        counters: dict[str, Mapping[str, int]] = {}
        problems: list[str] = []
        sections = split_output(output, self.separator, len(self.parsers))
        for (command, parser), (code, text) in zip(self.parsers, sections, strict=True):
            if code is None:
                problems.append(f"{command}: no output")
                continue
            if code != 0:
                problems.append(f"{command}: exit status {code}")
                self.previous.pop(command, None)
                continue
            try:
                parsed = parser(text, taken, self.previous.get(command))
            except Exception as exc:
                problems.append(f"{command}: {type(exc).__name__}: {exc}")
                self.previous.pop(command, None)
                continue
            metrics.update(parsed.metrics)
            if parsed.counters:
                self.previous[command] = Sample(taken, parsed.counters)
                counters[getattr(parser, "__name__", command)] = parsed.counters
        # A host whose commands all failed gave nothing usable: that is down.
        up = bool(metrics) or not problems
        return HostRound(up, metrics, "; ".join(problems), cost, counters)

    async def close(self) -> None:
        """Close the monitor's session on the host."""
        session, self.session = self.session, None
        if session is None:
            return
        try:
            await session.close()
        except Exception:
            logger.debug("%s: closing the monitor session failed", self.name, exc_info=True)
