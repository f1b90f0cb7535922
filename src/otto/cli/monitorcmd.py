"""``otto monitor``: a Collector (or a replayed file) behind the dashboard server."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otto.lab import Lab
    from otto.monitor.web import DashboardServer

__all__ = ["run_monitor"]


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM, from the very start (no KeyboardInterrupt)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _until_stopped(stop: asyncio.Event, server: DashboardServer) -> None:
    """Wait for ``stop``, or for the server to end by itself."""

    async def stopped() -> None:
        await stop.wait()

    async with asyncio.TaskGroup() as tasks:
        waiters = [tasks.create_task(stopped()), tasks.create_task(server.wait())]
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


async def _serve(
    lab: Lab,
    names: Sequence[str],
    *,
    interval: float,
    db: Path | None,
    file: Path | None,
    port: int,
) -> int:
    with _stop_on_signals() as stop:
        if file is not None:
            return await _replay(file, port, stop)
        return await _collect(lab, names, interval=interval, db=db, port=port, stop=stop)


async def _replay(file: Path, port: int, stop: asyncio.Event) -> int:
    from otto.cli.exits import fail
    from otto.monitor.replay import Replay
    from otto.monitor.store import StoreError
    from otto.monitor.web import DashboardServer

    try:
        replay = Replay.from_file(file)
    except (OSError, ValueError, StoreError) as exc:
        fail(f"cannot replay {file}: {exc}", code=1)
    async with DashboardServer(replay, port=port) as server:
        _say(f"otto monitor: replaying {file}")
        _say(f"dashboard: {server.url}  (Ctrl-C to stop)")
        await _until_stopped(stop, server)
    return 0


async def _collect(
    lab: Lab,
    names: Sequence[str],
    *,
    interval: float,
    db: Path | None,
    port: int,
    stop: asyncio.Event,
) -> int:
    from otto.monitor.collector import Collector
    from otto.monitor.web import DashboardServer

    collector = Collector([lab.host(n) for n in names], interval=interval, db=db)
    try:
        await collector.start()
        async with DashboardServer(collector, port=port) as server:
            stored = f", storing in {db}" if db is not None else ""
            _say(f"otto monitor: watching {', '.join(names)} every {interval:g}s{stored}")
            _say(f"dashboard: {server.url}  (Ctrl-C to stop)")
            await _until_stopped(stop, server)
    finally:
        await collector.stop()
        await lab.close()
    return 0


def run_monitor(
    lab: Lab,
    names: Sequence[str],
    *,
    interval: float,
    db: Path | None,
    file: Path | None,
    port: int,
) -> int:
    """Collect from ``names`` (or replay ``file``) and serve the dashboard until stopped."""
    return asyncio.run(_serve(lab, names, interval=interval, db=db, file=file, port=port))
