"""Hosts held by one test at a time across pytest-xdist workers.

A file lock per host (``fcntl.flock`` on ``<folder>/<host>.lock``): the lock
is the kernel's, so a worker that dies lets go of its hosts. Meant to be
replaced by the lab's reservations; callers only see ``hold_hosts``.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["HostsBusy", "hold_hosts"]

_RETRY = 0.05


class HostsBusy(TimeoutError):
    """Not enough of the hosts asked for became free in time."""


def _try_lock(folder: Path, name: str) -> int | None:
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def hold_hosts(
    names: Sequence[str],
    *,
    folder: Path,
    count: int | None = None,
    timeout: float | None = None,
) -> Iterator[list[str]]:
    """Hold ``count`` of ``names`` (all of them by default) until the block ends.

    Hosts are taken in the order given; when too few are free, those taken are
    let go and the call waits for others to free theirs, so two callers never
    hold part of what each needs.

    Args:
        folder: where the lock files live (shared by every worker of a run).
        count: how many of ``names`` are needed.
        timeout: seconds to wait for them; None waits as long as it takes.

    Yields:
        The names held.

    Raises:
        ValueError: ``count`` is more than the names given.
        HostsBusy: ``timeout`` passed before enough hosts were free.
    """
    need = len(names) if count is None else count
    if need > len(names):
        raise ValueError(f"{need} hosts needed but only {len(names)} given: {', '.join(names)}")
    folder.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    held: dict[str, int] = {}
    while True:
        for name in names:
            if len(held) == need:
                break
            fd = _try_lock(folder, name)
            if fd is not None:
                held[name] = fd
        if len(held) == need:
            break
        for fd in held.values():
            os.close(fd)
        held.clear()
        if deadline is not None and time.monotonic() >= deadline:
            raise HostsBusy(
                f"{need} of {', '.join(names)} not free within {timeout:g}s (held by other workers)"
            )
        time.sleep(_RETRY)
    try:
        yield list(held)
    finally:
        for fd in held.values():
            os.close(fd)
