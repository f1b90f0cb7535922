"""goto("shell") on a host at its shell against a bare run("true") on it, in the same run.

    python3 bench/bench_goto.py [--quick] [--no-pin]   (as root: an SSH host too)

On a host that is at its shell, goto("shell") costs one probe round trip: the
shell otto has is asked to run ``true``, under a bound (the host's connect
timeout), which is a timer on the event loop that a bare ``run("true")`` does
not start. The target is at most 1.2 times a bare ``run("true")`` on the same
host. Measured on a LocalHost (a round trip of some 40 us, where that timer
alone shows) and, as root, on an SSH host of the test lab (tests/lab). Each
figure is the best of several batches, alternating, since this machine is shared.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import pair

from otto import Host, LocalHost, RemoteHost

QUICK = "--quick" in sys.argv
TARGET = 1.2


async def measure(name: str, host: Host, n: int) -> bool:
    assert await host.goto("shell") == "shell"
    await host.run("true")
    base, mine = await pair(lambda: host.run("true"), lambda: host.goto("shell"), n)
    plain, bounded = await pair(lambda: host.run("true"), lambda: host.run("true", timeout=10.0), n)
    ratio = mine / base
    ok = ratio <= TARGET
    print(
        f"{'goto(shell) at a shell, ' + name:<34} otto {mine * 1e3:8.3f} ms   "
        f"run('true') {base * 1e3:8.3f} ms   ratio {ratio:5.2f} (target <= {TARGET})  "
        f"{'ok' if ok else 'MISSED'}   [a bound alone: {bounded / plain:4.2f}]",
        flush=True,
    )
    return ok


async def ssh(n: int) -> bool | None:
    """The SSH figure, or None when the lab cannot start here (not root)."""
    if os.geteuid() != 0:
        print("SSH host: skipped (the test lab needs root)")
        return None
    from tests.lab import Lab
    from tests.lab.hosts import ssh_nodes

    async with Lab(ssh_nodes(1)) as lab:
        spec = lab.host("h1")
        host = RemoteHost(
            spec.address,
            user=spec.user,
            key=spec.key_path,
            port=spec.port,
            known_hosts=lab.known_hosts,
            name="h1",
        )
        async with host:
            return await measure("SSH", host, n)


async def main() -> int:
    if "--no-pin" not in sys.argv and hasattr(os, "sched_setaffinity"):
        # One CPU for this process and its shell: where the scheduler puts the
        # shell otherwise swings a round trip more than otto's own work does.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    n = 300 if QUICK else 2000
    async with LocalHost() as host:
        local = await measure("local", host, n)
    remote = await ssh(200 if QUICK else 1000)
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0 if local or remote else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
