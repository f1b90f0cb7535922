"""``otto reserve``, ``otto release`` and ``otto reservations``: leases taken by hand.

A reservation made here has no process renewing it: it lasts ``--for`` (one
hour by default) and then expires on its own. Running ``otto reserve`` again
on hosts you hold extends them. Every reservation made by hand by one holder
belongs to one claim, ``hand:HOLDER``. ``otto reserve --wait`` waits for held
hosts in the store's queue (first come, first served per host; see
``otto.reservations.queue``); ``otto reservations`` lists the waiters after
the holders.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from otto.cli.exits import EXIT_INTERRUPTED, fail
from otto.cli.guard import EXIT_RESERVED, EXIT_STORE, refuse
from otto.errors import LabError, ReservationStoreError, ReservedError
from otto.reservations.queue import parse_duration

if TYPE_CHECKING:
    from otto.lab import Lab
    from otto.reservations import Lease, ReservationStore, Turn, Waiter

__all__ = [
    "DEFAULT_FOR",
    "parse_duration",
    "release_command",
    "reservations_command",
    "reserve_command",
]

#: How long ``otto reserve`` holds hosts when ``--for`` is not given.
DEFAULT_FOR = "1h"


def _forced(ctx: typer.Context) -> bool:
    return bool(ctx.find_root().params.get("force"))


def _dry_run(ctx: typer.Context) -> bool:
    return bool(ctx.find_root().params.get("dry_run"))


def _note(message: str) -> None:
    sys.stderr.write(f"otto: {message}\n")


def _selected(lab: Lab, names: Sequence[str], tags: Sequence[str], *, strict: bool) -> list[str]:
    """Hosts from names (or regexes) and tags; with ``strict`` false, unknown names as given."""
    from otto.cli.hostcmds import resolve_names

    chosen: list[str] = []
    for part in (p.strip() for name in names for p in name.split(",")):
        if not part:
            continue
        try:
            chosen += resolve_names(lab, part)
        except LabError:
            if strict:
                raise
            chosen.append(part)  # releasing a host the current lab no longer lists
    for tag in (t.strip() for given in tags for t in given.split(",")):
        tagged = [spec.name for spec in lab.specs if tag in spec.tags]
        if not tagged:
            raise LabError(f"no host has the tag {tag!r}")
        chosen += tagged
    return list(dict.fromkeys(chosen))


def _with_store(work_name: str, lab: Lab) -> ReservationStore:
    from otto.reservations import open_store

    try:
        return open_store(lab=lab)
    except ReservationStoreError as exc:
        fail(f"{work_name}: {exc}", code=EXIT_STORE)


def _until(lease: Lease) -> str:
    from otto.reservations import format_time

    left = lease.until.timestamp() - time.time()  # for reading only: the store decides
    if left <= 0:
        return format_time(lease.until)
    minutes = int(left // 60)
    rel = f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{max(minutes, 1)}m"
    return f"{format_time(lease.until)} (in {rel})"


def _plan(
    store: ReservationStore,
    chosen: Sequence[str],
    me: str,
    doing: str,
    *,
    force: bool,
    claim: str | None = None,
    wait: bool = False,
) -> None:
    """``otto -n reserve/release``: what would happen to each host; the store is only read.

    Exits 3 (as the real command would) when someone else holds a host and
    neither ``--force`` nor ``--wait`` is given.
    """
    from otto.cli.guard import leases_of

    try:
        held = {lease.host: lease for lease in leases_of(store, chosen)}
    except ReservationStoreError as exc:
        fail(str(exc), code=EXIT_STORE)
    # A reservation is held by a claim (reserve) or by a holder (release): the
    # same test the real command makes.
    others = [
        lease
        for lease in held.values()
        if (lease.claim != claim if claim is not None else lease.holder != me)
    ]
    if others and not force and not wait:
        refuse(others)
    sys.stdout.write("otto: dry run: the reservation store is read, not changed\n")
    for host in chosen:
        lease = held.get(host)
        if lease is None:
            state = "not reserved"
        elif lease not in others:
            state = f"reserved by you until {_until(lease)}"
        else:
            then = "overridden by --force" if force else "would wait in the queue for it"
            state = f"reserved by {lease.describe()}, {then}"
        sys.stdout.write(f"{host}: {doing} ({state})\n")


def reserve_command(  # noqa: PLR0917 (typer passes each option as a parameter)
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAMES",
            help="Hosts: names, or regexes matching whole names ('web.*'); comma-separated too.",
            show_default=False,
        ),
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option(
            "--tags", metavar="TAG", help="Also every host with this tag (repeat, or 'a,b')."
        ),
    ] = None,
    duration: Annotated[
        str,
        typer.Option(
            "--for",
            metavar="DURATION",
            help="How long: 90s, 30m, 2h, 1d, 1h30m. Nothing renews it: it then expires.",
        ),
    ] = DEFAULT_FOR,
    note: Annotated[
        str, typer.Option("--note", help="Why, shown in `otto reservations`.", show_default=False)
    ] = "",
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="If some are held, wait in the queue (first come, first served per host).",
        ),
    ] = False,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            metavar="DURATION",
            help="With --wait: give up after this long (exit status 3). Default: no limit.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Reserve hosts for yourself, all of them or none, for --for (default 1h)."""
    import asyncio

    from otto.lab import current_lab
    from otto.reservations import RUN_ENV, Lease, format_time, hand_claim, holder_identity
    from otto.reservations.base import check_labels, printable

    lab = current_lab()
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        fail(f"--for: {exc}")
    patience: float | None = None
    if timeout is not None:
        try:
            patience = parse_duration(timeout)
        except ValueError as exc:
            fail(f"--timeout: {exc}")
        wait = True
    try:
        chosen = _selected(lab, names or [], tags or [], strict=True)
    except LabError as exc:
        fail(str(exc))
    if not chosen:
        fail("name the hosts to reserve (NAMES or --tags)")
    force = _forced(ctx)
    me = holder_identity()
    run = os.environ.get(RUN_ENV, "").strip() or "otto reserve"
    try:
        check_labels(holder=me, note=note, run=run)
    except ValueError as exc:
        fail(str(exc))
    claim = hand_claim(me)
    store = _with_store("reserve", lab)
    if _dry_run(ctx):
        _plan(
            store, chosen, me, f"would reserve for {duration}", force=force, claim=claim, wait=wait
        )
        return

    def waiting(turn: Turn) -> None:
        from otto.reservations.queue import describe_turn

        _note(describe_turn(chosen, turn))

    terminated: list[bool] = []

    async def work() -> tuple[list[Lease], list[Lease]]:
        # SIGTERM takes Ctrl-C's path: the wait is cancelled, so the waiter leaves the
        # queue at once instead of holding its place until its heartbeat runs out.
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        assert current is not None

        def on_term() -> None:
            if not terminated:
                terminated.append(True)
                current.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_term)
        try:
            return await _reserve()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    async def _reserve() -> tuple[list[Lease], list[Lease]]:
        from otto.reservations import heartbeat_seconds
        from otto.reservations.queue import wait_turn

        async with store:
            taken = (
                [lease for lease in await store.leases(chosen) if lease.claim != claim]
                if force
                else []
            )
            if wait and not force:
                grant = await wait_turn(
                    store,
                    chosen,
                    holder=me,
                    claim=claim,
                    duration=seconds,
                    heartbeat=heartbeat_seconds(),
                    timeout=patience,
                    note=note,
                    run=run,
                    on_wait=waiting,
                )
                return list(grant.leases), []
            grant = await store.reserve(
                chosen,
                holder=me,
                claim=claim,
                duration=seconds,
                note=note,
                run=run,
                force=force,
            )
            return list(grant.leases), taken

    from otto.reservations import QueuedFor, StillQueued

    try:
        leases, taken = asyncio.run(work())
    except KeyboardInterrupt:
        fail("interrupted: left the queue, nothing reserved", code=EXIT_INTERRUPTED)
    except asyncio.CancelledError:
        if not terminated:
            raise
        fail("terminated: left the queue, nothing reserved", code=128 + signal.SIGTERM)
    except StillQueued as exc:
        fail(str(exc), code=EXIT_RESERVED)
    except QueuedFor as exc:
        fail(f"{exc} (--wait joins the queue)", code=EXIT_RESERVED)
    except ReservedError as exc:
        refuse([lease for lease in exc.leases if isinstance(lease, Lease)])
    except ReservationStoreError as exc:
        fail(str(exc), code=EXIT_STORE)
    for lease in taken:
        _note(f"{lease.host}: --force takes it from {lease.describe()}")
    for lease in leases:
        sys.stdout.write(
            f"{printable(lease.host)}: reserved by you until {format_time(lease.until)}\n"
        )


