"""The addresses a dashboard bound to a wildcard (``0.0.0.0``, ``::``) is reached at.

``http://0.0.0.0:8000/`` is no address a browser on another machine can open:
``reachable_addresses`` lists this machine's own, so that ``otto monitor
--bind 0.0.0.0`` can print links that work. On Linux the IPv4 addresses come
from the ``SIOCGIFCONF`` ioctl and the IPv6 ones from ``/proc/net/if_inet6``;
elsewhere from resolving the host name.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["is_wildcard", "reachable_addresses"]

_SIOCGIFCONF = 0x8912
_IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux: a 16-byte name, a 24-byte union
_MAX_INTERFACES = 512
_IF_INET6 = Path("/proc/net/if_inet6")
_BINDV6ONLY = Path("/proc/sys/net/ipv6/bindv6only")
_SCOPE_LINK = 0x20  # a link-local address needs a %zone in a URL: left out


def is_wildcard(host: str) -> bool:
    """Whether ``host`` is the any-address of IPv4 or IPv6."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _ipv4_linux() -> list[str]:
    import array
    import fcntl

    size = _IFREQ_SIZE * _MAX_INTERFACES
    buffer = array.array("B", bytes(size))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("iL", size, buffer.buffer_info()[0])
        answer = fcntl.ioctl(sock.fileno(), _SIOCGIFCONF, request)
    length = struct.unpack("iL", answer)[0]
    raw = buffer.tobytes()
    # Each entry: the name (16), then a sockaddr_in: family (2), port (2), address (4).
    return [
        socket.inet_ntoa(raw[offset + 20 : offset + 24]) for offset in range(0, length, _IFREQ_SIZE)
    ]


def _ipv6_linux() -> list[str]:
    found = []
    for line in _IF_INET6.read_text().splitlines():
        fields = line.split()
        if len(fields) < 6 or int(fields[3], 16) & _SCOPE_LINK:
            continue
        found.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return found


def _by_name(family: socket.AddressFamily) -> list[str]:
    with contextlib.suppress(OSError):
        infos = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]
    return []


def _ordered(addresses: Iterable[str]) -> list[str]:
    """Unique, the machine's own before loopback, in the order found."""
    unique = list(dict.fromkeys(addresses))
    return sorted(unique, key=lambda a: ipaddress.ip_address(a).is_loopback)


def reachable_addresses(host: str) -> list[str]:
    """The addresses a server bound to ``host`` answers on, for links to print.

    A wildcard gives this machine's addresses (the non-loopback ones first,
    IPv4 ones too for ``::`` when the system maps them), any other ``host``
    itself.
    """
    if not is_wildcard(host):
        return [host]
    v6 = ":" in host
    found: list[str] = []
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            if v6:
                found += _ipv6_linux()
        dual = v6 and _read(_BINDV6ONLY) == "0"
        if not v6 or dual:
            with contextlib.suppress(OSError):
                found += _ipv4_linux()
    if not found:
        found = _by_name(socket.AF_INET6 if v6 else socket.AF_INET)
    if not found:
        found = ["::1" if v6 else "127.0.0.1"]
    return _ordered(found)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
