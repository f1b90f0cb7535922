"""The fair lock that serializes a session's calls (and, on a console, every session's)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

__all__ = ["SessionLock"]


class SessionLock:
    """A fair (first come, first served) lock for a session's calls.

    What ``asyncio.Lock`` does, with an uncontended acquire that is a plain
    method call: it is taken on every command. Sessions that share one stream
    (a console) share one of these.
    """

    __slots__ = ("_held", "_locked", "_patience", "_waiters")

    def __init__(self) -> None:
        self._locked = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._held: Callable[[], Exception] | None = None
        self._patience = 0.0

    def locked(self) -> bool:
        return self._locked

    def try_acquire(self) -> bool:
        """Take the lock if it is free and nobody waits; never blocks."""
        if self._locked or self._waiters:
            return False
        self._locked = True
        return True

    def hold(self, error: Callable[[], Exception], patience: float) -> None:
        """Keep the lock (taken by the caller) until ``release``, beyond one call.

        A session that runs as another user on a console holds its stream for
        its whole life. Others wait at most ``patience`` seconds for it, then
        raise ``error()``.
        """
        if not self._locked:
            raise RuntimeError("SessionLock.hold() needs the lock taken first")
        self._held = error
        self._patience = patience
        loop = asyncio.get_running_loop()
        for waiter in self._waiters:
            loop.call_later(patience, self._give_up, waiter, error)

    def _give_up(self, waiter: asyncio.Future[None], error: Callable[[], Exception]) -> None:
        if not waiter.done() and self._held is error:  # that hold still lasts
            waiter.set_exception(error())

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        held = self._held
        timer = None
        if held is not None:
            timer = loop.call_later(self._patience, self._give_up, waiter, held)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed the lock just as the caller was cancelled: pass it on.
                self._locked = False
                self._wake()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self) -> None:
        if not self._locked:
            raise RuntimeError("SessionLock released while not held")
        self._locked = False
        self._held = None
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._locked = True
                waiter.set_result(None)
                return

    async def __aenter__(self) -> None:
        if not self.try_acquire():
            await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()
