"""TCP connections to SSH servers, started before asyncssh is imported.

A short ``otto host NAME run CMD`` spends most of its start importing asyncssh
(~150-200 ms). The TCP handshake, and the server's own start for a new
connection (sshd forks and re-executes itself before it sends its greeting),
need none of it: :func:`start` begins a non-blocking connect to the host at
once, and the kernel and the server get on with it while Python imports.
When the host's link then connects, :func:`take` hands it the socket (once
the connect has finished), and asyncssh runs SSH on it: version exchange, key
exchange and host-key checking exactly as on a socket it connected itself.

Only where asyncssh would make the same plain TCP connection: a literal IP
address (no name to resolve), reached directly (not through a hop), and no
``~/.ssh/config`` for asyncssh to read (its ``HostName``, ``Port``,
``ProxyJump`` or ``ProxyCommand`` could send the connection elsewhere). A
connect that fails is closed and forgotten: the link then connects as it
always does, and reports what happens to that attempt as usual.

Nothing here imports asyncssh; a program that never calls :func:`start` is
not affected.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket

__all__ = ["discard_all", "start", "take"]

log = logging.getLogger("otto.ssh")

_pending: dict[tuple[str, int], socket.socket] = {}


def _ssh_config_exists() -> bool:
    """Whether asyncssh would read a client config (it reads ``~/.ssh/config``, if readable)."""
    try:
        path = os.path.expanduser(os.path.join("~", ".ssh", "config"))
    except RuntimeError:  # no home directory
        return False
    return os.access(path, os.R_OK)


def start(address: str, port: int) -> bool:
    """Begin a TCP connect to ``address:port`` for a link to take later; whether it began.

    Nothing is done (False) for a name rather than an IP address, when a client
    config exists, or when the connect fails at once.
    """
    key = (address, port)
    if key in _pending:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a name: resolving it is left to the link, as always
    if _ssh_config_exists():
        return False
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return False
    sock.setblocking(False)
    code = sock.connect_ex((address, port))
    if code not in (0, errno.EINPROGRESS):
        sock.close()
        return False
    _pending[key] = sock
    return True


async def take(address: str, port: int) -> socket.socket | None:
    """The socket :func:`start` connected to ``address:port``, once connected; else None.

    Waits for a connect still under way (the caller bounds the wait). A connect
    that failed gives None, its socket closed, and so does a cancelled wait.
    """
    sock = _pending.pop((address, port), None)
    if sock is None:
        return None
    try:
        if not _writable(sock):
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            loop.add_writer(sock.fileno(), ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_writer(sock.fileno())
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except BaseException:
        sock.close()
        raise
    if code:
        log.debug("early connect to %s:%d failed: %s", address, port, os.strerror(code))
        sock.close()
        return None
    return sock


def _writable(sock: socket.socket) -> bool:
    import select

    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    return bool(poller.poll(0))


def discard_all() -> None:
    """Close every socket no link took."""
    while _pending:
        _, sock = _pending.popitem()
        sock.close()