def release_command(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAMES",
            help="Hosts to release (names or regexes). None: every host you hold.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Release hosts you reserved (every one of yours when none is named)."""
    import asyncio

    from otto.lab import current_lab
    from otto.reservations import holder_identity
    from otto.reservations.base import printable

    lab = current_lab()
    chosen = _selected(lab, names or [], [], strict=False) if names else None
    force = _forced(ctx)
    me = holder_identity()
    store = _with_store("release", lab)
    if _dry_run(ctx):
        if chosen is None:
            from otto.cli.guard import leases_of

            try:
                mine = [lease.host for lease in leases_of(store, None) if lease.holder == me]
            except ReservationStoreError as exc:
                fail(str(exc), code=EXIT_STORE)
            for host in mine:
                sys.stdout.write(f"{host}: would release\n")
            if not mine:
                sys.stdout.write("you hold no reservation: nothing to release\n")
            return
        _plan(store, chosen, me, "would release", force=force)
        return

    async def work() -> tuple[list[Lease], list[Lease]]:
        async with store:
            if chosen is None:
                return await store.release(holder=me), []
            held = await store.leases(chosen)
            others = [lease for lease in held if lease.holder != me]
            if others and not force:
                return [], others
            ended = await store.release(chosen, holder=None if force else me)
            return ended, others

    try:
        ended, others = asyncio.run(work())
    except ReservationStoreError as exc:
        fail(str(exc), code=EXIT_STORE)
    if others and not force:
        refuse(others)
    for lease in others:
        _note(f"{lease.host}: --force ends the reservation of {lease.describe()}")
    done = {lease.host for lease in ended}
    for lease in ended:
        sys.stdout.write(f"{printable(lease.host)}: released\n")
    for name in chosen or []:
        if name not in done:
            sys.stdout.write(f"{name}: was not reserved\n")
    if chosen is None and not ended:
        sys.stdout.write("you held no reservation\n")


def _listing(
    store: ReservationStore, chosen: Sequence[str] | None
) -> tuple[list[Lease], list[Waiter]]:
    """The leases and the waiters (on ``chosen``, all if None), read at once; closes ``store``."""
    from otto.reservations.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):  # no event loop to start for a local file
        try:
            return store.leases_now(chosen), store.waiters_now(chosen)
        finally:
            store.close_now()

    import asyncio

    async def query() -> tuple[list[Lease], list[Waiter]]:
        async with store:
            return await store.leases(chosen), await store.waiters(chosen)

    return asyncio.run(query())


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from otto.cli.output import use_colour

    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    head = line(header)
    sys.stdout.write((f"\x1b[1m{head}\x1b[0m" if use_colour(sys.stdout) else head) + "\n")
    for row in rows:
        sys.stdout.write(line(row) + "\n")


