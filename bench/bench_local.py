"""LocalHost against raw asyncio, measured in the same run; prints ratios.

    python3 bench/bench_local.py [--quick] [--no-pin]

Baselines: a raw asyncio pipe to a persistent bash (write a command and an
echo of a marker, read until the marker), and ``asyncio`` spawning ``sh -c``.
Each figure is the best of several repetitions, since this machine is shared.

The warm round trip is judged against the raw pipe reading as much per read
as otto's local shell does (64 KiB, all a pipe holds): asyncio's own 256 KiB
reads cost a fresh mmap and page fault on each read in a process whose malloc
has not yet freed a block that large, so that floor swings by ~10 us with the
process's history. The raw pipe with asyncio's reads is printed beside it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

from common import RawShell, best, pair

from otto import LocalHost, framing
from otto.transports.local import READ_SIZE

QUICK = "--quick" in sys.argv
BIG = "head -c 10000000 /dev/zero | base64"
BIG_SIZE = 13_500_000


def _read_size(shell: RawShell, size: int) -> None:
    """Have the raw pipe's reads ask for ``size`` bytes, as otto's do."""
    assert shell.proc is not None
    stdout = shell.proc._transport.get_pipe_transport(1)  # type: ignore[attr-defined]
    stdout.max_size = size


def _cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


async def cpu_both(fn: Callable[[], Awaitable[object]], pid: int, n: int = 200) -> float:
    """CPU seconds per call of ``fn``: this thread's and process ``pid``'s (its shell)."""
    me, it = time.thread_time_ns(), _cpu_ns(pid)
    for _ in range(n):
        await fn()
    return (time.thread_time_ns() - me + _cpu_ns(pid) - it) / n / 1e9


async def cpu_per_call(fn: Callable[[], Awaitable[object]], n: int) -> float:
    """This process's CPU seconds (user and system) per call of ``fn``."""
    t0 = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - t0) / n


def row(name: str, otto_s: float, base_s: float, target: float, base_name: str) -> bool:
    ratio = otto_s / base_s
    ok = ratio <= target
    print(
        f"{name:<34} otto {otto_s * 1e3:9.3f} ms   {base_name} {base_s * 1e3:9.3f} ms   "
        f"ratio {ratio:5.2f} (target <= {target})  {'ok' if ok else 'MISSED'}"
    )
    return ok


async def main() -> int:
    if "--no-pin" not in sys.argv and hasattr(os, "sched_setaffinity"):
        # One CPU for this process and the shells it starts (they inherit it):
        # otherwise where the scheduler happens to put each shell swings a
        # round trip between 20 and 60 us, for the baseline as for otto.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    n = 300 if QUICK else 2000
    raw = RawShell()
    await raw.start()
    fair = RawShell()
    await fair.start()
    _read_size(fair, READ_SIZE)
    host = LocalHost()
    await host.run("true")
    results = []

    # Warm round trip.
    await raw.run("true")
    await fair.run("true")
    # Many short batches: the best of each is what the shared machine allows.
    warm_n, warm_reps = (300, 5) if QUICK else (500, 20)
    base, mine = await pair(lambda: fair.run("true"), lambda: host.run("true"), warm_n, warm_reps)
    results.append(row('run("true"), warm session', mine, base, 1.2, "raw pipe"))
    base_default, mine = await pair(lambda: raw.run("true"), lambda: host.run("true"), n)
    print(
        f"{'  raw pipe, asyncio 256 KiB reads':<34} otto {mine * 1e3:9.3f} ms   raw pipe "
        f"{base_default * 1e3:9.3f} ms   ratio {mine / base_default:5.2f}"
    )
    # Where the difference goes: a raw pipe (same reads) to a shell set up as
    # otto's, sending otto's framed line and reading to its marker (bash
    # reads a pipe a byte at a time, so every byte of framing costs).
    framed_shell = RawShell()
    await framed_shell.start()
    _read_size(framed_shell, READ_SIZE)
    token = framing.new_token()
    await framed_shell.run_line(framing.setup_bytes(token, pty=False).decode(), b"k" + framing.US)
    seq = host.sessions[next(iter(host.sessions))]._seq
    framed = framing.command_bytes("true", token, seq, bash=True).decode()

    def framed_run() -> Awaitable[bytes]:
        return framed_shell.run_line(framed, framing.US)

    await framed_run()
    base_framed, mine = await pair(framed_run, lambda: host.run("true"), n)
    print(
        f"{'  raw pipe sending the framed line':<34} otto {mine * 1e3:9.3f} ms   raw pipe "
        f"{base_framed * 1e3:9.3f} ms   ratio {mine / base_framed:5.2f} (otto's own Python); "
        f"framed line / raw {base_framed / base:4.2f}"
    )

    # This process's CPU per round trip (the shells' is not in it): steadier
    # than the wall clock on a shared machine, and it is what otto adds.
    cpu_base = min([await cpu_per_call(framed_run, n) for _ in range(5)])
    cpu_mine = min([await cpu_per_call(lambda: host.run("true"), n) for _ in range(5)])
    print(
        f"{'  CPU of this process per call':<34} otto {cpu_mine * 1e6:7.1f} us     raw pipe "
        f"{cpu_base * 1e6:7.1f} us     otto's own {(cpu_mine - cpu_base) * 1e6:5.1f} us"
    )
    # CPU of both ends (this process and its shell, from the kernel's schedstat):
    # what a round trip costs the machine, whatever else runs on it.
    if os.path.exists("/proc/self/schedstat"):
        otto_pid = host.sessions[next(iter(host.sessions))]._transport.pid  # type: ignore[union-attr]
        assert fair.proc is not None and framed_shell.proc is not None
        both = {"raw": 1e9, "framed": 1e9, "otto": 1e9}
        for _ in range(5 if QUICK else 15):
            both["raw"] = min(both["raw"], await cpu_both(lambda: fair.run("true"), fair.proc.pid))
            both["framed"] = min(both["framed"], await cpu_both(framed_run, framed_shell.proc.pid))
            both["otto"] = min(both["otto"], await cpu_both(lambda: host.run("true"), otto_pid))
        print(
            f"{'  CPU of both ends per call':<34} otto {both['otto'] * 1e6:7.1f} us     raw pipe "
            f"{both['raw'] * 1e6:7.1f} us     ratio {both['otto'] / both['raw']:5.2f}; "
            f"framed line {both['framed'] * 1e6:5.1f} us ({both['framed'] / both['raw']:4.2f})"
        )

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
    results.append(row("run(13.5 MB output)", mine, base, 1.5, "raw pipe"))

    # 1 MB of command text: bash reading it from a pipe is the floor.
    long_command = "printf %s '" + "x" * 1_000_000 + "' | wc -c"

    async def raw_long() -> None:
        out = await raw.run(long_command)
        assert out.startswith(b"1000000")

    async def otto_long() -> None:
        res = await host.run(long_command)
        assert res.only.output.strip() == "1000000", res.only.output[:200]

    base, mine = await pair(raw_long, otto_long, 1, reps)
    results.append(row("run(1 MB of command text)", mine, base, 2.0, "raw pipe"))

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
    await fair.close()
    await framed_shell.close()
    await host.close()
    print(
        f"machine: {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; "
        f"best of {reps}+ batches each"
    )
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
