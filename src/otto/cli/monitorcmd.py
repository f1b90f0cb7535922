"""``otto monitor``: a Collector (or a replayed file) behind the dashboard server."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otto.lab import Lab
    from otto.monitor.access import Serving
    from otto.monitor.collector import Collector
    from otto.monitor.logwatch import LogWatch, WatchSpec
    from otto.monitor.probe import CostTally
    from otto.monitor.store import HostState
    from otto.monitor.web import DashboardServer, DashboardSource

__all__ = ["MonitorOptions", "run_monitor"]


@dataclass(frozen=True)
class MonitorOptions:
    """What ``otto monitor`` was asked to do, as its options say.

    Attributes:
        file: replay this file instead of collecting (``--file``).
        run: the run of ``file`` to replay (an id or a label); the latest by default.
        label, note: name the run that collecting appends to ``db``.
        watches: logs whose matching new lines become events (``--watch``).
        df_every: run ``df`` on every this many rounds only (None: the default).
    """

    interval: float
    port: int
    db: Path | None = None
    file: Path | None = None
    serving: Serving | None = None
    label: str | None = None
    note: str | None = None
    run: str | None = None
    watches: Sequence[WatchSpec] = ()
    df_every: int | None = None


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM, from the very start (no KeyboardInterrupt), or
    when stdout or stderr is found closed (``| head``: the command ends with status 141)."""
    from otto.cli.output import on_pipe_closed, watch_readers

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    forget = on_pipe_closed(stop.set)
    unwatch = watch_readers(loop)
    try:
        yield stop
    finally:
        unwatch()
        forget()
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


def _say_links(server: DashboardServer) -> None:
    """The dashboard's links: one a line, the first with how to stop."""
    first, *others = server.links
    _say(f"dashboard: {first}  (Ctrl-C to stop)")
    for other in others:
        _say(f"   also at: {other}")


def _dashboard(source: DashboardSource, port: int, serving: Serving | None) -> DashboardServer:
    """The dashboard server on ``serving``'s address, with its token and TLS files."""
    from otto.cli.exits import fail
    from otto.monitor.access import Serving
    from otto.monitor.web import DashboardServer

    serving = serving or Serving()
    try:
        return DashboardServer(
            source,
            host=serving.bind,
            port=port,
            token=serving.token,
            tls_cert=serving.tls_cert,
            tls_key=serving.tls_key,
        )
    except ValueError as exc:
        fail(str(exc), code=1)


async def _serve(lab: Lab, names: Sequence[str], options: MonitorOptions) -> int:
    with _stop_on_signals() as stop:
        if options.file is not None:
            return await _replay(options.file, stop, options)
        return await _collect(lab, names, stop, options)


async def _replay(file: Path, stop: asyncio.Event, options: MonitorOptions) -> int:
    from otto.cli.exits import fail
    from otto.monitor.replay import Replay
    from otto.monitor.store import StoreError

    try:
        replay = await asyncio.to_thread(Replay.from_file, file, run=options.run)
    except (OSError, ValueError, StoreError) as exc:
        fail(f"cannot replay {file}: {exc}", code=1)
    async with _dashboard(replay, options.port, options.serving) as server:
        _say(f"otto monitor: replaying run {replay.run.name} of {file}")
        _say_links(server)
        await _until_stopped(stop, server)
    return 0


async def _collect(
    lab: Lab, names: Sequence[str], stop: asyncio.Event, options: MonitorOptions
) -> int:
    from otto.cli.exits import fail
    from otto.monitor.collector import Collector
    from otto.monitor.shell_probe import DF_EVERY

    collector = Collector(
        [lab.host(n) for n in names],
        interval=options.interval,
        db=options.db,
        label=options.label,
        note=options.note,
        df_every=DF_EVERY if options.df_every is None else options.df_every,
    )
    for spec in options.watches:
        try:
            collector.watch_log(lab.host(spec.host), spec.path, spec.pattern)
        except ValueError as exc:
            await lab.close()
            fail(f"--watch {spec.host}:{spec.path}: {exc}")
    try:
        await collector.start()
        async with _dashboard(collector, options.port, options.serving) as server:
            run = collector.run
            stored = f", storing run {run.name} in {options.db}" if run is not None else ""
            every = f"every {options.interval:g}s"
            _say(f"otto monitor: watching {_named(names)} {every}{stored}")
            _say_links(server)
            report = _report_fleet if len(names) > FLEET_SUMMARY_HOSTS else _report_costs
            async with asyncio.TaskGroup() as tasks:
                costs = tasks.create_task(report(collector))
                settle = tasks.create_task(_freeze_once_connected(collector))
                follows = [tasks.create_task(_announce(w)) for w in collector.log_watches]
                await _until_stopped(stop, server)
                costs.cancel()
                settle.cancel()
                for follow in follows:
                    follow.cancel()
    finally:
        await collector.stop()
        await lab.close()
    return 0