def reservations_command(
    ctx: typer.Context,
    hosts: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAMES",
            help="Only these hosts (names or regexes). Default: every reservation in the store.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON list: one object per reservation (host, holder, since, "
            "until, note, run, mine), then one per waiter in the queue (waiting: true, "
            "position, hosts, holder, since, until (its heartbeat), note, run, mine).",
        ),
    ] = False,
) -> None:
    """List the reservations in force (host, holder, since, until, note), then who waits."""
    as_json = as_json or bool(ctx.find_root().params.get("json_output"))  # otto --json reservations
    from otto.lab import current_lab
    from otto.reservations import format_time, holder_identity
    from otto.reservations.base import printable

    lab = current_lab()
    chosen = _selected(lab, hosts, [], strict=False) if hosts else None
    store = _with_store("reservations", lab)
    try:
        leases, waiters = _listing(store, chosen)
    except ReservationStoreError as exc:
        fail(str(exc), code=EXIT_STORE)
    me = holder_identity()
    if as_json:
        # json.dumps escapes every control character: the values are kept as stored.
        listed: list[dict[str, object]] = [
            {
                "host": lease.host,
                "holder": lease.holder,
                "since": lease.since.isoformat(),
                "until": lease.until.isoformat(),
                "note": lease.note,
                "run": lease.run,
                "mine": lease.holder == me,
            }
            for lease in leases
        ]
        listed += [
            {
                "waiting": True,
                "position": waiter.position,
                "hosts": list(waiter.hosts),
                "holder": waiter.holder,
                "since": waiter.since.isoformat(),
                "until": waiter.until.isoformat(),
                "note": waiter.note,
                "run": waiter.run,
                "mine": waiter.holder == me,
            }
            for waiter in waiters
        ]
        sys.stdout.write(json.dumps(listed, indent=2) + "\n")
        return
    if not leases and not waiters:
        sys.stdout.write(f"no reservations in {store.where}\n")
        return
    # Every cell escaped: a holder or note can come from anyone who writes to the store.
    if leases:
        _table(
            ("HOST", "HOLDER", "SINCE", "UNTIL", "NOTE"),
            [
                (
                    printable(lease.host),
                    printable(lease.holder) + (" (you)" if lease.holder == me else ""),
                    format_time(lease.since),
                    _until(lease),
                    printable(lease.note) or "-",
                )
                for lease in leases
            ],
        )
    if waiters:
        if leases:
            sys.stdout.write("\n")
        _table(
            ("QUEUE", "WAITER", "HOSTS", "WAITING SINCE", "NOTE"),
            [
                (
                    f"#{waiter.position}",
                    printable(waiter.holder) + (" (you)" if waiter.holder == me else ""),
                    ",".join(printable(h) for h in waiter.hosts),
                    format_time(waiter.since),
                    printable(waiter.note) or "-",
                )
                for waiter in waiters
            ],
        )
