"""Where collected cases go: the running test's plugin installs a sink, collect() publishes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from otto.results.model import Case


class CaseSink(Protocol):
    """Receives the cases of one collected suite.

    ``source`` is a short label such as ``"board1: run-ptest"``.
    """

    def __call__(self, source: str, cases: Sequence[Case]) -> None: ...


_sink: CaseSink | None = None


def set_sink(sink: CaseSink | None) -> CaseSink | None:
    """Install ``sink`` (``None`` removes it) and return the one it replaces."""
    global _sink
    previous, _sink = _sink, sink
    return previous


def publish(source: str, cases: Sequence[Case]) -> None:
    """Hand ``cases`` to the installed sink; does nothing when there is none."""
    sink = _sink
    if sink is not None:
        sink(source, cases)
