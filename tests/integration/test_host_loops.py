"""A host belongs to the event loop it was first used on: a call from another loop,
running in another thread, is refused with a clear error, not asyncio's own later."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from otto import LocalHost

pytestmark = pytest.mark.integration


@pytest.fixture
def other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def test_a_host_running_on_a_loop_in_another_thread_is_refused_here(
    other_loop: asyncio.AbstractEventLoop,
) -> None:
    host = LocalHost()
    there = asyncio.run_coroutine_threadsafe(host.run("echo there"), other_loop).result(30)
    assert there.only.output == "there"
    try:
        # Its loop is running (in the other thread): that is not this call's loop.
        for verb in (lambda: host.run("echo here"), lambda: host.oneshot("echo here")):
            with pytest.raises(RuntimeError, match="in use on another event loop"):
                asyncio.run(verb())
        # The other loop still has it, unharmed.
        again = asyncio.run_coroutine_threadsafe(host.run("echo again"), other_loop).result(30)
        assert again.only.output == "again"
    finally:
        asyncio.run_coroutine_threadsafe(host.close(), other_loop).result(30)
