"""An SNMP round of the collector against raw pysnmp GETs of the same OIDs, in one run.

    python3 bench/bench_snmp.py [--quick]

20 net-snmp agents (``snmpd``) run in one lab network namespace, each on its
own UDP port (tests/lab/snmp.py). otto's figure is ``Collector.poll_round()``
over 20 SNMP-only hosts (``DeviceHost`` with ``snmp`` settings): one GET per
agent per round, values turned into metrics, rates and the round recorded.
The floor is pysnmp's own ``get_cmd`` of exactly the OIDs otto's round asks
for, to the same 20 agents at once, with the varbinds built beforehand and
``lookupMib=False`` (no metric, no bookkeeping). Batches of the two alternate;
each figure is the best mean over the batches. The first round (the table
walk) is shown apart. Target (issue 12): otto <= 1.5x the floor.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    get_cmd,
)

from otto.hosts.device import DeviceHost
from otto.monitor import Collector
from otto.transports.snmp import SnmpSettings
from tests.lab import Lab
from tests.lab.hosts import ssh_nodes
from tests.lab.snmp import SnmpLab

QUICK = "--quick" in sys.argv
AGENTS = 20
BATCHES = 5 if QUICK else 9
ROUNDS = 5 if QUICK else 10


async def main() -> None:
    async with Lab(ssh_nodes(1)) as lab, SnmpLab(lab) as snmp:
        agents = await asyncio.gather(*(snmp.agent("h1") for _ in range(AGENTS)))
        hosts = [
            DeviceHost(
                a.address,
                name=f"agent{i}",
                snmp=SnmpSettings(community=a.community, port=a.port, timeout=2.0),
            )
            for i, a in enumerate(agents)
        ]
        collector = Collector(hosts, interval=30.0)
        began = time.perf_counter()
        first = await collector.poll_round()
        walk = time.perf_counter() - began
        assert all(r.up for r in first.values()), first
        await collector.poll_round()

        # The floor: the very OIDs otto's probes now ask each round.
        probes = [collector._tracks[h.name].probes[0] for h in hosts]
        oid_lists = [p._plan.oids() for p in probes]  # type: ignore[attr-defined]
        engine = SnmpEngine()
        auth = CommunityData("public", mpModel=1)
        context = ContextData()
        targets = [
            await UdpTransportTarget.create((a.address, a.port), timeout=2.0, retries=1)
            for a in agents
        ]
        varbinds = [[ObjectType(ObjectIdentity(o)) for o in oids] for oids in oid_lists]

        async def raw_round() -> None:
            answers = await asyncio.gather(
                *(
                    get_cmd(engine, auth, target, context, *vbs, lookupMib=False)
                    for target, vbs in zip(targets, varbinds, strict=True)
                )
            )
            for indication, status, _, _ in answers:
                assert not indication and not status, (indication, status)

        async def otto_round() -> None:
            results = await collector.poll_round()
            assert all(r.up for r in results.values()), results

        await raw_round()
        floor: list[float] = []
        mine: list[float] = []
        for _ in range(BATCHES):
            for run, out in ((raw_round, floor), (otto_round, mine)):
                began = time.perf_counter()
                for _ in range(ROUNDS):
                    await run()
                out.append((time.perf_counter() - began) / ROUNDS)
        engine.close_dispatcher()
        await collector.stop()

        oids = sum(len(o) for o in oid_lists) / len(oid_lists)
        best_floor, best_mine = min(floor), min(mine)
        print(f"{AGENTS} snmpd agents in one namespace, {oids:.0f} OIDs per agent per round")
        print(f"first round (walk of the tables + GET): {walk * 1e3:7.1f} ms")
        print(f"raw pysnmp get_cmd, same OIDs:          {best_floor * 1e3:7.1f} ms per round")
        print(f"otto Collector.poll_round:              {best_mine * 1e3:7.1f} ms per round")
        print(f"ratio otto / raw: {best_mine / best_floor:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    asyncio.run(main())
