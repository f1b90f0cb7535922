"""RepeatRunner's schedule against the peer's ``gather(run, sleep)`` loop, in one run.

    python3 bench/bench_schedule.py [--quick]

Both run ``TICKS`` ticks at ``INTERVAL`` on the same host and record when each
tick's command was sent. A tick's error is how late that was against
``start + k * interval``, the schedule a user asks for. Two hosts: a stub whose
``run`` returns at once (the scheduler alone) and a real ``LocalHost`` running
``true`` on a session of its own.

Targets (issue 4): every otto tick within 2 ms, and the last tick's error no
larger than the first's (no drift).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import time
from collections.abc import Sequence

from otto import LocalHost
from otto.periodic import RepeatRunner, SystemClock
from otto.result import CommandStatus, RunResult, Status

QUICK = "--quick" in sys.argv
TICKS = 100 if QUICK else 500
INTERVAL = 0.020


class Recorder:
    """Wraps a session: notes the monotonic time each ``run`` is called."""

    def __init__(self, inner: object | None) -> None:
        self.inner = inner
        self.sent: list[float] = []

    async def run(self, cmds: str | Sequence[str], *, timeout: float | None = None) -> RunResult:
        self.sent.append(time.monotonic())
        if self.inner is None:
            ok = CommandStatus("true", "", Status.Success, 0)
            return RunResult.of([ok])
        result: RunResult = await self.inner.run(cmds, timeout=timeout)  # type: ignore[attr-defined]
        return result

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()  # type: ignore[attr-defined]


class RecordingHost:
    """A host whose sessions are Recorders over the real host's (or over nothing)."""

    def __init__(self, real: LocalHost | None) -> None:
        self.real = real
        self.name = "bench"
        self.recorder: Recorder | None = None

    async def open_session(self, name: str) -> Recorder:
        inner = None if self.real is None else await self.real.open_session(name)
        self.recorder = Recorder(inner)
        return self.recorder


class Deadlines(SystemClock):
    """otto's clock, remembering the first deadline asked for: the repeat's start."""

    def __init__(self) -> None:
        self.start: float | None = None

    async def sleep_until(self, deadline: float) -> None:
        if self.start is None:
            self.start = deadline
        await super().sleep_until(deadline)


async def otto_ticks(real: LocalHost | None) -> tuple[list[float], int]:
    host = RecordingHost(real)
    clock = Deadlines()
    runner = RepeatRunner(host, clock=clock)
    runner.start("bench", "true", INTERVAL, times=TICKS)
    await runner.wait("bench")
    assert host.recorder is not None and clock.start is not None
    start = clock.start
    # A tick that the machine stalled past the next deadline makes that one
    # skip, so a send belongs to the latest deadline at or before it.
    errors = [
        t - (start + math.floor((t - start) / INTERVAL + 1e-6) * INTERVAL)
        for t in host.recorder.sent
    ]
    return errors, runner.stats("bench").ticks_skipped


async def floor_ticks() -> list[float]:
    """The noise floor: asyncio.sleep to each deadline, nothing else running."""
    start = time.monotonic()
    errors = []
    for k in range(TICKS):
        await asyncio.sleep(max(0.0, start + k * INTERVAL - time.monotonic()))
        errors.append(time.monotonic() - (start + k * INTERVAL))
    return errors


async def peer_ticks(real: LocalHost | None) -> list[float]:
    """The peer's pattern: ``while True: await gather(run, sleep(interval))``."""
    host = RecordingHost(real)
    session = await host.open_session("peer")
    start = time.monotonic()
    for _ in range(TICKS):
        await asyncio.gather(session.run("true"), asyncio.sleep(INTERVAL), return_exceptions=True)
    await session.close()
    return [t - (start + k * INTERVAL) for k, t in enumerate(session.sent)]


def show(label: str, errors: list[float]) -> tuple[float, float, float]:
    worst = max(abs(e) for e in errors)
    first, last = errors[0], errors[-1]
    print(
        f"  {label:<22} max {worst * 1e3:8.3f} ms   first {first * 1e3:7.3f} ms   "
        f"last {last * 1e3:8.3f} ms   median {statistics.median(errors) * 1e3:7.3f} ms"
    )
    return worst, first, last


async def main() -> int:
    print(f"{TICKS} ticks at {INTERVAL * 1e3:g} ms; error = send time - (start + k * interval)")
    show("floor: bare asyncio.sleep", await floor_ticks())
    ok = True
    for label, real in (("stub host", None), ("LocalHost", LocalHost(name="bench"))):
        if real is not None:
            await real.run("true")  # start the host's loop binding before timing
        print(label)
        errors, skipped = await otto_ticks(real)
        mine = show("otto RepeatRunner", errors)
        peer = show("peer gather(run, sleep)", await peer_ticks(real))
        if real is not None:
            await real.close()
        within = sum(abs(e) <= 0.002 for e in errors) / len(errors)
        no_drift = abs(mine[2]) <= max(abs(mine[1]), 0.0005)
        print(
            f"  ratio peer/otto: max error {peer[0] / mine[0]:6.1f}x, "
            f"last-tick error {abs(peer[2]) / max(abs(mine[2]), 1e-6):8.1f}x\n"
            f"  otto: {within:.1%} of ticks within 2 ms, {skipped} skipped (machine stalls); "
            f"no drift (last <= first): {'ok' if no_drift else 'MISSED'}"
        )
        ok = ok and no_drift
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
