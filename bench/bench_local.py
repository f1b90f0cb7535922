"""LocalHost against raw asyncio, measured in the same run; prints ratios.

    python3 bench/bench_local.py [--quick]

Baselines: a raw asyncio pipe to a persistent bash (write a command and an
echo of a marker, read until the marker), and ``asyncio`` spawning ``sh -c``.
Each figure is the best of several repetitions, since this machine is shared.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

from otto import LocalHost

QUICK = "--quick" in sys.argv
BIG = "head -c 10000000 /dev/zero | base64"
BIG_SIZE = 13_500_000


class RawShell:
    """The baseline: a persistent bash on pipes, read until a fixed marker."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            limit=1 << 30,
        )

    async def run(self, cmd: str) -> bytes:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"{cmd}; echo __RAW_MARK__\n".encode())
        return await self.proc.stdout.readuntil(b"__RAW_MARK__\n")

    async def close(self) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.close()
        await self.proc.wait()


async def best(fn: Callable[[], Awaitable[object]], n: int, reps: int = 5) -> float:
    """Best mean seconds per call over ``reps`` batches of ``n`` calls."""
    means = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            await fn()
        means.append((time.perf_counter() - t0) / n)
    return min(means)


async def pair(
    base: Callable[[], Awaitable[object]],
    mine: Callable[[], Awaitable[object]],
    n: int,
    reps: int = 5,
) -> tuple[float, float]:
    """Best mean seconds per call of each, batches alternating so drift hits both alike."""
    b, m = [], []
    for _ in range(reps):
        b.append(await best(base, n, 1))
        m.append(await best(mine, n, 1))
    return min(b), min(m)


def row(name: str, otto_s: float, base_s: float, target: float, base_name: str) -> bool:
    ratio = otto_s / base_s
    ok = ratio <= target
    print(
        f"{name:<34} otto {otto_s * 1e3:9.3f} ms   {base_name} {base_s * 1e3:9.3f} ms   "
        f"ratio {ratio:5.2f} (target <= {target})  {'ok' if ok else 'MISSED'}"
    )
    return ok


async def main() -> int:
    n = 300 if QUICK else 2000
    raw = RawShell()
    await raw.start()
    host = LocalHost()
    await host.run("true")
    results = []

    # Warm round trip.
    await raw.run("true")
    base, mine = await pair(lambda: raw.run("true"), lambda: host.run("true"), n)
    results.append(row('run("true"), warm session', mine, base, 1.5, "raw pipe"))

    # 13.5 MB of output, complete and exact.
    reps = 2 if QUICK else 5

    async def raw_big() -> None:
        out = await raw.run(BIG)
        assert len(out) > BIG_SIZE

    expected = subprocess.run(["sh", "-c", BIG], capture_output=True, check=True).stdout  # noqa: ASYNC221
    expected_text = expected.decode()[:-1]

    async def otto_big() -> None:
        res = await host.run(BIG)
        assert res.only.output == expected_text, "13.5 MB output not exact"

    base, mine = await pair(raw_big, otto_big, 1, reps)
    results.append(row("run(13.5 MB output)", mine, base, 2.0, "raw pipe"))

    # One-shot process.
    async def raw_spawn() -> None:
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "true", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        await proc.communicate()

    m = 100 if QUICK else 400
    base, mine = await pair(raw_spawn, lambda: host.oneshot("true"), m)
    results.append(row('oneshot("true")', mine, base, 1.2, "raw spawn"))

    # open_session + one run + close: an absolute target of 5 ms.
    async def session_cycle() -> None:
        s = await host.open_session("bench")
        await s.run("true")
        await s.close()

    mine = await best(session_cycle, 50 if QUICK else 200)
    print(
        f"{'open_session + run + close':<34} otto {mine * 1e3:9.3f} ms   "
        f"(target <= 5 ms, otto-sh measured 4.6 ms for open alone)  "
        f"{'ok' if mine <= 0.005 else 'MISSED'}"
    )
    results.append(mine <= 0.005)

    # expect on a 6 MB stream that ends in the pattern.
    six = "head -c 4500000 /dev/zero | base64; echo THE_END"

    async def raw_six() -> None:
        await raw.run(six)

    async def otto_six() -> None:
        await host.send(six + "\n")
        out = await host.expect(r"THE_END")
        assert len(out) > 6_000_000

    base, mine = await pair(raw_six, otto_six, 1, reps)
    results.append(row("expect on a 6 MB stream", mine, base, 2.0, "raw pipe"))

    await raw.close()
    await host.close()
    print(
        f"machine: {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; "
        f"best of {reps}+ batches each"
    )
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