async def _freeze_once_connected(collector: Collector) -> None:
    """After the first round in which no host is still connecting: ``gc.freeze()``.

    What the hosts' connections, sessions and the history hold lives as long as
    the monitor; frozen, the collector's full collections no longer walk it (over
    1,000 hosts one took ~200 ms, a late round each time).
    """
    import gc

    async for update in collector.subscribe():
        if update.get("type") == "round" and not collector.connecting:
            gc.collect()
            gc.freeze()
            return


async def _announce(watch: LogWatch) -> None:
    """Say when a ``--watch`` follows its file: its lines from then on become events."""
    await watch.wait_following()
    _say(f"following {watch.host_name}:{watch.path} for {watch.pattern!r}")


COST_REPORT_SECONDS = 60.0
"""How often ``otto monitor`` prints what its rounds cost (and once after the first round)."""

FLEET_SUMMARY_HOSTS = 50
"""Above this many hosts ``otto monitor`` prints a fleet summary, not a line per host."""

COSTLIEST = 5
"""Hosts the fleet summary names as the costliest."""


def _named(names: Sequence[str]) -> str:
    """The hosts watched, for the start line: every name, or a count beyond the summary's limit."""
    if len(names) <= FLEET_SUMMARY_HOSTS:
        return ", ".join(names)
    return f"{len(names)} hosts ({names[0]} ... {names[-1]})"


@dataclass(frozen=True)
class FleetView:
    """What the fleet summary is made of, read from a collector at one moment."""

    states: Mapping[str, HostState]
    connecting: Sequence[str]
    rounds: int
    late: int
    skipped: int
    costs: Mapping[str, CostTally]


def fleet_lines(now: FleetView, before: FleetView | None) -> list[str]:
    """The fleet summary: hosts up, down and connecting; rounds, late and skipped since
    ``before`` (since the start without it); and the ``COSTLIEST`` hosts by mean round time.
    """
    connecting = set(now.connecting)
    up = sum(1 for s in now.states.values() if s.up)
    down = sorted(n for n, s in now.states.items() if not s.up and n not in connecting)
    rounds = now.rounds - (before.rounds if before else 0)
    late = now.late - (before.late if before else 0)
    skipped = now.skipped - (before.skipped if before else 0)
    lines = [
        f"fleet: {len(now.states)} hosts: {up} up, {len(down)} down, {len(connecting)} connecting;"
        f" {rounds} rounds, {late} late, {skipped} skipped"
    ]
    if down:
        shown = ", ".join(down[:10]) + (f" and {len(down) - 10} more" if len(down) > 10 else "")
        lines.append(f"fleet: down: {shown}")
    means: list[tuple[float, str, CostTally]] = []
    for name, tally in now.costs.items():
        earlier = before.costs.get(name) if before else None
        window = tally if earlier is None else tally.since(earlier)
        if window.rounds:
            means.append((window.seconds / window.rounds, name, window))
    means.sort(key=lambda m: (-m[0], m[1]))
    if means:
        costliest = ", ".join(
            f"{name} {mean * 1e3:.1f} ms {window.received / window.rounds / 1e3:.1f} kB"
            for mean, name, window in means[:COSTLIEST]
        )
        lines.append(f"fleet: costliest per round: {costliest}")
    return lines


def _fleet_view(collector: Collector) -> FleetView:
    return FleetView(
        collector.host_states(),
        collector.connecting,
        collector.rounds_run,
        collector.rounds_late,
        collector.rounds_skipped,
        collector.round_costs(),
    )


async def _report_fleet(collector: Collector) -> None:
    """Print the fleet summary: after the first round, then every minute."""
    loop = asyncio.get_running_loop()
    before: FleetView | None = None
    printed: float | None = None
    async for update in collector.subscribe():
        if update.get("type") != "round":
            continue
        now = loop.time()
        if printed is not None and now - printed < COST_REPORT_SECONDS:
            continue
        view = _fleet_view(collector)
        for line in fleet_lines(view, before):
            _say(line)
        before, printed = view, now


