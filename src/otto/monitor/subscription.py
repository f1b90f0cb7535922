"""Fanning a source's updates out to its subscribers (the dashboard's event streams).

Every ``DashboardSource`` (a live ``Collector``, a ``Replay``, a ``MemorySource``)
hands out ``Subscription`` objects from one ``Subscribers`` hub. A subscription
is registered when it is created, so an update published between ``subscribe()``
and the first ``__anext__`` is not lost. Each subscription holds at most
``max_backlog`` pending updates: a subscriber that falls further behind (a
client that stopped reading) is cut off instead of pinning memory; a dashboard
reconnects and starts again from a snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Self

__all__ = ["DEFAULT_BACKLOG", "Subscribers", "Subscription"]

log = logging.getLogger("otto.monitor")

DEFAULT_BACKLOG = 256
"""Updates a subscriber may have pending before it is cut off."""

Update = dict[str, object]


class Subscription:
    """One subscriber's queue of updates; iterate it with ``async for``.

    It ends when its source stops, or when it falls ``max_backlog`` updates
    behind (then ``overflowed`` is true).
    """

    def __init__(self, hub: Subscribers, max_backlog: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[Update | None] = asyncio.Queue()
        self._max_backlog = max_backlog
        self._ended = False
        self.overflowed = False
        """True once this subscriber was cut off for falling too far behind."""

    @property
    def pending(self) -> int:
        """Updates queued and not yet read."""
        return self._queue.qsize()

    def offer(self, update: Update) -> None:
        """Queue ``update``, or cut the subscriber off if it is too far behind."""
        if self._ended:
            return
        if self._queue.qsize() >= self._max_backlog:
            log.warning(
                "dropping a dashboard subscriber %d updates behind (it does not read)",
                self._max_backlog,
            )
            self.overflowed = True
            self.end()
            return
        self._queue.put_nowait(update)

    def end(self) -> None:
        """End the stream after what is already queued."""
        if not self._ended:
            self._ended = True
            self._hub.discard(self)
            self._queue.put_nowait(None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Update:
        update = await self._queue.get()
        if update is None:
            self._queue.put_nowait(None)  # a later __anext__ stops too
            raise StopAsyncIteration
        return update

    async def aclose(self) -> None:
        """Stop receiving updates (the consumer is gone)."""
        self.end()


class Subscribers:
    """The open subscriptions of one source.

    Args:
        max_backlog: updates a subscriber may have pending before it is cut off.
    """

    def __init__(self, max_backlog: int = DEFAULT_BACKLOG) -> None:
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be at least 1, got {max_backlog!r}")
        self._open: set[Subscription] = set()
        self._max_backlog = max_backlog
        self._stopped = False

    def __len__(self) -> int:
        return len(self._open)

    def __bool__(self) -> bool:
        return bool(self._open)

    def subscribe(self) -> Subscription:
        """A new subscription; already ended if the source has stopped."""
        subscription = Subscription(self, self._max_backlog)
        if self._stopped:
            subscription.end()
        else:
            self._open.add(subscription)
        return subscription

    def publish(self, update: Update) -> None:
        """Give ``update`` to every open subscription."""
        for subscription in list(self._open):
            subscription.offer(update)

    def stop(self) -> None:
        """End every subscription, and those made from now on (the source stopped)."""
        self._stopped = True
        for subscription in list(self._open):
            subscription.end()

    def restart(self) -> None:
        """Accept subscriptions again (the source started again)."""
        self._stopped = False

    def discard(self, subscription: Subscription) -> None:
        """Forget ``subscription`` (it ended)."""
        self._open.discard(subscription)
