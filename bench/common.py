"""What the benchmarks share: timing helpers and the raw-pipe baseline shell."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable


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


class RawShell:
    """The baseline: a persistent bash on asyncio pipes, read until a fixed marker.

    Started like otto's shells (a session of its own), so that only what otto
    adds on top is measured.
    """

    MARK = b"__RAW_MARK__\n"

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
            start_new_session=True,
        )

    async def run(self, cmd: str) -> bytes:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"{cmd}; echo __RAW_MARK__\n".encode())
        return await self.proc.stdout.readuntil(self.MARK)

    async def run_line(self, line: str, until: bytes) -> bytes:
        """Write ``line`` as it is and read until ``until`` (no marker of our own)."""
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(line.encode())
        return await self.proc.stdout.readuntil(until)

    async def close(self) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.close()
        await self.proc.wait()
