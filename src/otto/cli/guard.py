"""The reservation check before every action on a host.

``guard`` runs before ``otto host ... run/put/get/login/power/reboot`` and
``otto test`` contact a host: one query to the reservation store for every
host named. A host someone else holds stops the command (exit status 3,
naming the holder and until when) unless ``--force``, which says whose
reservation it overrides. ``otto run INSTRUCTION`` learns its hosts only as
the instruction asks for them, so ``guard_lab`` arms a check on each host
held by someone else, which refuses the first time the instruction uses it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from otto.cli.exits import fail
from otto.errors import ReservationStoreError, ReservedError

if TYPE_CHECKING:
    from otto.hosts import Host
    from otto.lab import Lab
    from otto.reservations import Lease, ReservationStore

__all__ = [
    "EXIT_RESERVED",
    "EXIT_STORE",
    "exit_reserved",
    "guard",
    "guard_lab",
    "leases_of",
    "refuse",
]

#: Exit status when a host is reserved by someone else.
EXIT_RESERVED = 3
#: Exit status when the reservation store cannot be reached or used.
EXIT_STORE = 1


def leases_of(store: ReservationStore, names: Sequence[str] | None) -> list[Lease]:
    """The unexpired leases on ``names`` (all if None), in one query; closes ``store``."""
    from otto.reservations.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):  # no event loop to start for a local file
        try:
            return store.leases_now(names)
        finally:
            store.close_now()

    import asyncio

    async def query() -> list[Lease]:
        async with store:
            return await store.leases(names)

    return asyncio.run(query())


def _store(lab: Lab) -> ReservationStore:
    from otto.reservations import open_store

    try:
        return open_store(lab=lab)
    except ReservationStoreError as exc:
        fail(str(exc), code=EXIT_STORE)


def _note(message: str) -> None:
    sys.stderr.write(f"otto: {message}\n")
    sys.stderr.flush()


def refuse(leases: Sequence[Lease]) -> NoReturn:
    """Say who holds which host until when (stderr) and exit with status 3."""
    from otto.reservations.base import printable

    lines = [f"{printable(lease.host)}: reserved by {lease.describe()}" for lease in leases]
    fail("\n".join(lines) + " (--force acts anyway)", EXIT_RESERVED)


def guard(lab: Lab, names: Sequence[str], *, force: bool, dry_run: bool = False) -> list[str]:
    """Check the reservations of ``names`` in one store query; one line per host.

    A host held by someone else stops the command (exit status 3, on stderr:
    host, holder, until when) unless ``force``, which says on stderr whose
    reservation it overrides. A plan against a held host is invalid too, so
    ``dry_run`` changes only the wording.

    Raises:
        typer.Exit: 3 for a host held by someone else; 1 when the store cannot
            be reached (one line naming it, password masked, and why).
    """
    from otto.reservations import format_time, holder_identity
    from otto.reservations.base import printable

    store = _store(lab)
    try:
        found = {lease.host: lease for lease in leases_of(store, names)}
    except ReservationStoreError as exc:
        fail(str(exc), code=EXIT_STORE)
    me = holder_identity()
    lines: list[str] = []
    others: list[Lease] = []
    for name in names:
        lease = found.get(name)
        if lease is None:
            lines.append(f"{name}: not reserved")
        elif lease.holder == me:
            lines.append(f"{name}: reserved by you until {format_time(lease.until)}")
        else:
            holder = printable(lease.holder)
            line = f"{name}: reserved by {holder} until {format_time(lease.until)}"
            lines.append(f"{line}, overridden by --force" if force else line)
            others.append(lease)
    if others and not force:
        refuse(others)
    verb = "would override" if dry_run else "overrides"
    for lease in others:
        _note(f"{lease.host}: --force {verb} the reservation of {lease.describe()}")
    return lines


class _Refusal:
    """The check ``guard_lab`` arms on a host someone else holds."""

    def __init__(self, lease: Lease, *, force: bool) -> None:
        self.lease = lease
        self.force = force
        self.said = False

    def __call__(self, host: Host) -> None:
        if not self.force:
            raise ReservedError(f"{host.name}: reserved by {self.lease.describe()}", [self.lease])
        if not self.said:
            self.said = True
            _note(f"{host.name}: --force overrides the reservation of {self.lease.describe()}")


def guard_lab(lab: Lab, *, force: bool) -> None:
    """Arm the check on every host of ``lab`` someone else holds (one store query).

    Such a host raises ``ReservedError`` (with ``force``: says it overrides)
    the first time it is used; the others are left as they are.

    Raises:
        typer.Exit: 1 when the store cannot be reached.
    """
    from otto.reservations import holder_identity

    store = _store(lab)
    try:
        leases = leases_of(store, lab.names)
    except ReservationStoreError as exc:
        fail(str(exc), code=EXIT_STORE)
    me = holder_identity()
    for lease in leases:
        if lease.holder != me:
            lab.host(lease.host).set_guard(_Refusal(lease, force=force))


def exit_reserved(exc: ReservedError) -> NoReturn:
    """End a command whose work met a reserved host: the error, exit status 3."""
    fail(str(exc), code=EXIT_RESERVED)
