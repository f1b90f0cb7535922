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

__all__ = ["HostRound", "Probe", "RoundCost"]


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
    ``HostRound`` that is down, with the reason. It is cancelled when the round
    is over (the probe must then leave itself ready for the next round).
    """

    async def poll(self, index: int, deadline: float) -> HostRound:
        """Read the host for round ``index`` (0, 1, ...), answering by ``deadline``.

        ``deadline`` is on the collector clock's monotonic scale.
        """
        ...

    async def close(self) -> None:
        """Let go of whatever the probe holds open on the host (idempotent)."""
        ...
