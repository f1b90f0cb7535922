"""Processes for the reservation tests: racing workers and a holder that can be killed.

``race_worker`` runs in a process of its own (multiprocessing, spawn): it
opens the store once, then for each round waits at a barrier with the other
workers and tries to reserve that round's host, reporting whether it won.

``python -m tests.lab.reservations hold HOST SECONDS URL [CLOCK_SHIFT]`` holds
HOST with ``otto.reserve`` (lab from ``$OTTO_LAB``), prints ``held`` and waits
to be killed. With CLOCK_SHIFT, ``time.time`` of the process is moved by that
many seconds before otto is imported, and moved back by twice as much once
the host is held (a clock jump in the middle of the lease).
"""

from __future__ import annotations

import asyncio
import sys
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def race_worker(
    url: str, index: int, prefix: str, rounds: int, barrier: Barrier, results: Queue[object]
) -> None:
    """Try to reserve ``{prefix}-{round}`` once per round, at the same moment as the others."""
    from otto.errors import ReservedError
    from otto.reservations import open_store

    loop = asyncio.new_event_loop()
    store = open_store(url)
    try:
        for round_ in range(rounds):
            barrier.wait(timeout=60)
            outcome: object
            try:
                loop.run_until_complete(
                    store.reserve(
                        [f"{prefix}-{round_}"],
                        holder=f"worker{index}",
                        claim=f"worker{index}",
                        duration=600,
                    )
                )
                outcome = True
            except ReservedError:
                outcome = False
            except Exception as exc:  # reported to the test, which fails on it
                outcome = f"{type(exc).__name__}: {exc}"
            results.put((round_, index, outcome))
    finally:
        loop.run_until_complete(store.close())
        loop.close()


def _shift_clock(seconds: float) -> list[float]:
    real_time, real_ns = time.time, time.time_ns
    offset = [seconds]
    time.time = lambda: real_time() + offset[0]  # type: ignore[assignment]
    time.time_ns = lambda: real_ns() + int(offset[0] * 1e9)  # type: ignore[assignment]
    return offset


async def _hold(host: str, seconds: float, url: str, offset: list[float] | None) -> None:
    import otto

    async with otto.reserve([host], duration=seconds, store=url, note="held by a test") as hosts:
        await hosts[0].run("true")
        if offset is not None:
            offset[0] = -2 * offset[0]
        print("held", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[0] != "hold":
        sys.exit("usage: python -m tests.lab.reservations hold HOST SECONDS URL [CLOCK_SHIFT]")
    offset = _shift_clock(float(argv[4])) if len(argv) > 4 else None
    asyncio.run(_hold(argv[1], float(argv[2]), argv[3], offset))


if __name__ == "__main__":
    main(sys.argv[1:])
