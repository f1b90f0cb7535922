"""The ``netem`` fixture: impair a link for one test, cleared when the test ends.

::

    async def test_upload_over_a_bad_link(host, netem):
        await netem(host, "eth0", delay="100ms", loss="2%")
        ...

Every impairment it made is cleared on teardown, whether the test passed,
failed or errored; the host also reverts each by itself when its ``expire``
is up (300 s by default), should the test process die first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from otto import loop as otto_loop

if TYPE_CHECKING:
    from otto.hosts.base import Host
    from otto.hosts.netem import Impairment, Value

__all__ = ["Netem", "netem"]

log = logging.getLogger("otto.testing")

_CLEAR_TIMEOUT = 120.0


class Netem:
    """Impairs links for a test and remembers them: ``await netem(host, "eth0", delay="100ms")``."""

    def __init__(self) -> None:
        self.applied: list[tuple[Host, str]] = []

    async def __call__(
        self,
        host: Host,
        interface: str,
        *,
        delay: Value | None = None,
        jitter: Value | None = None,
        loss: Value | None = None,
        rate: Value | None = None,
        corrupt: Value | None = None,
        duplicate: Value | None = None,
        reorder: Value | None = None,
        peer: str | None = None,
        expire: Value | None = 300,
    ) -> Impairment:
        """``host.impair(interface, ...)``, cleared when the test ends."""
        if (host, interface) not in self.applied:
            # Recorded first: a failure half-way (a timeout) is cleared too.
            self.applied.append((host, interface))
        return await host.impair(
            interface,
            delay=delay,
            jitter=jitter,
            loss=loss,
            rate=rate,
            corrupt=corrupt,
            duplicate=duplicate,
            reorder=reorder,
            peer=peer,
            expire=expire,
        )

    async def clear(self, host: Host, interface: str) -> bool:
        """Clear one impairment now (the teardown then leaves it alone)."""
        if (host, interface) in self.applied:
            self.applied.remove((host, interface))
        return await host.clear_impairment(interface)

    def clear_all(self) -> list[str]:
        """Clear every impairment made (from the test's thread); the problems, one line each."""
        problems: list[str] = []
        for host, interface in reversed(self.applied):
            try:
                _run_for(host, host.clear_impairment(interface))
            except Exception as exc:  # each is tried; the test's teardown reports them
                problems.append(f"{host.name}: clearing {interface}: {exc}")
        self.applied.clear()
        return problems


def _run_for(host: Host, coro: object) -> object:
    """Run ``coro`` on the loop ``host`` lives on (otto's, or a stopped one of the test's)."""
    assert asyncio.iscoroutine(coro)
    loop = host.loop
    if loop is not None and not loop.is_closed():
        if loop.is_running():  # otto's loop, in its own thread
            return asyncio.run_coroutine_threadsafe(coro, loop).result(_CLEAR_TIMEOUT)
        return loop.run_until_complete(coro)  # a test loop that has stopped
    return otto_loop.run(coro)


@pytest.fixture
def netem() -> Iterator[Netem]:
    """Impair links for the test: ``await netem(host, "eth0", delay="100ms", loss="2%")``;
    every impairment is cleared on teardown, even when the test failed."""
    made = Netem()
    try:
        yield made
    finally:
        problems = made.clear_all()
        if problems:
            pytest.fail("netem could not clear:\n" + "\n".join(problems), pytrace=False)