def cost_lines(costs: Mapping[str, CostTally], since: Mapping[str, CostTally]) -> list[str]:
    """One line per host: its rounds' mean duration, bytes and processes since ``since``."""
    lines = []
    for name, tally in costs.items():
        earlier = since.get(name)
        window = tally if earlier is None else tally.since(earlier)
        if window.rounds == 0:
            lines.append(f"cost {name}: no answered round")
            continue
        per = f"{window.seconds / window.rounds * 1e3:.1f} ms, "
        per += f"{window.received / window.rounds / 1e3:.1f} kB"
        if window.counted:
            per += f", {window.processes / window.counted:.2g} processes started"
            per += f" (most in one round: {tally.most_processes})"
        lines.append(f"cost {name}: {window.rounds} rounds, per round {per}")
    return lines


async def _report_costs(collector: Collector) -> None:
    """Print what the rounds cost the hosts: after the first round, then every minute."""
    loop = asyncio.get_running_loop()
    since: dict[str, CostTally] = {}
    printed: float | None = None
    async for update in collector.subscribe():
        if update.get("type") != "round":
            continue
        now = loop.time()
        if printed is not None and now - printed < COST_REPORT_SECONDS:
            continue
        costs = collector.round_costs()
        for line in cost_lines(costs, since):
            _say(line)
        since, printed = costs, now


def run_monitor(lab: Lab, names: Sequence[str], options: MonitorOptions) -> int:
    """Collect from ``names`` (or replay ``options.file``) and serve the dashboard until stopped."""
    return asyncio.run(_serve(lab, names, options))


def list_runs(path: Path) -> int:
    """Print the runs of a metric database or JSON export, one a line; 0, or 1 on error."""
    from otto.cli.exits import fail
    from otto.monitor.replay import list_runs as read_runs
    from otto.monitor.store import StoreError

    try:
        runs = read_runs(path)
    except (OSError, ValueError, StoreError) as exc:
        fail(f"cannot list the runs of {path}: {exc}", code=1)
    if not runs:
        _say(f"{path}: no runs yet")
        return 0
    rows = [("RUN", "LABEL", "STARTED", "ENDED", "ROUNDS", "HOSTS", "NOTE")]
    for r in runs:
        if r.ended is not None:
            ended = _when(r.ended)
        elif r.last is not None:
            ended = f"not ended (last round {_when(r.last)})"
        else:
            ended = "not ended"
        rows.append(
            (
                str(r.id),
                _printable(r.label or "-"),
                _when(r.started),
                ended,
                str(r.rounds),
                _printable(", ".join(r.hosts)) or "-",
                _printable(r.note or ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        _say("  ".join([*cells, row[-1]]).rstrip())
    return 0


def export_to_json(source: Path, out: Path, run: str | None) -> int:
    """Write the run ``run`` (every run when None) of a database or export to ``out``."""
    import json

    from otto.cli.exits import fail
    from otto.monitor.replay import is_sqlite
    from otto.monitor.store import (
        EXPORT_FORMAT,
        EXPORT_VERSION,
        MetricStore,
        StoreError,
        export_runs,
        load_export,
        pick_export_run,
    )

    try:
        if is_sqlite(source):
            with MetricStore(source) as store:
                doc = store.export(None if run is None else [run])
        else:
            whole = load_export(source)
            entries = (
                export_runs(whole) if run is None else [pick_export_run(whole, run, str(source))]
            )
            doc = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "runs": entries}
        from otto.transfer import write_whole

        write_whole(out, json.dumps(doc, allow_nan=False))
    except OSError as exc:
        fail(f"cannot export the runs of {source} to {out}: {exc.strerror or exc}", code=1)
    except (ValueError, StoreError) as exc:
        fail(f"cannot export the runs of {source} to {out}: {exc}", code=1)
    runs = doc["runs"]
    count = len(runs) if isinstance(runs, list) else 0
    _say(f"{out}: {count} run{'' if count == 1 else 's'} of {source}")
    return 0


def import_from_json(export: Path, db: Path) -> int:
    """Add the runs of a JSON export to the database ``db``, each as a new run."""
    from otto.cli.exits import fail
    from otto.monitor.store import MetricStore, StoreError, checked_export_runs, load_export

    try:
        # Checked whole before the database is opened (or made): a bad export changes nothing.
        doc = load_export(export)
        checked_export_runs(doc)
        with MetricStore(db) as store:
            added = store.import_json(doc)
    except OSError as exc:
        fail(f"cannot import {export} into {db}: {exc.strerror or exc}", code=1)
    except (ValueError, StoreError) as exc:
        fail(f"cannot import {export} into {db}: {exc}", code=1)
    names = ", ".join(f"#{i}" for i in added)
    _say(f"{db}: added run{'' if len(added) == 1 else 's'} {names} from {export}")
    return 0


def _when(t: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _printable(text: str) -> str:
    # A label or note comes from whoever wrote the file: no terminal escapes from it.
    return "".join(c if c.isprintable() else "?" for c in text)
