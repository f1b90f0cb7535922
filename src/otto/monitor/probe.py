"""How the collector reads one host: a ``Probe`` per way of reaching it.

A round asks every probe of every host for its metrics at the same instant.
A host reached over a shell has a ``ShellProbe`` (``otto.monitor.shell_probe``);
other ways of reading a device (SNMP, ...) are probes of their own, in files
of their own. A host with several probes (a shell and SNMP) gets the union of
their metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CostTally", "HostRound", "Probe", "RoundCost"]


@dataclass(frozen=True, slots=True)
class RoundCost:
    """What one probe's part of a round cost.

    Attributes:
        seconds: from sending the request to having the whole answer.
        received: bytes received from the host.
        processes: processes the round started on the target, when known
            (None: not counted, or not a shell).
    """

    seconds: float
    received: int
    processes: int | None = None


@dataclass(slots=True)
class CostTally:
    """What a host's rounds cost so far: the latest round and the sums since the start.

    A host with several probes adds up their costs per round: bytes and
    processes are summed, the duration is the slowest probe's.
    """

    rounds: int = 0
    """Rounds with a cost (a host that did not answer has none)."""
    seconds: float = 0.0
    received: int = 0
    processes: int = 0
    """Processes started, summed over the ``counted`` rounds."""
    counted: int = 0
    """Rounds whose processes were counted."""
    most_processes: int | None = None
    last: RoundCost | None = None

    def add(self, costs: tuple[RoundCost, ...]) -> None:
        """Count one round, made of its probes' costs (nothing when there are none)."""
        if not costs:
            return
        if len(costs) == 1:
            last = costs[0]
        else:
            known = [c.processes for c in costs if c.processes is not None]
            last = RoundCost(
                max(c.seconds for c in costs),
                sum(c.received for c in costs),
                sum(known) if known else None,
            )
        self.last = last
        self.rounds += 1
        self.seconds += last.seconds
        self.received += last.received
        if last.processes is not None:
            self.counted += 1
            self.processes += last.processes
            self.most_processes = max(self.most_processes or 0, last.processes)

    def since(self, earlier: CostTally) -> CostTally:
        """The rounds counted after ``earlier`` (a ``copy()`` of this tally), as a tally."""
        return CostTally(
            self.rounds - earlier.rounds,
            self.seconds - earlier.seconds,
            self.received - earlier.received,
            self.processes - earlier.processes,
            self.counted - earlier.counted,
            self.most_processes,
            self.last,
        )

    def copy(self) -> CostTally:
        """A snapshot of the tally now."""
        return CostTally(
            self.rounds,
            self.seconds,
            self.received,
            self.processes,
            self.counted,
            self.most_processes,
            self.last,
        )


@dataclass(frozen=True, slots=True)
class HostRound:
    """What one host came to in one round.

    ``metrics`` may hold values that are not finite numbers: the collector
    drops and counts them. ``counters`` holds each parser's raw counters this
    round (its ``Parsed.counters``) by the parser's ``__name__``: the cumulative
    totals behind the rates, which ``/metrics`` exports as counters.
    """

    up: bool
    metrics: dict[str, float]
    error: str = ""
    cost: RoundCost | None = None
    counters: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


class Probe(Protocol):
    """Reads one host's metrics, once per round.

    ``poll`` never raises for a host that cannot be read: it returns a
    ``HostRound`` that is down, with the reason. It may run past its round's
    deadline (the collector then records the host as not answering, and starts
    no other poll of it until this one ends); it is cancelled when it is older
    than the host's ``connect_timeout`` plus two intervals, or when the collector
    stops (the probe must then leave itself ready for the next poll).
    """

    async def poll(self, index: int, deadline: float) -> HostRound:
        """Read the host for round ``index`` (0, 1, ...), answering by ``deadline``.

        ``deadline`` is on the collector clock's monotonic scale.
        """
        ...

    async def close(self) -> None:
        """Let go of whatever the probe holds open on the host (idempotent)."""
        ...
