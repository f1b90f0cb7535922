"""Stragglers cost the other hosts nothing: 20 lab SSH hosts at 1 s, 3 of them cut
again and again (packets dropped, as when a cable is pulled), and not one round lost
for the 17 that stay reachable.

Before each host's poll was its own, every round waited for its slowest host (the
deadline plus a grace), so a cut host made the whole fleet skip the next round.
"""

from __future__ import annotations

import asyncio
import os
import statistics
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from otto import RemoteHost
from otto.monitor import Collector
from tests.integration.hosts import remote_host
from tests.lab import Lab
from tests.lab.hosts import ssh_nodes

pytestmark = pytest.mark.integration

HOSTS = 20
CUT = ("h1", "h2", "h3")
CYCLES = 2
CUT_ROUNDS = 5
"""Rounds (of 1 s) each cut lasts once it shows."""
WAIT = 30.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fleet_lab() -> AsyncIterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the integration lab needs root")
    async with Lab(ssh_nodes(HOSTS)) as lab:
        yield lab


async def test_cut_hosts_miss_their_rounds_and_the_others_lose_none(fleet_lab: Lab) -> None:
    lab = fleet_lab
    hosts: list[RemoteHost] = [
        remote_host(lab, f"h{i}", connect_timeout=5.0) for i in range(1, HOSTS + 1)
    ]
    collector = Collector(hosts, interval=1.0)
    stream = collector.subscribe()
    rounds: list[dict[str, bool]] = []
    arrived = asyncio.Condition()

    async def follow() -> None:
        async for update in stream:
            if update["type"] != "round":
                continue
            states = update["hosts"]
            assert isinstance(states, dict)
            async with arrived:
                rounds.append({name: bool(state["up"]) for name, state in states.items()})
                arrived.notify_all()

    async def until(condition: Callable[[], bool]) -> None:
        async with arrived:
            await asyncio.wait_for(arrived.wait_for(condition), WAIT)

    follower = asyncio.ensure_future(follow())
    try:
        async with collector:
            await until(lambda: bool(rounds) and _all_up(rounds[-1]))
            first = len(rounds) - 1
            skipped_before = collector.rounds_skipped
            cut_down = dict.fromkeys(CUT, False)
            for _ in range(CYCLES):
                await asyncio.gather(*(lab.cut_network(name) for name in CUT))
                cut_at = len(rounds)
                try:
                    # Wait for the cut to show in a round, then for the cut's length in rounds.
                    await until(lambda at=cut_at: _down_since(rounds, at))
                    shown = len(rounds)
                    await until(lambda at=shown: len(rounds) >= at + CUT_ROUNDS)
                finally:
                    await asyncio.gather(*(lab.restore_network(name) for name in CUT))
                for name in CUT:
                    cut_down[name] |= any(not r.get(name, True) for r in rounds[cut_at:])
                restored_at = len(rounds)
                # Every cut host answers again before the next cut.
                await until(lambda at=restored_at: any(_all_up(r) for r in rounds[at:]))
            last = len(rounds)
            skipped = collector.rounds_skipped - skipped_before
            lateness = collector.round_lateness()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await asyncio.gather(*(h.close() for h in hosts))
    watched = rounds[first:last]
    reachable = [f"h{i}" for i in range(1, HOSTS + 1) if f"h{i}" not in CUT]
    lost = {name: sum(not r.get(name, False) for r in watched) for name in reachable}
    p99 = statistics.quantiles(lateness, n=100)[98] if len(lateness) > 1 else 0.0
    print(f"{len(watched)} rounds watched; lateness p99 {p99 * 1e3:.1f} ms; lost {lost}")
    assert cut_down == dict.fromkeys(CUT, True), "a cut host was never seen down"
    assert lost == dict.fromkeys(reachable, 0)
    assert skipped == 0
    # The cut hosts missed rounds as stragglers or timed out ones, and came back.
    assert _all_up(watched[-1]) or _all_up(rounds[-1])


def _all_up(states: dict[str, bool]) -> bool:
    return len(states) == HOSTS and all(states.values())


def _down_since(rounds: list[dict[str, bool]], start: int) -> bool:
    return any(all(not r.get(name, True) for name in CUT) for r in rounds[start:])
