"""What the dashboard shows: the one protocol a live ``Collector``, a ``Replay`` of a
saved file and a ``MemorySource`` all implement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

__all__ = ["DashboardSource"]


class DashboardSource(Protocol):
    """A source of rounds and events for the dashboard."""

    def snapshot(self) -> dict[str, object]:
        """Everything known now, in fresh containers the caller may keep.

        ``{"interval": float, "live": bool, "hosts": {name: {"up": bool, "last_error": str}},
        "metrics": [sorted names], "series": {metric: {host: [[t, v], ...]}},
        "events": [{"id", "t", "end", "label", "color"}]}``; ``t`` in Unix seconds.
        """
        ...

    def subscribe(self) -> AsyncIterator[dict[str, object]]:
        """Updates from now on, until the source stops.

        Yields ``{"type": "round", "t", "duration", "hosts": {name: {"up", "metrics",
        "last_error"}}}`` and ``{"type": "event", "event": {...}}``. Registers when
        called, not on the first ``__anext__``: the stream takes the snapshot right
        after, and a round in between would be lost.
        """
        ...

    def add_event(
        self, label: str, color: str | None = None, end: float | None = None
    ) -> dict[str, object]:
        """Put an annotation on the timeline now and return it."""
        ...
