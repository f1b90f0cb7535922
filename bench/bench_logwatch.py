"""A log watch's throughput against raw ``tail -F`` on asyncio pipes, in one run.

    python3 bench/bench_logwatch.py [--quick]

A burst of N lines (one in ten matching) is appended to a file on this machine.
Timed: from the start of the append until every line was read and matched
(tail is already running on both sides: a first line has been read).

- otto: ``Collector.watch_log`` on a LocalHost (its own session, tail's
  messages marked, lines cut at 4 KiB, matches through the rate limit into
  events).
- floor: ``tail -F -c +SIZE -- FILE`` started with ``asyncio.create_subprocess_exec``,
  its stdout read in chunks, split into lines, and each line searched with the
  same regex in Python: the same work with nothing of otto's around it.

Rounds of the two alternate; the best of each is shown, and the ratio, of the
wall time and of the CPU time this process and every process it started
(tail, the shell, the regex worker) spent in the timed window (from
``/proc/PID/schedstat``, in ns: on a machine others load, the CPU column is
the steadier one, and pinned to one CPU the wall time is close to it): for a
pattern with plain text every match holds (``ERROR \\d+``: lines without
``ERROR `` are known not to match and never reach the watch's regex worker) and
for one without (every line goes to the worker), unpinned and then pinned to
one CPU.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from otto import LocalHost
from otto.monitor import Collector

PATTERN = r"ERROR \d+"
READY = b"ERROR ready\n"
"""The first line, before the clock starts: it matches neither pattern, but it holds
the plain text of the first, so otto's regex worker is running by then too."""


class Timed(NamedTuple):
    wall: float
    cpu: float


def tree_tasks() -> list[str]:
    """The schedstat files of this process's threads and of all its descendants."""
    me = os.getpid()
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rindex(b")") + 2 :].split()[1])
    mine = {me}
    while more := {pid for pid, parent in parents.items() if parent in mine} - mine:
        mine |= more
    files = [f"/proc/{me}/task/{task}/schedstat" for task in os.listdir(f"/proc/{me}/task")]
    return files + [f"/proc/{pid}/schedstat" for pid in mine - {me}]


def tree_cpu(files: list[str]) -> float:
    """CPU seconds spent so far by the tasks of ``tree_tasks`` (those still there)."""
    total = 0
    for name in files:
        try:
            with open(name) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError):
            continue
    return total / 1e9


def burst(count: int, start: int) -> bytes:
    return b"".join(
        b"%s %d some ordinary text of a log line, long enough to be typical\n"
        % (b"ERROR" if i % 10 == 0 else b"info", start + i)
        for i in range(count)
    )


async def floor_round(path: Path, data: bytes, count: int, pattern: str = PATTERN) -> Timed:
    size = path.stat().st_size
    proc = await asyncio.create_subprocess_exec(
        "tail",
        "-F",
        "-c",
        f"+{size + 1}",
        "--",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    regex = re.compile(pattern)
    lines = matched = 0
    rest = b""
    try:
        with path.open("ab") as out:
            out.write(READY)
        assert await proc.stdout.readline() == READY
        tasks = tree_tasks()
        cpu = tree_cpu(tasks)
        began = time.perf_counter()
        with path.open("ab") as out:
            out.write(data)
        while lines < count:
            chunk = await proc.stdout.read(1 << 16)
            assert chunk, "tail ended"
            parts = (rest + chunk).split(b"\n")
            rest = parts.pop()
            for part in parts:
                lines += 1
                if regex.search(part.decode("utf-8", "replace")):
                    matched += 1
        elapsed = time.perf_counter() - began
        cpu = tree_cpu(tasks) - cpu
    finally:
        proc.kill()
        await proc.wait()
    assert matched == count // 10
    return Timed(elapsed, cpu)


async def otto_round(path: Path, data: bytes, count: int, pattern: str = PATTERN) -> Timed:
    host = LocalHost()
    collector = Collector([], interval=3600)
    watch = collector.watch_log(host, str(path), pattern)
    await collector.start()
    try:
        await asyncio.wait_for(watch.wait_following(), 30)
        # One line first, so that tail is running (as the floor's is) when the clock starts.
        with path.open("ab") as out:
            out.write(READY)
        while watch.lines < 1:  # noqa: ASYNC110 (a counter, polled finer than the figure)
            await asyncio.sleep(0.0005)
        await watch.wait_matched()
        tasks = tree_tasks()
        cpu = tree_cpu(tasks)
        began = time.perf_counter()
        with path.open("ab") as out:
            out.write(data)
        while watch.lines < count + 1:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        # Read is not enough: the floor has searched every line by now too.
        await watch.wait_matched()
        elapsed = time.perf_counter() - began
        cpu = tree_cpu(tasks) - cpu
    finally:
        await collector.stop()
        await host.close()
    assert watch.matched == count // 10, (watch.matched, count)
    return Timed(elapsed, cpu)


# The same lines found by a pattern with no plain text every match must hold:
# each line then goes to the watch's regex worker (see otto.monitor.matcher).
NO_LITERAL = r"[A-Z]{5} \d+"


async def section(title: str, count: int, reps: int) -> None:
    print(title)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.log"
        path.write_bytes(b"")
        data = burst(count, 0)
        for pattern in (PATTERN, NO_LITERAL):
            floors: list[Timed] = []
            mine: list[Timed] = []
            for _ in range(reps):
                floors.append(await floor_round(path, data, count, pattern))
                mine.append(await otto_round(path, data, count, pattern))
            for what in ("wall", "cpu"):
                best_floor = min(getattr(t, what) for t in floors)
                best_mine = min(getattr(t, what) for t in mine)
                print(
                    f"  {pattern!r:18} {what:4}  raw tail -F + re.search {best_floor * 1e3:7.1f} ms"
                    f"   otto watch_log {best_mine * 1e3:7.1f} ms"
                    f"   ratio {best_mine / best_floor:5.2f}"
                )


async def main() -> None:
    quick = "--quick" in sys.argv
    count = 50_000 if quick else 200_000
    reps = 3 if quick else 5
    size = len(burst(count, 0)) / 1e6
    print(f"{count} lines ({size:.1f} MB, one in ten matching) appended at once, best of {reps}")
    await section("unpinned", count, reps)
    if hasattr(os, "sched_setaffinity"):
        # One CPU for this process and what it starts (tail, the shell, the worker).
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        await section("pinned to one CPU", count, reps)


if __name__ == "__main__":
    asyncio.run(main())
