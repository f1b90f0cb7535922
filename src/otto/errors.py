"""otto's exceptions: one shallow tree, so callers catch what they can act on.

::

    OttoError
    ├── ConnectError            could not reach, log in to, or start a shell on a host
    │   ├── AuthenticationError     the host refused the credentials
    │   ├── HostKeyError            the host key is unknown or does not match known_hosts
    │   └── ForwardError            a port forward cannot listen, or its target cannot be reached
    ├── ConnectionLost          the link to a running shell dropped
    ├── SessionClosed           a session was used after close()
    ├── ExpectTimeout           expect() saw no match in time (also a TimeoutError)
    ├── TransferError           put()/get() could not move a file
    ├── LabError                a lab file is invalid (names the file, host and field)
    ├── ReservedError           a host is reserved by someone else (names holder and until)
    │   └── LeaseLost               a lease could not be renewed in time: the holder lost it
    ├── ReservationStoreError   the reservation store cannot be reached or used (names it)
    └── StoreError              a metric database cannot be opened or is not otto's

Errors raised by the libraries below otto (asyncssh, telnetlib3, OS errors) are
translated at the transport boundary, so users only ever see this tree.

A message can carry text a server or console printed; every registered secret
(see ``otto.redact``) is masked whenever an error is shown (``str``, ``repr``).
"""

from __future__ import annotations

from collections.abc import Sequence

from otto.redact import redact

__all__ = [
    "AuthenticationError",
    "ConnectError",
    "ConnectionLost",
    "ExpectTimeout",
    "ForwardError",
    "HostKeyError",
    "LabError",
    "LeaseLost",
    "OttoError",
    "ReservationStoreError",
    "ReservedError",
    "SessionClosed",
    "StoreError",
    "TransferError",
]

_TAIL = 300


def tail(text: str, limit: int = _TAIL) -> str:
    """The last ``limit`` characters of ``text``, marked when cut, for error messages."""
    if len(text) <= limit:
        return text
    return "..." + text[-limit:]


class OttoError(Exception):
    """Base of every error otto raises; its message is shown with secrets masked."""

    def __str__(self) -> str:
        return redact(super().__str__())

    def __repr__(self) -> str:
        return redact(super().__repr__())


class ConnectError(OttoError):
    """A host could not be reached, logged in to, or given a working shell.

    ``step`` names what failed, when known: ``"TCP connect"``,
    ``"SSH handshake"``, ``"authentication"``, ``"login"`` (Telnet) or
    ``"shell start"``.
    """

    def __init__(self, host: str, reason: str, *, step: str = "") -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = redact(reason)
        self.step = step


class AuthenticationError(ConnectError):
    """The host refused the credentials."""


class HostKeyError(ConnectError):
    """The host's key is not in known_hosts or does not match it."""


class ForwardError(ConnectError):
    """A port forward could not listen (a port taken), or its target refused or is unreachable."""


class ConnectionLost(OttoError):
    """The link to a running shell dropped while otto was using it."""

    def __init__(self, host: str, reason: str, received: str = "") -> None:
        msg = f"{host}: {reason}"
        if received:
            msg += f"; received before: {tail(received)!r}"
        super().__init__(msg)
        self.host = host
        self.reason = reason
        self.received = received


class SessionClosed(OttoError):
    """A session was used after it was closed."""


class ExpectTimeout(OttoError, TimeoutError):
    """``expect`` saw no match in time; ``received`` holds what did arrive."""

    def __init__(self, where: str, pattern: str, timeout: float, received: str) -> None:
        super().__init__(
            f"{where}: no match for {pattern!r} within {timeout:g}s; "
            f"received {len(received)} chars: {tail(received)!r}"
        )
        self.pattern = pattern
        self.timeout = timeout
        self.received = received


class TransferError(OttoError):
    """A file could not be copied to or from a host."""


class LabError(OttoError):
    """A lab file is invalid; the message names the file, the host and the field."""


class ReservedError(OttoError):
    """Hosts are reserved by someone else.

    ``leases`` holds the ``otto.reservations.Lease`` records in the way (host,
    holder, until); typed loosely here because errors sit below every layer.
    """

    def __init__(self, message: str, leases: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.leases = tuple(leases)


class LeaseLost(ReservedError):
    """A held lease expired before it could be renewed: its hosts must not be used."""


class ReservationStoreError(OttoError):
    """The reservation store cannot be reached, opened or used (names it, password masked)."""


class StoreError(OttoError):
    """A metric database cannot be opened, or is not one of otto's (names the file)."""
