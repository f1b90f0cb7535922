"""Process-table helpers: trees, namespaces and killing, read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

_PROC = Path("/proc")


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir(_PROC) if entry.isdigit()]


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None if gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; it ends at the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (not ``root`` itself), parents first."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def state(pid: int) -> str:
    """The process's state letter (R, S, T, Z, ...), or '' if it is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields is not None else ""


def stop_tree(root: int, names: set[str] | None = None, timeout: float = 2.0) -> list[int]:
    """SIGSTOP ``root`` and its descendants (only those named in ``names`` if
    given) until no new one appears; returns the pids stopped.

    A process forked between a scan and its parent's stop would escape a
    single pass, so this rescans once everything found is really stopped.
    """
    stopped: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        found = [root, *descendants(root)] if is_alive(root) else []
        new = [pid for pid in found if pid not in stopped and (names is None or comm(pid) in names)]
        if not new:
            return stopped
        signal_all(new, signal.SIGSTOP)
        stopped += new
        while any(state(pid) not in ("T", "Z", "X", "") for pid in new):
            if time.monotonic() > deadline:
                raise TimeoutError(f"processes {new} did not stop")
            time.sleep(0.001)


def comm(pid: int) -> str:
    """The process's short name, or '' if it is gone."""
    try:
        return (_PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def pids_in_netns(netns_path: Path) -> list[int]:
    """Processes whose network namespace is the one bound at ``netns_path``."""
    try:
        target = os.stat(netns_path)
    except OSError:
        return []
    found = []
    for pid in _pids():
        try:
            st = os.stat(_PROC / str(pid) / "ns" / "net")
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
            found.append(pid)
    return found


def pids_with_arg(text: str) -> list[int]:
    """Processes with ``text`` inside one of their command-line arguments."""
    found = []
    for pid in _pids():
        try:
            args = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(text.encode() in arg for arg in args):
            found.append(pid)
    return found


def signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    """Send ``sig`` to each pid, ignoring the ones already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_gone_sync(pids: Iterable[int], timeout: float) -> list[int]:
    """Poll until every pid has exited; returns the ones still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if is_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.005)
        alive = [pid for pid in alive if is_alive(pid)]
    return alive


async def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Like :func:`wait_gone_sync` without blocking the event loop."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if is_alive(pid)]
    while alive and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
        alive = [pid for pid in alive if is_alive(pid)]
    return alive


async def end_process(proc: asyncio.subprocess.Process | None, grace: float = 5.0) -> None:
    """Terminate ``proc``, kill it if it outlives ``grace`` seconds, and reap it."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        async with asyncio.timeout(grace):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
