"""Network namespaces: running ``ip``, and sockets opened inside a namespace."""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class LabError(RuntimeError):
    """The lab could not be set up, driven or torn down."""


def ip_sync(*args: str, batch: str | None = None, check: bool = True) -> str:
    """Run ``ip ARGS`` (with ``-batch -`` reading ``batch``) and return stdout."""
    argv = ["ip", *args]
    if batch is not None:
        argv += ["-batch", "-"]
    done = subprocess.run(argv, input=batch, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {done.stderr.strip()}\n{batch or ''}")
    return done.stdout


async def ip(*args: str, batch: str | None = None) -> str:
    """Async :func:`ip_sync`; raises :class:`LabError` when ``ip`` fails."""
    argv = ["ip", *args]
    if batch is not None:
        argv += ["-batch", "-"]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate(batch.encode() if batch is not None else None)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {err.decode().strip()}\n{batch or ''}")
    return out.decode()


def list_netns() -> list[str]:
    """Names of the namespaces ``ip netns`` knows."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def netns_socket(netns: str, family: int = socket.AF_INET) -> socket.socket:
    """A TCP socket created inside ``netns``; it stays there for its whole life.

    A network namespace is per thread and a socket belongs to the namespace it
    was created in, so a throwaway thread enters the namespace, makes the socket
    and exits; the rest of the process never changes namespace.
    """
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_create() -> None:
        try:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            made.append(socket.socket(family, socket.SOCK_STREAM))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=enter_and_create, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


async def connect_once(
    address: str, port: int, *, netns: str | None = None, timeout: float = 1.0
) -> None:
    """Open and close one TCP connection to ``address:port``, from ``netns`` if given."""
    sock = netns_socket(netns) if netns else socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
    finally:
        sock.close()


async def wait_listening(
    address: str,
    port: int,
    *,
    netns: str | None = None,
    timeout: float = 10.0,
    check_alive: Callable[[], str | None] | None = None,
) -> None:
    """Poll a TCP connect until ``address:port`` accepts, or raise at the deadline.

    ``check_alive``, if given, is a callable returning an error message (or
    None) that is consulted between attempts so a daemon that died is reported
    at once instead of at the deadline.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        if check_alive is not None and (problem := check_alive()):
            raise LabError(problem)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LabError(
                f"{address}:{port} (netns {netns or 'root'}) not listening after "
                f"{timeout:.1f}s: {last!r}"
            )
        try:
            await connect_once(address, port, netns=netns, timeout=min(remaining, 1.0))
            return
        except (OSError, TimeoutError) as exc:
            last = exc
        await asyncio.sleep(0.005)
