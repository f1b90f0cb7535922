"""``otto.run``: one event loop for the life of the program.

Scripts and notebooks call ``run(coro)`` many times; hosts and sessions opened
in one call must still be there in the next, so every call runs on the same
loop, kept in a background thread. At interpreter exit whatever is still open
is closed there, so no process, channel or descriptor outlives the program.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

__all__ = ["Closeable", "cancel_and_wait", "register_cleanup", "run", "unregister_cleanup"]

log = logging.getLogger("otto")

T = TypeVar("T")

_EXIT_TIMEOUT = 10.0


class Closeable(Protocol):
    """What ``register_cleanup`` accepts: a host, say."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop its resources live on, if any."""

    async def close(self) -> None: ...

    def abandon(self) -> None:
        """Release what can be released without a loop (kill local processes)."""


_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_open: weakref.WeakSet[Closeable] = weakref.WeakSet()
_atexit_registered = False


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_shutdown)


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_serve, args=(_loop,), name="otto-loop", daemon=True)
            _thread.start()
            _register_atexit()
        return _loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on otto's long-lived event loop and return its result.

    Works from plain scripts and from code where a loop already runs (a
    Jupyter cell): the coroutine always runs on otto's own loop thread, so
    state opened by one call is there for the next.
    """
    loop = _get_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise RuntimeError("otto.run() was called from inside otto's own loop: use await instead")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except (KeyboardInterrupt, SystemExit):
        future.cancel()
        # Let the coroutine unwind (its sessions interrupt their commands) before leaving.
        concurrent.futures.wait([future], timeout=5.0)
        raise


def register_cleanup(obj: Closeable) -> None:
    """Close ``obj`` at interpreter exit if it is still open then."""
    _open.add(obj)
    _register_atexit()


def unregister_cleanup(obj: Closeable) -> None:
    """``obj`` closed itself; nothing to do for it at exit."""
    _open.discard(obj)


def _shutdown() -> None:
    items = list(_open)
    _open.clear()
    loop = _loop
    live = loop is not None and loop.is_running()
    ours = [obj for obj in items if live and obj.loop is loop]
    for obj in items:
        if obj not in ours:
            obj.abandon()
    if loop is None or not live:
        return
    if ours:

        async def close_all() -> None:
            async with asyncio.timeout(_EXIT_TIMEOUT):
                await asyncio.gather(*(obj.close() for obj in ours), return_exceptions=True)

        future = asyncio.run_coroutine_threadsafe(close_all(), loop)
        try:
            future.result(_EXIT_TIMEOUT + 1)
        except Exception as exc:  # exit must go on whatever happens
            log.debug("closing at exit: %r", exc)
            for obj in ours:
                obj.abandon()
    loop.call_soon_threadsafe(loop.stop)
    if _thread is not None:
        _thread.join(2.0)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished.

    The task's own cancellation is absorbed; ours (the caller being cancelled
    meanwhile) is not. An exception the task ended with is left to whoever
    watches the task (a done-callback), not raised here.
    """
    if task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        return
